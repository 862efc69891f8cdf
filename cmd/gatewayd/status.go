package main

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatewayd/gatewayd/admin"
)

func newStatusCmd(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show a running gateway's state and health",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := adminClient(cmd, g)
			if err != nil {
				return err
			}
			st, err := c.Status(cmd.Context())
			if err != nil {
				return err
			}
			switch output {
			case "json":
				return writeJSON(cmd.OutOrStdout(), st)
			case "text":
				printStatus(cmd.OutOrStdout(), st)
				return nil
			}
			return fmt.Errorf("--output: %q is not text or json", output)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	return cmd
}

func printStatus(w io.Writer, st *admin.Status) {
	fmt.Fprintf(w, "gatewayd %s  id %s  up %s\n", st.Version, st.GatewayID, time.Since(st.StartedAt).Round(time.Second))
	fmt.Fprintf(w, "data dir  %s\n", st.DataDir)
	fmt.Fprintf(w, "store     %s\n", st.Store)
	fmt.Fprintf(w, "health    %s\n", st.Overall)
	for _, h := range st.Health {
		line := fmt.Sprintf("  %-14s %-8s", h.Subsystem, h.Level)
		if h.Message != "" {
			line += " " + h.Message
		}
		fmt.Fprintln(w, line)
	}
	fmt.Fprintln(w, "frontends")
	for _, f := range st.Frontends {
		fmt.Fprintf(w, "  %-14s %-22s %s\n", f.Name, f.Listen, f.State)
	}
}

// adminClient finds the admin socket of the gateway in --data-dir.
func adminClient(cmd *cobra.Command, g *globals) (*admin.Client, error) {
	cfg, err := loadConfig(cmd, g, nil, false)
	if err != nil {
		return nil, err
	}
	return admin.NewUnixClient(cfg.Path(cfg.Admin.Socket)), nil
}
