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
		code := 1
		var ec *exitCodeError
		if errors.As(err, &ec) {
			code = ec.code
		}
		// One "gatewayd:" however many layers the message came through.
		fmt.Fprintln(os.Stderr, "gatewayd: "+strings.TrimPrefix(oneLine(err), "gatewayd: "))
		os.Exit(code)
	}
}

// exitCodeError makes the command exit with code instead of 1 (status
// reports health in its exit code; an interrupted command exits 130).
type exitCodeError struct {
	code int
	err  error
}

// exitInterrupted is the exit code of a command stopped by Ctrl-C (128+SIGINT).
const exitInterrupted = 130

func (e *exitCodeError) Error() string { return e.err.Error() }
func (e *exitCodeError) Unwrap() error { return e.err }

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
		newSnapshotCmd(g), newGCCmd(g), newRestoreCmd(g), newShareCmd(g), newTapeCmd(g), newPoolCmd(g), newVTLCmd(g), newSMBCmd(g), newVersionCmd())
	addCompletions(root, g)
	root.InitDefaultCompletionCmd() // cobra adds it at Execute; here so the next line covers it
	refuseUnknownSubcommands(root)
	return root
}

// refuseUnknownSubcommands makes every command that only groups
// subcommands fail on a word that is none of them, naming the nearest
// ones, instead of printing its help and exiting 0 as cobra does for
// all but the root. With no word it prints its help.
func refuseUnknownSubcommands(c *cobra.Command) {
	for _, sub := range c.Commands() {
		refuseUnknownSubcommands(sub)
	}
	if !c.HasSubCommands() || c.Run != nil || c.RunE != nil {
		return
	}
	c.Args = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return nil
		}
		msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
		if s := suggest(cmd, args[0]); len(s) > 0 {
			msg += "; did you mean " + strings.Join(s, " or ") + "?"
		}
		return fmt.Errorf("%s (see %s --help)", msg, cmd.CommandPath())
	}
	c.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
}

// suggest names the subcommands of cmd close to word, and commands
// elsewhere called word (`volume snapshot` for `snapshot`).
func suggest(cmd *cobra.Command, word string) []string {
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2
	}
	var out []string
	for _, s := range cmd.SuggestionsFor(word) {
		out = append(out, fmt.Sprintf("%q", cmd.CommandPath()+" "+s))
	}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			if sub.Name() == word && sub.Parent() != cmd && sub.IsAvailableCommand() {
				out = append(out, fmt.Sprintf("%q", sub.CommandPath()))
			}
			walk(sub)
		}
	}
	walk(cmd.Root())
	return out
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
