package main

import (
	"fmt"
	"net/http"
	"net/url"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/gatewayd/gatewayd/api/tapeapi"
	"github.com/gatewayd/gatewayd/tapes"
)

func newPoolCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "pool", Short: "Manage tape pools: the storage class archived tapes go to, and their retention lock"}

	var req tapeapi.PoolStatus
	var lock string
	createCmd := &cobra.Command{
		Use:   "create NAME --storage-class CLASS [--lock governance|compliance --lock-days N]",
		Short: "Create a pool; its retention lock starts when one of its tapes is archived",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.Name, req.Lock = args[0], tapes.LockMode(lock)
			var p tapeapi.PoolStatus
			if err := call(cmd, g, http.MethodPost, "/v1/pools", req, &p); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "created pool %s (%s)\n", p.Name, poolLock(p))
			return nil
		},
	}
	f := createCmd.Flags()
	f.StringVar(&req.StorageClass, "storage-class", "GLACIER", "the storage class the pool's tapes are archived to (GLACIER or DEEP_ARCHIVE on S3)")
	f.StringVar(&lock, "lock", "", "retention lock mode: governance (an explicit bypass may lift it) or compliance (nothing lifts it)")
	f.IntVar(&req.LockDays, "lock-days", 0, fmt.Sprintf("retention lock in days, 1 to %d, from when a tape is archived", tapes.MaxLockDays))

	var output string
	listCmd := &cobra.Command{
		Use:   "list",
		Short: "List the pools",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var list []tapeapi.PoolStatus
			if err := call(cmd, g, http.MethodGet, "/v1/pools", nil, &list); err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), list)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "POOL\tSTORAGE CLASS\tLOCK\tTAPES")
			for _, p := range list {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", p.Name, p.StorageClass, poolLock(p), p.Tapes)
			}
			return tw.Flush()
		},
	}
	listCmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")

	deleteCmd := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a pool that no tape belongs to",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := call(cmd, g, http.MethodDelete, "/v1/pools/"+url.PathEscape(args[0]), nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted pool %s\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(createCmd, listCmd, deleteCmd)
	return cmd
}

func poolLock(p tapeapi.PoolStatus) string {
	if p.Lock == "" {
		return "no lock"
	}
	return fmt.Sprintf("%s, %d days", p.Lock, p.LockDays)
}
