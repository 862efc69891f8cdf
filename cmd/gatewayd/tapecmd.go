package main

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatewayd/gatewayd/api/tapeapi"
	"github.com/gatewayd/gatewayd/config"
	"github.com/gatewayd/gatewayd/tapes"
)

func newTapeCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "tape", Short: "Manage the virtual tapes of the tape library"}

	var req tapeapi.TapeCreateRequest
	var size string
	var output string
	createCmd := &cobra.Command{
		Use:   "create --count N --barcode-prefix P --size SIZE [--worm] [--pool POOL]",
		Short: "Create blank tapes in free storage slots (barcodes like GW0001L5), write-once with --worm",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			n, err := config.ParseByteSize(size)
			if err != nil {
				return fmt.Errorf("--size: %w", err)
			}
			req.Size = int64(n)
			var created []tapeapi.TapeStatus
			if err := call(cmd, g, http.MethodPost, "/v1/tapes", req, &created); err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), created)
			}
			return printTapes(cmd.OutOrStdout(), created)
		},
	}
	f := createCmd.Flags()
	f.IntVar(&req.Count, "count", 1, "how many tapes")
	f.StringVar(&req.BarcodePrefix, "barcode-prefix", "GW", "barcode prefix: 1 to 6 upper-case letters or digits")
	f.StringVar(&size, "size", "100G", "capacity of each tape")
	f.BoolVar(&req.WORM, "worm", false, "write-once tapes: appending works, nothing written is ever overwritten or erased")
	f.StringVar(&req.Pool, "pool", "", "the pool the tapes belong to (pool create): its storage class and retention lock apply when they are archived")
	f.StringVarP(&output, "output", "o", "text", "text or json")

	listCmd := &cobra.Command{
		Use:   "list",
		Short: "List the tapes and where each is",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var list []tapeapi.TapeStatus
			if err := call(cmd, g, http.MethodGet, "/v1/tapes", nil, &list); err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), list)
			}
			return printTapes(cmd.OutOrStdout(), list)
		},
	}
	listCmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")

	infoCmd := &cobra.Command{
		Use:   "info BARCODE",
		Short: "Show one tape",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var in tapeapi.TapeStatus
			if err := call(cmd, g, http.MethodGet, "/v1/tapes/"+url.PathEscape(args[0]), nil, &in); err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), in)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "barcode     %s\nstate       %s\nplace       %s\ncapacity    %s\nused        %s (%d logical objects)\nread-only   %v\nworm        %v\npool        %s\ncreated     %s\n",
				in.Barcode, tapeState(in), place(in), config.ByteSize(in.Capacity).Human(), config.ByteSize(in.Used).Human(), in.Objects, in.ReadOnly,
				in.WORM, poolName(in.Pool), in.Created.Format(time.RFC3339))
			if !in.LockUntil.IsZero() {
				fmt.Fprintf(w, "locked      until %s (%s)\n", in.LockUntil.Format(time.RFC3339), in.LockMode)
			}
			if r := in.Retrieval; r != nil {
				fmt.Fprintf(w, "retrieval   %s tier since %s: %d of %d objects readable, %d restoring\n",
					r.Tier, r.Started.Format(time.RFC3339), r.Readable, r.Objects, r.Restoring)
			}
			if !in.Archived.IsZero() {
				pending := ""
				if in.ArchivePending {
					pending = " (objects still moving to the archive storage class)"
				}
				fmt.Fprintf(w, "archived    %s%s\n", in.Archived.Format(time.RFC3339), pending)
			}
			return nil
		},
	}
	infoCmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")

	simple := func(use, short, verb, method, suffix string) *cobra.Command {
		return &cobra.Command{
			Use: use + " BARCODE", Short: short, Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				if err := call(cmd, g, method, "/v1/tapes/"+url.PathEscape(args[0])+suffix, nil, nil); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s tape %s\n", verb, args[0])
				return nil
			},
		}
	}
	var bypass bool
	deleteCmd := &cobra.Command{
		Use: "delete BARCODE", Short: "Delete a tape and its data (not while it is in a drive, nor while its pool's retention lock holds)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := "/v1/tapes/" + url.PathEscape(args[0])
			if bypass {
				path += "?bypass_governance=true"
			}
			if err := call(cmd, g, http.MethodDelete, path, nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted tape %s\n", args[0])
			return nil
		},
	}
	deleteCmd.Flags().BoolVar(&bypass, "bypass-governance", false, "delete a tape whose governance-mode retention lock still holds")
	archiveCmd := simple("archive", "Take a tape out of the library into its pool's archive storage class (as moving it to the import/export element does)", "archived", http.MethodPost, "/archive")
	var tier string
	retrieveCmd := &cobra.Command{
		Use: "retrieve BARCODE [--tier Standard|Bulk|Expedited]", Args: cobra.ExactArgs(1),
		Short: "Bring an archived tape back into a free slot, read-only; from cold storage (GLACIER, DEEP_ARCHIVE) its objects are restored first and it is retrieving meanwhile",
		RunE: func(cmd *cobra.Command, args []string) error {
			path := "/v1/tapes/" + url.PathEscape(args[0]) + "/retrieve"
			if tier != "" {
				path += "?tier=" + url.QueryEscape(tier)
			}
			var in tapeapi.TapeStatus
			if err := call(cmd, g, http.MethodPost, path, nil, &in); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "tape %s %s\n", args[0], tapeState(in))
			return nil
		},
	}
	retrieveCmd.Flags().StringVar(&tier, "tier", "", "restore tier from cold storage: Standard (the default), Bulk or Expedited")

	var poolReq tapeapi.TapePoolRequest
	assignCmd := &cobra.Command{
		Use: "assign-pool BARCODE --pool POOL", Args: cobra.ExactArgs(1),
		Short: "Move a tape to another pool (\"\" for none); an archived tape's objects move to the pool's storage class and its lock starts; refused while the tape's retention lock holds",
		RunE: func(cmd *cobra.Command, args []string) error {
			var in tapeapi.TapeStatus
			if err := call(cmd, g, http.MethodPost, "/v1/tapes/"+url.PathEscape(args[0])+"/pool", poolReq, &in); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "tape %s in pool %s\n", args[0], poolName(in.Pool))
			if in.State == tapes.StateArchived && in.ArchivePending {
				fmt.Fprintln(cmd.OutOrStdout(), "its objects move to the pool's storage class once restored (archived objects are restored first); assign-pool again looks at once")
			}
			return nil
		},
	}
	assignCmd.Flags().StringVar(&poolReq.Pool, "pool", "", "the pool")
	assignCmd.Flags().BoolVar(&poolReq.BypassGovernance, "bypass-governance", false, "move a tape whose governance-mode retention lock still holds")
	_ = assignCmd.MarkFlagRequired("pool")

	var rule tapes.SpareRule
	var spareSize string
	sparesCmd := &cobra.Command{
		Use:   "spares --count N [--barcode-prefix P] [--size SIZE] [--pool POOL]",
		Short: "Keep N blank tapes in the slots, creating tapes when there are fewer (0: off)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("count") {
				var cur tapes.SpareRule
				if err := call(cmd, g, http.MethodGet, "/v1/vtl/spares", nil, &cur); err != nil {
					return err
				}
				if cur.Count == 0 {
					fmt.Fprintln(cmd.OutOrStdout(), "no spare tape rule")
					return nil
				}
				fmt.Fprintf(cmd.OutOrStdout(), "keeping %d blank tapes of %s with barcodes %s.... in pool %s\n", cur.Count, config.ByteSize(cur.Size).Human(), cur.Prefix, poolName(cur.Pool))
				return nil
			}
			n, err := config.ParseByteSize(spareSize)
			if err != nil {
				return fmt.Errorf("--size: %w", err)
			}
			rule.Size = int64(n)
			if err := call(cmd, g, http.MethodPut, "/v1/vtl/spares", rule, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "keeping %d blank tapes\n", rule.Count)
			return nil
		},
	}
	sparesCmd.Flags().IntVar(&rule.Count, "count", 0, "blank tapes to keep")
	sparesCmd.Flags().StringVar(&rule.Prefix, "barcode-prefix", "GW", "barcode prefix of the tapes created")
	sparesCmd.Flags().StringVar(&spareSize, "size", "100G", "capacity of the tapes created")
	sparesCmd.Flags().StringVar(&rule.Pool, "pool", "", "the pool of the tapes created (and counted)")

	cmd.AddCommand(createCmd, listCmd, infoCmd, deleteCmd, archiveCmd, retrieveCmd, sparesCmd, assignCmd)
	return cmd
}

func place(in tapeapi.TapeStatus) string {
	if in.Location == "" {
		return "-"
	}
	return in.Location
}

func printTapes(w io.Writer, list []tapeapi.TapeStatus) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BARCODE\tSTATE\tPLACE\tCAPACITY\tUSED\tREAD-ONLY\tWORM\tPOOL")
	for _, in := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%v\t%v\t%s\n", in.Barcode, tapeState(in), place(in), config.ByteSize(in.Capacity).Human(),
			config.ByteSize(in.Used).Human(), in.ReadOnly, in.WORM, poolName(in.Pool))
	}
	return tw.Flush()
}

// tapeState is the tape's state, with a retrieval's progress.
func tapeState(in tapeapi.TapeStatus) string {
	if r := in.Retrieval; r != nil && in.State == tapes.StateRetrieving {
		return fmt.Sprintf("%s (%d/%d objects readable)", in.State, r.Readable, r.Objects)
	}
	return string(in.State)
}

func poolName(name string) string {
	if name == "" {
		return "-"
	}
	return name
}

func newVTLCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "vtl", Short: "The virtual tape library"}
	var output string
	infoCmd := &cobra.Command{
		Use:   "info",
		Short: "What a backup server needs: targets, LUNs, devices, element addresses",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var in tapeapi.VTLInfo
			if err := call(cmd, g, http.MethodGet, "/v1/vtl", nil, &in); err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), in)
			}
			w := cmd.OutOrStdout()
			portal := in.Portal
			if portal == "" {
				portal = "not served (iscsi.listen is empty)"
			}
			fmt.Fprintf(w, "portal      %s\nslots       %d (from element %d)\ndrives      %d (from element %d)\nimport/export %d (element %d)\ntransport   element %d\nchap        %v\n",
				portal, in.Geometry.Slots, in.Addresses.Slot, in.Geometry.Drives, in.Addresses.Drive, in.Geometry.IE, in.Addresses.IE, in.Addresses.Transport, in.CHAP)
			fmt.Fprintf(w, "tapes       %d in slots, %d in drives, %d archived, %d retrieving, %d retrieved\n",
				in.Tapes[string(tapes.StateLibrary)], in.Tapes[string(tapes.StateDrive)], in.Tapes[string(tapes.StateArchived)],
				in.Tapes[string(tapes.StateRetrieving)], in.Tapes[string(tapes.StateRetrieved)])
			for _, tg := range in.Targets {
				fmt.Fprintf(w, "\ntarget %s\n", tg.Name)
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "  LUN\tDEVICE\tVENDOR\tPRODUCT\tSERIAL\tELEMENT")
				for _, u := range tg.LUNs {
					fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\t%d\n", u.LUN, u.Type, u.Vendor, u.Product, u.Serial, u.Address)
				}
				tw.Flush()
			}
			if len(in.Commands) > 0 {
				fmt.Fprintln(w, "\non a Linux backup server:")
				for _, c := range in.Commands {
					fmt.Fprintln(w, "  "+c)
				}
			}
			return nil
		},
	}
	infoCmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	cmd.AddCommand(infoCmd)
	return cmd
}
