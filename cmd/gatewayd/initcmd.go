package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/gatewayd/gatewayd/config"
	"github.com/gatewayd/gatewayd/gateway"
)

func newInitCmd(g *globals) *cobra.Command {
	o := &overrides{}
	var existingKey, passphraseEnv, objectLock string
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create a data directory: config, master key and the bucket's repository config",
		Long: `init creates the data directory, writes gatewayd.yaml with the given options,
creates a master key (or takes an existing one with --master-key-file, to attach a
new gateway to a bucket another gateway initialised, e.g. for disaster recovery) and
initialises the object store. Keep a copy of the master key somewhere safe: without
it, data in the bucket cannot be read.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, err := g.absDataDir()
			if err != nil {
				return err
			}
			cfg := config.Default(dir)
			if err := o.apply(cmd, cfg); err != nil {
				return err
			}
			if passphraseEnv != "" {
				cfg.Keys.PassphraseEnv = passphraseEnv
				cfg.Keys.MasterKeyFile = ""
			}
			res, err := gateway.Init(cmd.Context(), cfg, gateway.InitOptions{ExistingKeyFile: existingKey, ObjectLock: objectLock})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "initialised %s\n", dir)
			fmt.Fprintf(out, "  gateway id: %s\n", res.GatewayID)
			fmt.Fprintf(out, "  store:      %s (%s)\n", res.Store, res.BucketState)
			if res.MasterKeyFile != "" {
				fmt.Fprintf(out, "  master key: %s  <- back this file up; data cannot be read without it\n", res.MasterKeyFile)
			}
			if cfg.Snapshots.ObjectLock != "" {
				fmt.Fprintf(out, "  object lock: snapshots can be locked (%s mode): snapshot create --lock 30d\n", cfg.Snapshots.ObjectLock)
			}
			fmt.Fprintf(out, "start it with: gatewayd serve --data-dir %s\n", dir)
			return nil
		},
	}
	o.register(cmd.Flags())
	cmd.Flags().StringVar(&existingKey, "master-key-file", "", "use this existing master key instead of creating one")
	cmd.Flags().StringVar(&passphraseEnv, "passphrase-env", "", "derive the master key from the passphrase in this environment variable instead of a key file")
	cmd.Flags().StringVar(&objectLock, "object-lock", "", "let snapshots be locked with the bucket's Object Lock, in governance (the default) or compliance mode; the bucket must have Object Lock")
	cmd.Flags().Lookup("object-lock").NoOptDefVal = "governance"
	return cmd
}
