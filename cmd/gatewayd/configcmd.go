package main

import (
	"github.com/spf13/cobra"

	"github.com/gatewayd/gatewayd/config"
)

func newConfigCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Inspect the configuration"}
	o := &overrides{}
	print := &cobra.Command{
		Use:   "print",
		Short: "Print the effective configuration (file over defaults, flags over file), secrets redacted",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd, g, o, false)
			if err != nil {
				return err
			}
			b, err := config.Marshal(cfg.Redacted())
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		},
	}
	o.register(print.Flags())
	cmd.AddCommand(print)
	return cmd
}
