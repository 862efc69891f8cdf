package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatewayd/gatewayd/api/snapshotapi"
	"github.com/gatewayd/gatewayd/config"
	"github.com/gatewayd/gatewayd/gateway"
	"github.com/gatewayd/gatewayd/keys"
	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/snapshots"
	"github.com/gatewayd/gatewayd/volume"
)

func newSnapshotCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "snapshot", Short: "Take, list, verify and schedule volume snapshots"}
	var output string

	var desc string
	var showProgress bool
	var lock lockPeriod
	createCmd := &cobra.Command{
		Use:   "create VOLUME",
		Short: "Take a point-in-time snapshot of a volume and upload it (writes continue meanwhile)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := adminClient(cmd, g)
			if err != nil {
				return err
			}
			stop := func() {}
			var bar *progressBar
			if showProgress || isTerminal(cmd.ErrOrStderr()) {
				bar = &progressBar{w: cmd.ErrOrStderr()}
				stop = watchUploads(cmd.Context(), c, args[0], bar)
			}
			// Ctrl-C leaves a snapshot the gateway was asked for running
			// there (the gateway does not tie it to this connection); the
			// trace tells whether the request was sent.
			var sent atomic.Bool
			ctx := httptrace.WithClientTrace(cmd.Context(), &httptrace.ClientTrace{WroteRequest: func(i httptrace.WroteRequestInfo) {
				if i.Err == nil && !sent.Swap(true) && bar != nil {
					bar.note(fmt.Sprintf("snapshot of %s started in the gateway (Ctrl-C leaves it running there)", args[0]))
				}
			}})
			var si volume.SnapshotInfo
			err = c.Do(ctx, http.MethodPost, "/v1/volumes/"+url.PathEscape(args[0])+"/snapshots",
				snapshotapi.CreateSnapshotRequest{Description: desc, Lock: volume.Duration(lock)}, &si)
			stop()
			if err != nil && cmd.Context().Err() != nil {
				if sent.Load() {
					err = fmt.Errorf("interrupted: the snapshot of %s goes on in the gateway; `gatewayd snapshot list --volume %s` shows it when it is done", args[0], args[0])
				} else {
					err = fmt.Errorf("interrupted before the request reached the gateway: no snapshot of %s was taken", args[0])
				}
				return &exitCodeError{code: exitInterrupted, err: err}
			}
			if err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), si)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "snapshot %s of volume %s: %d chunks, uploaded %s in %d new chunks\n",
				si.ID, si.VolumeName, si.Chunks, config.ByteSize(si.UploadedBytes).Human(), si.UploadedChunks)
			if si.Lock != nil {
				fmt.Fprintf(cmd.OutOrStdout(), "locked until %s (%s)%s\n", si.Lock.Until.Format(time.RFC3339), strings.ToLower(string(si.Lock.Mode)), retainedNote(si.Retained))
			}
			return nil
		},
	}
	createCmd.Flags().StringVar(&desc, "description", "", "what the snapshot is for")
	createCmd.Flags().Var(&lock, "lock", "lock the snapshot for this long with Object Lock, e.g. 30d or 12h (bucket initialised with --object-lock)")
	createCmd.Flags().BoolVar(&showProgress, "progress", false, "draw the upload's progress on stderr (the default on a terminal)")
	createCmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")

	var vol string
	var bucketOnly bool
	var repo repoFlags
	listCmd := &cobra.Command{
		Use:   "list",
		Short: "List snapshots (--bucket-only: from the object store alone, no daemon needed)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if bucketOnly {
				return listFromBucket(cmd, g, &repo, vol, output)
			}
			path := "/v1/snapshots"
			if vol != "" {
				path += "?volume=" + url.QueryEscape(vol)
			}
			var list []volume.SnapshotInfo
			if err := call(cmd, g, http.MethodGet, path, nil, &list); err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), list)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tVOLUME\tCREATED\tSIZE\tUPLOADED\tBY\tLOCKED UNTIL\tDESCRIPTION")
			for _, si := range list {
				by := "hand"
				if si.Schedule != "" {
					by = si.Schedule
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", si.ID, si.VolumeName, si.Created.Format(time.RFC3339),
					config.ByteSize(si.Size).Human(), config.ByteSize(si.UploadedBytes).Human(), by, lockedUntil(si.Lock), si.Description)
			}
			return tw.Flush()
		},
	}
	listCmd.Flags().StringVar(&vol, "volume", "", "only this volume's snapshots")
	listCmd.Flags().BoolVar(&bucketOnly, "bucket-only", false, "read the snapshot manifests from the object store, without a running gatewayd")
	listCmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	repo.register(listCmd)

	infoCmd := &cobra.Command{
		Use:   "info ID",
		Short: "Show a snapshot",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var si volume.SnapshotInfo
			if err := call(cmd, g, http.MethodGet, "/v1/snapshots/"+url.PathEscape(args[0]), nil, &si); err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), si)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "id            %s\nvolume        %s (%s, %s)\ncreated       %s\nsize          %s\nchunk size    %s\n",
				si.ID, si.VolumeName, si.VolumeID, si.VolumeKind, si.Created.Format(time.RFC3339), config.ByteSize(si.Size).Human(), config.ByteSize(si.ChunkSize).Human())
			fmt.Fprintf(w, "chunks        %d (the rest are holes)\nuploaded      %s in %d new chunks\nmap pages     %d\n",
				si.Chunks, config.ByteSize(si.UploadedBytes).Human(), si.UploadedChunks, len(si.Pages))
			if si.Parent != "" {
				fmt.Fprintf(w, "parent        %s\n", si.Parent)
			}
			if si.Schedule != "" {
				fmt.Fprintf(w, "taken by      schedule (%s)\n", si.Schedule)
			}
			if si.Description != "" {
				fmt.Fprintf(w, "description   %s\n", si.Description)
			}
			if si.Lock != nil {
				fmt.Fprintf(w, "locked until  %s (%s)%s\n", si.Lock.Until.Format(time.RFC3339), strings.ToLower(string(si.Lock.Mode)), retainedNote(si.Retained))
			}
			return nil
		},
	}
	infoCmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")

	deleteCmd := &cobra.Command{
		Use:   "delete ID",
		Short: "Delete a snapshot (garbage collection frees the data no other snapshot or volume uses)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := call(cmd, g, http.MethodDelete, "/v1/snapshots/"+url.PathEscape(args[0]), nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted snapshot %s\n", args[0])
			return nil
		},
	}

	var parallel int
	verifyCmd := &cobra.Command{
		Use:   "verify ID",
		Short: "Fetch and authenticate every chunk and map page of a snapshot; report what is missing or corrupt",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var rep snapshots.VerifyReport
			path := fmt.Sprintf("/v1/snapshots/%s/verify?parallel=%d", url.PathEscape(args[0]), parallel)
			if err := call(cmd, g, http.MethodPost, path, nil, &rep); err != nil {
				return err
			}
			return printVerify(cmd.OutOrStdout(), args[0], rep, output)
		},
	}
	verifyCmd.Flags().IntVar(&parallel, "parallel", 8, "chunks fetched at once")
	verifyCmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")

	cmd.AddCommand(createCmd, listCmd, infoCmd, deleteCmd, verifyCmd, newScheduleCmd(g), newSchedulesCmd(g))
	return cmd
}

func printVerify(w io.Writer, id string, rep snapshots.VerifyReport, output string) error {
	if output == "json" {
		if err := writeJSON(w, rep); err != nil {
			return err
		}
	} else {
		for _, p := range rep.Problems {
			where := ""
			if p.Chunk != nil {
				where = fmt.Sprintf(" (chunk %d)", *p.Chunk)
			}
			fmt.Fprintf(w, "%s %s%s: %s\n", strings.ToUpper(p.What), p.Object, where, p.Err)
		}
		fmt.Fprintf(w, "snapshot %s: %d map pages, %d chunks, %s checked, %d problems\n",
			id, rep.Pages, rep.Chunks, config.ByteSize(rep.BytesChecked).Human(), len(rep.Problems))
	}
	if !rep.OK() {
		return fmt.Errorf("snapshot %s failed verification: %d objects missing or corrupt", id, len(rep.Problems))
	}
	return nil
}

func newScheduleCmd(g *globals) *cobra.Command {
	var every time.Duration
	var keep int
	var off bool
	var lock lockPeriod
	cmd := &cobra.Command{
		Use:   "schedule VOLUME --every 1h --keep 24 [--lock 7d]",
		Short: "Snapshot a volume on a schedule, keeping the newest --keep of the scheduled snapshots (--off stops it)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := "/v1/volumes/" + url.PathEscape(args[0]) + "/schedule"
			if off {
				if err := call(cmd, g, http.MethodDelete, path, nil, nil); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "volume %s: no schedule (its snapshots stay)\n", args[0])
				return nil
			}
			if every == 0 || keep == 0 {
				return errors.New("give --every and --keep, or --off")
			}
			var s volume.Schedule
			req := snapshotapi.ScheduleRequest{Every: volume.Duration(every), Keep: keep, Lock: volume.Duration(lock)}
			if err := call(cmd, g, http.MethodPut, path, req, &s); err != nil {
				return err
			}
			locked := ""
			if s.Lock > 0 {
				lp := lockPeriod(s.Lock)
				locked = fmt.Sprintf(", each locked for %s", lp.String())
			}
			fmt.Fprintf(cmd.OutOrStdout(), "volume %s: a snapshot every %s, keeping %d%s\n", s.VolumeName, time.Duration(s.Every), s.Keep, locked)
			return nil
		},
	}
	cmd.Flags().DurationVar(&every, "every", 0, "interval, e.g. 1h (at least 1m)")
	cmd.Flags().IntVar(&keep, "keep", 0, "how many scheduled snapshots to keep")
	cmd.Flags().BoolVar(&off, "off", false, "remove the volume's schedule")
	cmd.Flags().Var(&lock, "lock", "lock each snapshot for this long with Object Lock, e.g. 7d (pruning leaves it until then)")
	return cmd
}

// lockPeriod is a lock period flag: a Go duration (12h) or whole days (30d).
type lockPeriod time.Duration

func (l *lockPeriod) String() string {
	d := time.Duration(*l)
	if d > 0 && d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}

func (l *lockPeriod) Set(s string) error {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseUint(days, 10, 32)
		if err != nil || n == 0 {
			return fmt.Errorf("%q: a number of days (30d) or a duration (12h)", s)
		}
		if n > uint64(snapshots.MaxLockPeriod/(24*time.Hour)) {
			// Checked before the multiplication, which would overflow.
			return fmt.Errorf("%q: a lock of at most %d days (100 years)", s, snapshots.MaxLockPeriod/(24*time.Hour))
		}
		*l = lockPeriod(time.Duration(n) * 24 * time.Hour)
	} else {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return fmt.Errorf("%q: a number of days (30d) or a duration (12h)", s)
		}
		*l = lockPeriod(d)
	}
	return snapshots.CheckLockPeriod(time.Duration(*l))
}

func (l *lockPeriod) Type() string { return "period" }

// lockedUntil is a listing's LOCKED UNTIL column: the date and the mode's
// initial (G, C), or "-".
func lockedUntil(r *objstore.Retention) string {
	if r == nil {
		return "-"
	}
	return r.Until.Format(time.RFC3339) + " " + string(r.Mode)[:1]
}

// retainedNote says what locking a snapshot took.
func retainedNote(rs *snapshots.RetainStats) string {
	if rs == nil {
		return ""
	}
	return fmt.Sprintf(": %d objects, %d retention requests (%d already retained long enough)", rs.Objects, rs.Retained, rs.Skipped)
}

func newSchedulesCmd(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "schedules",
		Short: "List snapshot schedules",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var list []volume.Schedule
			if err := call(cmd, g, http.MethodGet, "/v1/schedules", nil, &list); err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), list)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "VOLUME\tEVERY\tKEEP\tLAST RUN\tNEXT RUN\tLAST ERROR")
			for _, s := range list {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", s.VolumeName, time.Duration(s.Every), s.Keep, ago(s.LastRun),
					s.NextRun.Format(time.RFC3339), s.LastError)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	return cmd
}

func newGCCmd(g *globals) *cobra.Command {
	var req snapshotapi.GCRequest
	var grace time.Duration
	var output string
	cmd := &cobra.Command{
		Use:   "gc",
		Short: "Delete chunks and map pages no snapshot or volume references (older than the grace period)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cmd.Flags().Changed("grace") {
				d := volume.Duration(grace)
				req.Grace = &d
			}
			var st snapshots.GCStats
			if err := call(cmd, g, http.MethodPost, "/v1/gc", req, &st); err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), st)
			}
			verb := "deleted"
			if st.DryRun {
				verb = "would delete"
			}
			locked := ""
			if st.KeptLocked > 0 {
				locked = fmt.Sprintf(", %d unreferenced but retained (Object Lock)", st.KeptLocked)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d manifests, %d objects: %d live, %d unreferenced but young%s; %s %d (%s)\n",
				st.Manifests, st.Candidates, st.Live, st.KeptYoung, locked, verb, st.Deleted, config.ByteSize(st.BytesDeleted).Human())
			return nil
		},
	}
	cmd.Flags().BoolVar(&req.DryRun, "dry-run", false, "count what would be deleted, delete nothing")
	cmd.Flags().DurationVar(&grace, "grace", 0, "keep unreferenced objects younger than this (default snapshots.gc_grace)")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	return cmd
}

// repoFlags are what the commands that read the object store without a
// daemon need beyond the data directory's config: where the bucket is and
// where the key comes from.
type repoFlags struct {
	o             overrides
	keyFile       string
	passphraseEnv string
}

func (r *repoFlags) register(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&r.o.storeURL, "store", "", "object store: file://DIR or s3://BUCKET[/PREFIX] (default: the data directory's config)")
	fs.StringVar(&r.o.s3Endpoint, "s3-endpoint", "", "S3 endpoint URL (empty: AWS)")
	fs.StringVar(&r.o.s3Region, "s3-region", "", "S3 region")
	fs.BoolVar(&r.o.s3PathStyle, "s3-path-style", false, "path-style S3 addressing")
	fs.StringVar(&r.o.s3AccessKey, "s3-access-key", "", "S3 access key id (empty: default AWS credential chain)")
	fs.StringVar(&r.o.s3SecretKey, "s3-secret-key", "", "S3 secret access key")
	fs.StringVar(&r.keyFile, "key-file", "", "master key file (default: the data directory's)")
	fs.StringVar(&r.passphraseEnv, "passphrase-env", "", "environment variable holding the passphrase the master key derives from")
}

// open opens the object store and the keys the way serve does, without
// metadata or a daemon.
func (r *repoFlags) open(cmd *cobra.Command, g *globals) (objstore.Store, *snapshots.Codec, error) {
	cfg, err := loadConfig(cmd, g, nil, false)
	if err != nil {
		return nil, nil, err
	}
	if err := r.o.apply(cmd, cfg); err != nil {
		return nil, nil, err
	}
	if r.keyFile != "" {
		abs, err := filepath.Abs(r.keyFile)
		if err != nil {
			return nil, nil, err
		}
		cfg.Keys.MasterKeyFile, cfg.Keys.PassphraseEnv = abs, ""
	}
	if r.passphraseEnv != "" {
		cfg.Keys.PassphraseEnv = r.passphraseEnv
	}
	logger := gateway.NewLogger(cmd.ErrOrStderr(), "warn")
	store, err := gateway.OpenStore(cmd.Context(), cfg, logger)
	if err != nil {
		return nil, nil, err
	}
	master, err := gateway.LoadMasterKey(cmd.Context(), cfg, store)
	if err != nil {
		return nil, nil, err
	}
	keyring, err := keys.OpenBucket(cmd.Context(), store, master)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", store, err)
	}
	dk := keyring.Current()
	codec, err := snapshots.NewCodec(dk.Encryption, dk.ChunkID, snapshots.CodecOptions{})
	return store, codec, err
}

func listFromBucket(cmd *cobra.Command, g *globals, repo *repoFlags, vol, output string) error {
	store, codec, err := repo.open(cmd, g)
	if err != nil {
		return err
	}
	good, bad, err := snapshots.ListSnapshots(cmd.Context(), store, codec)
	if err != nil {
		return err
	}
	var rows []snapshots.Listed
	for _, l := range good {
		if vol == "" || l.Manifest.VolumeName == vol || l.Manifest.VolumeID == vol {
			rows = append(rows, l)
		}
	}
	if output == "json" {
		type row struct {
			ID string `json:"id"`
			snapshots.Manifest
		}
		out := []row{}
		for _, l := range rows {
			out = append(out, row{l.ID, l.Manifest})
		}
		if err := writeJSON(cmd.OutOrStdout(), out); err != nil {
			return err
		}
	} else {
		tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tVOLUME\tCREATED\tSIZE\tLOCKED UNTIL\tDESCRIPTION")
		for _, l := range rows {
			m := l.Manifest
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", l.ID, m.VolumeName, m.Created.Format(time.RFC3339), config.ByteSize(m.Size).Human(),
				lockedUntil(m.Lock), m.Description)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	for _, l := range bad {
		fmt.Fprintf(cmd.ErrOrStderr(), "gatewayd: snapshot %s: %v\n", l.ID, l.Err)
	}
	if len(bad) > 0 {
		return fmt.Errorf("%d snapshot manifests could not be read", len(bad))
	}
	return nil
}

func newRestoreCmd(g *globals) *cobra.Command {
	var repo repoFlags
	var to string
	var parallel int
	var quiet, force bool
	cmd := &cobra.Command{
		Use:   "restore SNAPSHOT --to PATH [--force]",
		Short: "Disaster recovery: write a snapshot onto a local disk or image file from the bucket alone (no daemon)",
		Long: "Reads the snapshot from the object store with the master key (or passphrase) and writes it to PATH:\n" +
			"a block device, an existing file or a new file (sparse: holes are skipped).\n" +
			"A PATH a gateway on this host serves as a stored volume's disk is refused, and so is one\n" +
			"that holds data (its first or last MiB is not all zeroes: a partition table, a file system)\n" +
			"unless --force is given.\n" +
			"Every chunk is authenticated before it is written. An interrupted restore resumes when run again\n" +
			"(progress is kept in PATH" + snapshots.RestoreStateSuffix + ").",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if to == "" {
				return errors.New("--to: where to write the snapshot")
			}
			store, codec, err := repo.open(cmd, g)
			if err != nil {
				return err
			}
			bar := &progressBar{w: cmd.ErrOrStderr(), quiet: quiet}
			prog, err := snapshots.RestoreToFile(cmd.Context(), store, codec, args[0], to, snapshots.RestoreOptions{
				Parallel: parallel, Progress: bar.restore, Force: force,
			})
			bar.done()
			if err != nil {
				return err
			}
			rate := float64(prog.DoneBytes-resumedBytes(prog)) / max(prog.Elapsed.Seconds(), 0.001)
			fmt.Fprintf(cmd.OutOrStdout(), "restored snapshot %s to %s: %s in %d chunks (%d holes skipped), %s/s, %s\n",
				args[0], to, config.ByteSize(prog.DoneBytes).Human(), prog.DoneChunks, prog.Holes, config.ByteSize(int64(rate)).Human(), prog.Elapsed.Round(time.Millisecond))
			return nil
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "block device or image file to write")
	cmd.Flags().IntVar(&parallel, "parallel", 8, "chunks downloaded at once")
	cmd.Flags().BoolVar(&quiet, "quiet", false, "no progress bar")
	cmd.Flags().BoolVar(&force, "force", false, "write over a target that already holds data")
	repo.register(cmd)
	return cmd
}

func resumedBytes(p snapshots.RestoreProgress) int64 {
	if p.TotalChunks == 0 {
		return 0
	}
	return p.TotalBytes * int64(p.Resumed) / int64(p.TotalChunks)
}

// call sends one admin API request and decodes the answer into out.
func call(cmd *cobra.Command, g *globals, method, path string, body, out any) error {
	c, err := adminClient(cmd, g)
	if err != nil {
		return err
	}
	return c.Do(cmd.Context(), method, path, body, out)
}
