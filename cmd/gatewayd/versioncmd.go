package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// commit is set at build time with -ldflags "-X main.commit=..."; without
// it, the version control stamp Go puts in the binary is used.
var commit = ""

// buildInfo is what `gatewayd version` says: the version, the commit it
// was built from (with "+dirty" when the tree had changes) and the Go
// toolchain.
func buildInfo() (ver, rev, goVersion string) {
	ver, rev, goVersion = version, commit, runtime.Version()
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ver, rev, goVersion
	}
	if ver == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		ver = bi.Main.Version
	}
	if rev == "" {
		dirty := false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if rev != "" && dirty {
			rev += "+dirty"
		}
	}
	if rev == "" {
		rev = "unknown"
	}
	return ver, rev, goVersion
}

func newVersionCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version, the commit it was built from and the Go version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ver, rev, gov := buildInfo()
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), map[string]string{"version": ver, "commit": rev, "go": gov})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "gatewayd %s\ncommit   %s\ngo       %s\n", ver, rev, gov)
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	return cmd
}
