package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatewayd/gatewayd/admin"
	"github.com/gatewayd/gatewayd/api/bandwidthapi"
	"github.com/gatewayd/gatewayd/api/shareapi"
	"github.com/gatewayd/gatewayd/api/statsapi"
	"github.com/gatewayd/gatewayd/api/tapeapi"
	"github.com/gatewayd/gatewayd/api/volumeapi"
	"github.com/gatewayd/gatewayd/config"
	"github.com/gatewayd/gatewayd/health"
	"github.com/gatewayd/gatewayd/tapes"
	"github.com/gatewayd/gatewayd/volume"
)

// summary is what `gatewayd status` shows: the daemon's status and, from
// the other endpoints, the data path at a glance.
type summary struct {
	admin.Status
	Stats     *statsapi.GatewayStats        `json:"stats,omitempty"`
	Bandwidth *bandwidthapi.BandwidthStatus `json:"bandwidth,omitempty"`
	Volumes   []volumeapi.VolumeStatus      `json:"volumes"`
	Shares    []shareapi.ShareStatus        `json:"shares"`
	Snapshots []volume.SnapshotInfo         `json:"snapshots"`
	// Tapes is nil when the gateway has no tape library.
	Tapes *tapeapi.VTLInfo `json:"tapes,omitempty"`
}

func newStatusCmd(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show a running gateway on one screen: health, store, cache, buffers, bandwidth, volumes, shares, snapshots",
		Long: "Show a running gateway on one screen: health, store, cache, buffers, bandwidth, volumes, shares, snapshots.\n\n" +
			"The exit code is the gateway's health, for scripts and monitoring (as Nagios plugins count):\n" +
			"  0  healthy: every subsystem ok\n" +
			"  1  degraded: a subsystem warns (e.g. writes wait for a full cache or buffer); data is served\n" +
			"  2  failed: a subsystem fails (e.g. the object store is unreachable)\n" +
			"  3  unknown: the gateway does not answer (not running) or status itself failed",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			unknown := func(err error) error { return &exitCodeError{code: statusUnknown, err: err} }
			c, err := adminClient(cmd, g)
			if err != nil {
				return unknown(err)
			}
			s, err := fetchSummary(cmd.Context(), c)
			if err != nil {
				return unknown(err)
			}
			switch output {
			case "json":
				if err := writeJSON(cmd.OutOrStdout(), s); err != nil {
					return unknown(err)
				}
			default:
				printStatus(cmd.OutOrStdout(), s)
			}
			switch s.Overall {
			case health.OK:
				return nil
			case health.Warning:
				return &exitCodeError{code: statusDegraded, err: fmt.Errorf("health DEGRADED: %s", unhealthy(s.Health))}
			}
			return &exitCodeError{code: statusFailed, err: fmt.Errorf("health FAILED: %s", unhealthy(s.Health))}
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	return cmd
}

// Exit codes of `gatewayd status` (its --help and the README list them).
const (
	statusDegraded = 1
	statusFailed   = 2
	statusUnknown  = 3
)

// unhealthy names the subsystems that are not ok, with their messages.
func unhealthy(states []health.State) string {
	var parts []string
	for _, h := range states {
		if h.Level != health.OK {
			parts = append(parts, fmt.Sprintf("%s %s: %s", h.Subsystem, h.Level, h.Message))
		}
	}
	return strings.Join(parts, "; ")
}

func fetchSummary(ctx context.Context, c *admin.Client) (*summary, error) {
	st, err := c.Status(ctx)
	if err != nil {
		return nil, err
	}
	s := &summary{Status: *st, Stats: &statsapi.GatewayStats{}, Bandwidth: &bandwidthapi.BandwidthStatus{}}
	for _, r := range []struct {
		path string
		out  any
	}{{"/v1/stats", s.Stats}, {"/v1/bandwidth", s.Bandwidth}, {"/v1/volumes", &s.Volumes}, {"/v1/shares", &s.Shares}, {"/v1/snapshots", &s.Snapshots}} {
		if err := c.Do(ctx, http.MethodGet, r.path, nil, r.out); err != nil {
			return nil, err
		}
	}
	var vtl tapeapi.VTLInfo
	if err := c.Do(ctx, http.MethodGet, "/v1/vtl", nil, &vtl); err == nil {
		s.Tapes = &vtl
	}
	return s, nil
}

func pct(part, whole int64) float64 {
	if whole <= 0 {
		return 0
	}
	return 100 * float64(part) / float64(whole)
}

// maxListed is how many volumes and shares status names before "and N more".
const maxListed = 8

func printStatus(w io.Writer, s *summary) {
	fmt.Fprintf(w, "gatewayd %s  id %s  up %s  health %s\n", s.Version, s.GatewayID, time.Since(s.StartedAt).Round(time.Second), strings.ToUpper(s.Overall.String()))
	fmt.Fprintf(w, "data dir   %s\n", s.DataDir)
	store := "not checked yet"
	for _, h := range s.Health {
		if h.Subsystem == "objstore" {
			store = "reachable"
			if h.Level.String() != "ok" {
				store = "UNREACHABLE: " + h.Message
			}
		}
	}
	fmt.Fprintf(w, "store      %s  %s\n", s.Store, store)
	if st := s.Stats; st != nil {
		cs := st.Cache
		fmt.Fprintf(w, "cache      %s of %s used (%.1f%%), %s dirty (%.1f%%), %.1f%% of reads hit\n",
			config.ByteSize(cs.Used).Human(), config.ByteSize(cs.Capacity).Human(), pct(cs.Used, cs.Capacity), config.ByteSize(cs.Dirty).Human(), pct(cs.Dirty, cs.Capacity), cs.HitPercent)
		fmt.Fprintf(w, "buffers    volumes %s of %s (%.1f%%), file shares %s of %s (%.1f%%)\n",
			config.ByteSize(st.UploadBuffer.Used).Human(), config.ByteSize(st.UploadBuffer.Capacity).Human(), pct(st.UploadBuffer.Used, st.UploadBuffer.Capacity),
			config.ByteSize(st.ShareBuffer.Used).Human(), config.ByteSize(st.ShareBuffer.Capacity).Human(), pct(st.ShareBuffer.Used, st.ShareBuffer.Capacity))
		fmt.Fprintf(w, "moved      %s up, %s down since start; %d upload errors\n",
			config.ByteSize(int64(st.BytesUploaded)).Human(), config.ByteSize(int64(st.BytesDownloaded)).Human(), st.UploadErrors)
	}
	if bw := s.Bandwidth; bw != nil {
		by := ""
		if bw.Window > 0 {
			by = fmt.Sprintf(" (schedule window %d)", bw.Window)
		}
		fmt.Fprintf(w, "bandwidth  upload %s, download %s%s\n", rateString(bw.Effective.UploadBytesPerSec), rateString(bw.Effective.DownloadBytesPerSec), by)
	}

	var notUploaded int64
	for _, v := range s.Volumes {
		notUploaded += v.Stats.DirtyBytes
	}
	fmt.Fprintf(w, "volumes    %d, %s not yet uploaded\n", len(s.Volumes), config.ByteSize(notUploaded).Human())
	for i, v := range s.Volumes {
		if i == maxListed {
			fmt.Fprintf(w, "  ... and %d more (gatewayd volume list)\n", len(s.Volumes)-maxListed)
			break
		}
		line := fmt.Sprintf("  %-16s %-6s %8s  not uploaded %-8s", v.Name, v.Kind, config.ByteSize(v.Size).Human(), config.ByteSize(v.Stats.DirtyBytes).Human())
		if v.Kind == volume.Cached {
			line += "  recovery point " + ago(v.Stats.LastRecoveryPoint)
		}
		if v.WriteCache {
			line += "  write cache on"
		}
		if h := v.Stats.Hydration; h != nil && !h.Complete {
			line += fmt.Sprintf("  hydrating %.1f%%", pct(int64(h.DoneChunks), int64(h.TotalChunks)))
		}
		fmt.Fprintln(w, line)
	}
	pending := 0
	names := []string{}
	for _, sh := range s.Shares {
		names = append(names, sh.Name)
		if s.Stats != nil {
			pending += s.Stats.SharesPending[sh.Name]
		}
	}
	if len(names) > maxListed {
		names = append(names[:maxListed], fmt.Sprintf("and %d more", len(s.Shares)-maxListed))
	}
	fmt.Fprintf(w, "shares     %d%s, %d files not yet uploaded\n", len(s.Shares), paren(strings.Join(names, ", ")), pending)
	snaps := "none"
	if len(s.Snapshots) > 0 {
		sort.Slice(s.Snapshots, func(i, j int) bool { return s.Snapshots[i].Created.After(s.Snapshots[j].Created) })
		newest := s.Snapshots[0]
		snaps = fmt.Sprintf("%d, newest %s of %s", len(s.Snapshots), ago(newest.Created), newest.VolumeName)
	}
	fmt.Fprintf(w, "snapshots  %s\n", snaps)
	if t := s.Tapes; t != nil {
		fmt.Fprintf(w, "tapes      %d in slots, %d in drives, %d archived, %d retrieving, %d retrieved; %d drives, %d slots\n",
			t.Tapes[string(tapes.StateLibrary)], t.Tapes[string(tapes.StateDrive)], t.Tapes[string(tapes.StateArchived)],
			t.Tapes[string(tapes.StateRetrieving)], t.Tapes[string(tapes.StateRetrieved)], t.Geometry.Drives, t.Geometry.Slots)
		if r := t.Retrieval; r != nil {
			fmt.Fprintf(w, "retrieving %d of %d objects readable, %d being restored from cold storage\n", r.Readable, r.Objects, r.Restoring)
		}
	}
	fmt.Fprintln(w, "health")
	for _, h := range s.Health {
		line := fmt.Sprintf("  %-14s %-8s", h.Subsystem, h.Level)
		if h.Message != "" {
			line += " " + h.Message
		}
		fmt.Fprintln(w, line)
	}
	fmt.Fprintln(w, "frontends")
	for _, f := range s.Frontends {
		fmt.Fprintf(w, "  %-14s %-22s %s\n", f.Name, f.Listen, f.State)
	}
}

func paren(s string) string {
	if s == "" {
		return ""
	}
	return " (" + s + ")"
}

// adminClient finds the admin socket of the gateway in --data-dir.
func adminClient(cmd *cobra.Command, g *globals) (*admin.Client, error) {
	cfg, err := loadConfig(cmd, g, nil, false)
	if err != nil {
		return nil, err
	}
	return admin.NewUnixClient(cfg.Path(cfg.Admin.Socket)), nil
}
