package main

import (
	"github.com/gatewayd/gatewayd/gateway"
	"github.com/spf13/cobra"
)

func newServeCmd(g *globals) *cobra.Command {
	o := &overrides{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the gateway daemon until SIGTERM or SIGINT",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd, g, o, true)
			if err != nil {
				return err
			}
			return gateway.Run(cmd.Context(), cfg, gateway.RunOptions{Version: version, Stderr: cmd.ErrOrStderr()})
		},
	}
	o.register(cmd.Flags())
	return cmd
}
