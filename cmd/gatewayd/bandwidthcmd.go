package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/gatewayd/gatewayd/admin"

	"github.com/spf13/cobra"

	"github.com/gatewayd/gatewayd/api/bandwidthapi"
	"github.com/gatewayd/gatewayd/config"
)

func newBandwidthCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "bandwidth", Short: "Show or change the object store bandwidth limits of a running gateway"}
	var output string
	show := &cobra.Command{
		Use:   "show",
		Short: "Show the current limits",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var st bandwidthapi.BandwidthStatus
			if err := call(cmd, g, http.MethodGet, "/v1/bandwidth", nil, &st); err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), st)
			}
			printBandwidth(cmd.OutOrStdout(), st.Bandwidth)
			if st.Effective != st.Bandwidth || st.Window != 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "now, by schedule window %d:\n", st.Window)
				printBandwidth(cmd.OutOrStdout(), st.Effective)
			}
			return nil
		},
	}
	show.Flags().StringVarP(&output, "output", "o", "text", "text or json")
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
	cmd.AddCommand(show, set, newBandwidthScheduleCmd(g))
	return cmd
}

func newBandwidthScheduleCmd(g *globals) *cobra.Command {
	var windows []string
	var clear bool
	var output string
	cmd := &cobra.Command{
		Use:   "schedule [--window 'mon-fri 08:00-18:00 up=10M down=50M']... | --clear",
		Short: "Show or set limits by day of week and time of day (first matching window wins; outside them the base limits apply)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var s bandwidthapi.BandwidthSchedule
			if len(windows) == 0 && !clear {
				if err := call(cmd, g, http.MethodGet, "/v1/bandwidth/schedule", nil, &s); err != nil {
					return err
				}
			} else {
				for _, spec := range windows {
					w, err := parseWindow(spec)
					if err != nil {
						return fmt.Errorf("--window %q: %w", spec, err)
					}
					s.Windows = append(s.Windows, w)
				}
				if s.Windows == nil {
					s.Windows = []bandwidthapi.Window{}
				}
				if err := call(cmd, g, http.MethodPut, "/v1/bandwidth/schedule", s, nil); err != nil {
					return err
				}
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), s)
			}
			if len(s.Windows) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "no schedule: the base limits apply at all times")
			}
			for i, w := range s.Windows {
				days := strings.Join(w.Days, ",")
				if days == "" {
					days = "daily"
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%d  %s %s-%s  upload %s  download %s\n", i+1, days, w.Start, w.End,
					rateString(w.UploadBytesPerSec), rateString(w.DownloadBytesPerSec))
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&windows, "window", nil, "a window: [DAYS] HH:MM-HH:MM [up=RATE] [down=RATE]; DAYS like mon-fri, sat,sun or daily; RATE 0 = unlimited")
	cmd.Flags().BoolVar(&clear, "clear", false, "remove the schedule")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	return cmd
}

// parseWindow reads "mon-fri 08:00-18:00 up=10M down=50M".
func parseWindow(spec string) (bandwidthapi.Window, error) {
	var w bandwidthapi.Window
	order := []string{"mon", "tue", "wed", "thu", "fri", "sat", "sun"}
	index := func(d string) int {
		for i, o := range order {
			if o == d {
				return i
			}
		}
		return -1
	}
	for _, f := range strings.Fields(spec) {
		lower := strings.ToLower(f)
		switch {
		case strings.HasPrefix(lower, "up="), strings.HasPrefix(lower, "down="):
			_, v, _ := strings.Cut(f, "=")
			k, _, _ := strings.Cut(lower, "=")
			n, err := config.ParseByteSize(v)
			if err != nil {
				return w, err
			}
			if k == "up" {
				w.UploadBytesPerSec = int64(n)
			} else {
				w.DownloadBytesPerSec = int64(n)
			}
		case strings.Contains(f, ":"):
			a, b, ok := strings.Cut(f, "-")
			if !ok {
				return w, fmt.Errorf("%q: want HH:MM-HH:MM", f)
			}
			w.Start, w.End = a, b
		case lower == "daily":
		default:
			for _, part := range strings.Split(lower, ",") {
				a, b, isRange := strings.Cut(part, "-")
				i, j := index(a), index(b)
				if !isRange {
					j = i
				}
				if i < 0 || j < 0 {
					return w, fmt.Errorf("%q: days are mon..sun, a range mon-fri or a list sat,sun", part)
				}
				for k := i; ; k = (k + 1) % 7 {
					w.Days = append(w.Days, order[k])
					if k == j {
						break
					}
				}
			}
		}
	}
	if w.Start == "" {
		return w, fmt.Errorf("no HH:MM-HH:MM time span")
	}
	return w, nil
}

// currentBandwidth asks the running gateway for its limits.
func currentBandwidth(cmd *cobra.Command, g *globals) (*admin.Client, bandwidthapi.Bandwidth, error) {
	var bw bandwidthapi.Bandwidth
	c, err := adminClient(cmd, g)
	if err != nil {
		return nil, bw, err
	}
	err = c.Do(cmd.Context(), http.MethodGet, "/v1/bandwidth", nil, &bw)
	return c, bw, err
}

func printBandwidth(w io.Writer, bw bandwidthapi.Bandwidth) {
	fmt.Fprintf(w, "upload    %s\ndownload  %s\n", rateString(bw.UploadBytesPerSec), rateString(bw.DownloadBytesPerSec))
}

func rateString(v int64) string {
	if v == 0 {
		return "unlimited"
	}
	return config.ByteSize(v).Human() + "/s"
}
