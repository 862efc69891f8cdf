package main

import (
	"github.com/spf13/cobra"

	"github.com/gatewayd/gatewayd/gateway"
)

func newServeCmd(g *globals) *cobra.Command {
	o := &overrides{}
	var takeOver bool
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the gateway daemon until SIGTERM or SIGINT",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd, g, o, true)
			if err != nil {
				return err
			}
			return gateway.Run(cmd.Context(), cfg, gateway.RunOptions{Version: version, Stderr: cmd.ErrOrStderr(), TakeOver: takeOver})
		},
	}
	o.register(cmd.Flags())
	cmd.Flags().BoolVar(&takeOver, "take-over", false,
		"take the bucket prefix's lease from a gateway that let it expire (one that died; refused while the lease is live)")
	return cmd
}
