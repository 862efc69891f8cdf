package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatewayd/gatewayd/config"
	"github.com/gatewayd/gatewayd/gateway"
	"github.com/gatewayd/gatewayd/volume"
)

func newVolumeCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "volume", Short: "Manage block volumes (cached or stored)"}

	var create gateway.CreateVolumeRequest
	var size, chunk string
	createCmd := &cobra.Command{
		Use:   "create",
		Short: "Create a volume",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := config.ParseByteSize(size)
			if err != nil {
				return fmt.Errorf("--size: %w", err)
			}
			create.Size = int64(s)
			if chunk != "" {
				cs, err := config.ParseByteSize(chunk)
				if err != nil {
					return fmt.Errorf("--chunk-size: %w", err)
				}
				create.ChunkSize = int(cs)
			}
			c, err := adminClient(cmd, g)
			if err != nil {
				return err
			}
			var st gateway.VolumeStatus
			if err := c.Do(cmd.Context(), http.MethodPost, "/v1/volumes", create, &st); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "created %s volume %s (%s, id %s)\n", st.Kind, st.Name, config.ByteSize(st.Size), st.ID)
			return nil
		},
	}
	createCmd.Flags().StringVar(&create.Name, "name", "", "volume name (letters, digits, '-', '_', '.')")
	createCmd.Flags().StringVar(&size, "size", "", "volume size, e.g. 100G")
	createCmd.Flags().StringVar((*string)(&create.Kind), "kind", "cached", "cached (primary data in S3) or stored (primary data on a local disk)")
	createCmd.Flags().StringVar(&create.Disk, "disk", "", "stored volumes: existing file or block device (default: a new sparse file in the data dir)")
	createCmd.Flags().StringVar(&chunk, "chunk-size", "", "chunk size, a power of two from 64K to 4M (default 1M)")
	_ = createCmd.MarkFlagRequired("name")
	_ = createCmd.MarkFlagRequired("size")

	var output string
	listCmd := &cobra.Command{
		Use:   "list",
		Short: "List volumes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := adminClient(cmd, g)
			if err != nil {
				return err
			}
			var vols []gateway.VolumeStatus
			if err := c.Do(cmd.Context(), http.MethodGet, "/v1/volumes", nil, &vols); err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), vols)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tKIND\tSIZE\tCHUNK\tNOT UPLOADED\tLAST UPLOAD")
			for _, v := range vols {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", v.Name, v.Kind, config.ByteSize(v.Size), config.ByteSize(v.ChunkSize),
					config.ByteSize(v.Stats.DirtyBytes), ago(v.Stats.LastUpload))
			}
			return tw.Flush()
		},
	}
	listCmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")

	infoCmd := &cobra.Command{
		Use:   "info NAME",
		Short: "Show a volume",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := adminClient(cmd, g)
			if err != nil {
				return err
			}
			var v gateway.VolumeStatus
			if err := c.Do(cmd.Context(), http.MethodGet, "/v1/volumes/"+url.PathEscape(args[0]), nil, &v); err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), v)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "name          %s\nid            %s\nkind          %s\nsize          %s\nchunk size    %s\n",
				v.Name, v.ID, v.Kind, config.ByteSize(v.Size), config.ByteSize(v.ChunkSize))
			if v.Kind == volume.Stored {
				fmt.Fprintf(w, "disk          %s\n", v.Disk)
			}
			fmt.Fprintf(w, "cache hits    %.1f%% (gateway)\nupload buffer %s used (gateway)\n", v.CacheHitPercent, config.ByteSize(v.UploadBufferUsed))
			fmt.Fprintf(w, "not uploaded  %s in %d chunks waiting\nlast upload   %s\nrecovery pt   %s\nupload errors %d\ncreated       %s\n",
				config.ByteSize(v.Stats.DirtyBytes), v.Stats.PendingChunks, ago(v.Stats.LastUpload), ago(v.Stats.LastRecoveryPoint),
				v.Stats.UploadErrors, v.Created.Format(time.RFC3339))
			return nil
		},
	}
	infoCmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")

	deleteCmd := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a volume (its data in S3 is released for garbage collection)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := adminClient(cmd, g)
			if err != nil {
				return err
			}
			if err := c.Do(cmd.Context(), http.MethodDelete, "/v1/volumes/"+url.PathEscape(args[0]), nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted volume %s\n", args[0])
			return nil
		},
	}

	var growSize string
	growCmd := &cobra.Command{
		Use:   "grow NAME --size SIZE",
		Short: "Make a volume larger",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := config.ParseByteSize(growSize)
			if err != nil {
				return fmt.Errorf("--size: %w", err)
			}
			c, err := adminClient(cmd, g)
			if err != nil {
				return err
			}
			var v gateway.VolumeStatus
			if err := c.Do(cmd.Context(), http.MethodPost, "/v1/volumes/"+url.PathEscape(args[0])+"/grow", gateway.GrowVolumeRequest{Size: int64(s)}, &v); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "volume %s is now %s\n", v.Name, config.ByteSize(v.Size))
			return nil
		},
	}
	growCmd.Flags().StringVar(&growSize, "size", "", "new size, e.g. 200G")
	_ = growCmd.MarkFlagRequired("size")

	cmd.AddCommand(createCmd, listCmd, infoCmd, deleteCmd, growCmd)
	return cmd
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return time.Since(t).Round(time.Second).String() + " ago"
}
