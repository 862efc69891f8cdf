package main

import (
	"net/http"
	"strings"

	"github.com/spf13/cobra"

	"github.com/gatewayd/gatewayd/api/shareapi"
	"github.com/gatewayd/gatewayd/api/volumeapi"
	"github.com/gatewayd/gatewayd/volume"
)

// Shell completion is cobra's (`gatewayd completion bash|zsh|fish|powershell`);
// this file adds the names only a running gateway knows: volumes, shares
// and snapshots, asked of its admin API when the shell completes an
// argument.

// completeNames completes the first argument with what list returns.
func completeNames(g *globals, list func(cmd *cobra.Command) ([]string, error)) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		names, err := list(cmd)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveError
		}
		var out []cobra.Completion
		for _, n := range names {
			if strings.HasPrefix(n, toComplete) {
				out = append(out, n)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// listNames asks the gateway for the list at path and names its items.
func listNames[T any](g *globals, path string, name func(T) string) func(*cobra.Command) ([]string, error) {
	return func(cmd *cobra.Command) ([]string, error) {
		var items []T
		err := call(cmd, g, http.MethodGet, path, nil, &items)
		names := make([]string, 0, len(items))
		for _, it := range items {
			names = append(names, name(it))
		}
		return names, err
	}
}

func volumeNames(g *globals) func(*cobra.Command) ([]string, error) {
	return listNames(g, "/v1/volumes", func(v volumeapi.VolumeStatus) string { return v.Name })
}

func shareNames(g *globals) func(*cobra.Command) ([]string, error) {
	return listNames(g, "/v1/shares", func(s shareapi.ShareStatus) string { return s.Name })
}

func snapshotIDs(g *globals) func(*cobra.Command) ([]string, error) {
	return listNames(g, "/v1/snapshots", func(s volume.SnapshotInfo) string { return s.ID })
}

// addCompletions sets the argument completion of the commands that name
// a volume, a share or a snapshot, and of the --volume and --output flags.
func addCompletions(root *cobra.Command, g *globals) {
	byArg := map[string]func(*cobra.Command) ([]string, error){
		"volume info": volumeNames(g), "volume delete": volumeNames(g), "volume grow": volumeNames(g),
		"volume attach-info": volumeNames(g), "volume access": volumeNames(g), "volume wait": volumeNames(g),
		"snapshot create": volumeNames(g), "snapshot schedule": volumeNames(g), "volume set": volumeNames(g),
		"snapshot info": snapshotIDs(g), "snapshot delete": snapshotIDs(g), "snapshot verify": snapshotIDs(g),
		"share info": shareNames(g), "share delete": shareNames(g), "share refresh": shareNames(g), "share wait": shareNames(g),
	}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		path := strings.TrimPrefix(c.CommandPath(), root.Name()+" ")
		if list, ok := byArg[path]; ok && c.ValidArgsFunction == nil {
			c.ValidArgsFunction = completeNames(g, list)
		}
		if c.Flags().Lookup("output") != nil {
			_ = c.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]cobra.Completion{"text", "json"}, cobra.ShellCompDirectiveNoFileComp))
		}
		if path == "snapshot list" {
			_ = c.RegisterFlagCompletionFunc("volume", completeNames(g, volumeNames(g)))
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}
