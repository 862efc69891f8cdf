// Command gatewayd is the storage gateway: `gatewayd serve` runs the daemon,
// `gatewayd init` prepares a data directory, and every other subcommand is a
// client of a running daemon's admin API. This file only wires flags to the
// gateway, config and admin packages.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRootCmd().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "gatewayd: "+oneLine(err))
		os.Exit(1)
	}
}

// globals are the flags every subcommand shares.
type globals struct {
	dataDir string
}

func newRootCmd() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "gatewayd",
		Short:         "Storage gateway: NFS/SMB shares, iSCSI volumes and a virtual tape library backed by S3",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	// Every listing takes -o text|json; anything else is a mistake.
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		if f := cmd.Flags().Lookup("output"); f != nil && f.Value.String() != "text" && f.Value.String() != "json" {
			return fmt.Errorf("--output %q: want text or json", f.Value.String())
		}
		return nil
	}
	root.PersistentFlags().StringVar(&g.dataDir, "data-dir", defaultDataDir(),
		"data directory (config, keys, metadata, admin socket); env GATEWAYD_DATA_DIR")
	root.AddCommand(newInitCmd(g), newServeCmd(g), newStatusCmd(g), newConfigCmd(g), newVolumeCmd(g), newBandwidthCmd(g),
		newSnapshotCmd(g), newGCCmd(g), newRestoreCmd(g), newShareCmd(g), newTapeCmd(g), newVTLCmd(g), newSMBCmd(g))
	addCompletions(root, g)
	return root
}

// defaultDataDir is $GATEWAYD_DATA_DIR, else ~/.local/state/gatewayd.
func defaultDataDir() string {
	if d := os.Getenv("GATEWAYD_DATA_DIR"); d != "" {
		return d
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "state", "gatewayd")
	}
	return "gatewayd-data"
}

func (g *globals) absDataDir() (string, error) {
	if g.dataDir == "" {
		return "", errors.New("--data-dir is empty")
	}
	return filepath.Abs(g.dataDir)
}

// oneLine keeps an error to one line so scripts and people see one message.
func oneLine(err error) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", "; ")), " ")
}
