package main

import (
	"fmt"
	"io"
	"net/http"

	"github.com/gatewayd/gatewayd/admin"

	"github.com/spf13/cobra"

	"github.com/gatewayd/gatewayd/config"
	"github.com/gatewayd/gatewayd/gateway"
)

func newBandwidthCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "bandwidth", Short: "Show or change the object store bandwidth limits of a running gateway"}
	show := &cobra.Command{
		Use:   "show",
		Short: "Show the current limits",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, bw, err := currentBandwidth(cmd, g)
			if err != nil {
				return err
			}
			printBandwidth(cmd.OutOrStdout(), bw)
			return nil
		},
	}
	var up, down string
	set := &cobra.Command{
		Use:   "set",
		Short: "Change the limits now (bytes per second, e.g. 50M; 0 = unlimited); the config file's limits apply again after a restart",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, bw, err := currentBandwidth(cmd, g)
			if err != nil {
				return err
			}
			for _, f := range []struct {
				flag string
				val  string
				dst  *int64
			}{{"upload", up, &bw.UploadBytesPerSec}, {"download", down, &bw.DownloadBytesPerSec}} {
				if !cmd.Flags().Changed(f.flag) {
					continue
				}
				v, err := config.ParseByteSize(f.val)
				if err != nil {
					return fmt.Errorf("--%s: %w", f.flag, err)
				}
				*f.dst = int64(v)
			}
			if err := c.Do(cmd.Context(), http.MethodPut, "/v1/bandwidth", bw, &bw); err != nil {
				return err
			}
			printBandwidth(cmd.OutOrStdout(), bw)
			return nil
		},
	}
	set.Flags().StringVar(&up, "upload", "", "upload limit in bytes per second (0 = unlimited)")
	set.Flags().StringVar(&down, "download", "", "download limit in bytes per second (0 = unlimited)")
	cmd.AddCommand(show, set)
	return cmd
}

// currentBandwidth asks the running gateway for its limits.
func currentBandwidth(cmd *cobra.Command, g *globals) (*admin.Client, gateway.Bandwidth, error) {
	var bw gateway.Bandwidth
	c, err := adminClient(cmd, g)
	if err != nil {
		return nil, bw, err
	}
	err = c.Do(cmd.Context(), http.MethodGet, "/v1/bandwidth", nil, &bw)
	return c, bw, err
}

func printBandwidth(w io.Writer, bw gateway.Bandwidth) {
	rate := func(v int64) string {
		if v == 0 {
			return "unlimited"
		}
		return config.ByteSize(v).String() + "/s"
	}
	fmt.Fprintf(w, "upload    %s\ndownload  %s\n", rate(bw.UploadBytesPerSec), rate(bw.DownloadBytesPerSec))
}
