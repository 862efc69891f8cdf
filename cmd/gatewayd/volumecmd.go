package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatewayd/gatewayd/api/volumeapi"
	"github.com/gatewayd/gatewayd/config"
	"github.com/gatewayd/gatewayd/volume"
)

func newVolumeCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "volume", Short: "Manage block volumes (cached or stored)"}

	var create volumeapi.CreateVolumeRequest
	var size, chunk string
	var wait bool
	var access volumeapi.ISCSIAccess
	createCmd := &cobra.Command{
		Use:   "create",
		Short: "Create a volume",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if size == "" && create.FromSnapshot == "" {
				return errors.New("--size: how large the volume is, e.g. 100G")
			}
			if size != "" {
				s, err := volumeSize(cmd, size)
				if err != nil {
					return err
				}
				create.Size = s
			}
			if access.CHAPUser != "" || access.CHAPSecret != "" || access.MutualUser != "" || access.MutualSecret != "" || len(access.Initiators) > 0 {
				create.ISCSI = &access
			}
			if create.Disk != "" {
				// The gateway resolves the path, not this shell's directory.
				abs, err := filepath.Abs(create.Disk)
				if err != nil {
					return fmt.Errorf("--disk: %w", err)
				}
				create.Disk = abs
			}
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
			var st volumeapi.VolumeStatus
			if err := c.Do(cmd.Context(), http.MethodPost, "/v1/volumes", create, &st); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "created %s volume %s (%s, id %s)\n", st.Kind, st.Name, config.ByteSize(st.Size).Human(), st.ID)
			if st.FromSnapshot != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "restored from snapshot %s: usable now, data arrives on demand\n", st.FromSnapshot)
			}
			if wait {
				return waitHydrated(cmd, c, st.Name, false)
			}
			return nil
		},
	}
	createCmd.Flags().StringVar(&create.Name, "name", "", "volume name (letters, digits, '-', '_', '.')")
	createCmd.Flags().StringVar(&size, "size", "", "volume size, e.g. 100G (with --from-snapshot: default the snapshot's)")
	createCmd.Flags().StringVar(&create.FromSnapshot, "from-snapshot", "", "restore the new volume from this snapshot (usable at once; data is fetched on demand)")
	createCmd.Flags().StringVar((*string)(&create.Kind), "kind", "cached", "cached (primary data in S3) or stored (primary data on a local disk)")
	createCmd.Flags().StringVar(&create.Disk, "disk", "", "stored volumes: existing file or block device, which no other volume may use (default: a new sparse file in the data dir)")
	createCmd.Flags().StringVar(&chunk, "chunk-size", "", "chunk size, a power of two from 64K to 4M (default 1M)")
	createCmd.Flags().BoolVar(&create.WriteCache, "write-cache", false, writeCacheHelp)
	createCmd.Flags().BoolVar(&wait, "wait", false, "with --from-snapshot and --kind stored: wait, with progress, until all the data is on the local disk")
	accessFlags(createCmd, &access)
	_ = createCmd.MarkFlagRequired("name")

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
			var vols []volumeapi.VolumeStatus
			if err := c.Do(cmd.Context(), http.MethodGet, "/v1/volumes", nil, &vols); err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), vols)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tKIND\tSIZE\tCHUNK\tNOT UPLOADED\tLAST UPLOAD")
			for _, v := range vols {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", v.Name, v.Kind, config.ByteSize(v.Size).Human(), config.ByteSize(v.ChunkSize).Human(),
					config.ByteSize(v.Stats.DirtyBytes).Human(), ago(v.Stats.LastUpload))
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
			var v volumeapi.VolumeStatus
			if err := c.Do(cmd.Context(), http.MethodGet, "/v1/volumes/"+url.PathEscape(args[0]), nil, &v); err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), v)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "name          %s\nid            %s\nkind          %s\nsize          %s\nchunk size    %s\n",
				v.Name, v.ID, v.Kind, config.ByteSize(v.Size).Human(), config.ByteSize(v.ChunkSize).Human())
			if v.Kind == volume.Stored {
				fmt.Fprintf(w, "disk          %s\n", v.Disk)
			}
			if v.FromSnapshot != "" {
				fmt.Fprintf(w, "from snapshot %s\n", v.FromSnapshot)
			}
			fmt.Fprintf(w, "write cache   %s\n", writeCacheState(v.WriteCache))
			if h := v.Stats.Hydration; h != nil {
				state := "complete"
				if !h.Complete {
					state = "in progress"
				}
				fmt.Fprintf(w, "hydration     %s: %d of %d chunks on the local disk (%.1f%%)\n", state, h.DoneChunks, h.TotalChunks,
					100*float64(h.DoneChunks)/float64(max(h.TotalChunks, 1)))
			}
			fmt.Fprintf(w, "cache hits    %.1f%% (gateway)\nupload buffer %s used (gateway)\n", v.CacheHitPercent, config.ByteSize(v.UploadBufferUsed).Human())
			fmt.Fprintf(w, "not uploaded  %s in %d chunks waiting\nlast upload   %s\nrecovery pt   %s\nupload errors %d\ncreated       %s\n",
				config.ByteSize(v.Stats.DirtyBytes).Human(), v.Stats.PendingChunks, ago(v.Stats.LastUpload), ago(v.Stats.LastRecoveryPoint),
				v.Stats.UploadErrors, v.Created.Format(time.RFC3339))
			return nil
		},
	}
	infoCmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")

	var force bool
	deleteCmd := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a volume (its data in S3 is released for garbage collection)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := adminClient(cmd, g)
			if err != nil {
				return err
			}
			path := "/v1/volumes/" + url.PathEscape(args[0])
			if force {
				path += "?force=1"
			}
			if err := c.Do(cmd.Context(), http.MethodDelete, path, nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted volume %s\n", args[0])
			return nil
		},
	}

	deleteCmd.Flags().BoolVar(&force, "force", false, "delete even while iSCSI initiators are logged in (their sessions end)")

	var growSize string
	growCmd := &cobra.Command{
		Use:   "grow NAME --size SIZE",
		Short: "Make a volume larger",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := volumeSize(cmd, growSize)
			if err != nil {
				return err
			}
			c, err := adminClient(cmd, g)
			if err != nil {
				return err
			}
			var v volumeapi.VolumeStatus
			if err := c.Do(cmd.Context(), http.MethodPost, "/v1/volumes/"+url.PathEscape(args[0])+"/grow", volumeapi.GrowVolumeRequest{Size: s}, &v); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "volume %s is now %s\n", v.Name, config.ByteSize(v.Size).Human())
			return nil
		},
	}
	growCmd.Flags().StringVar(&growSize, "size", "", "new size, e.g. 200G")
	_ = growCmd.MarkFlagRequired("size")

	var writeCache bool
	setCmd := &cobra.Command{
		Use:   "set NAME --write-cache[=false]",
		Short: "Change a volume's settings: its write cache",
		Long: "Changes the settings given and leaves the others. --write-cache turns the volume's write cache\n" +
			"on: initiators see a volatile write cache (WCE=1) and a write is durable at the next SYNCHRONIZE\n" +
			"CACHE or when it has FUA. --write-cache=false turns it off: writes acknowledged before are made\n" +
			"durable first, and every write is durable when acknowledged. Initiators logged in stay logged in\n" +
			"and are told the mode parameters changed.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("write-cache") {
				return fmt.Errorf("no setting given: --write-cache to turn the write cache of %s on, --write-cache=false to turn it off", args[0])
			}
			c, err := adminClient(cmd, g)
			if err != nil {
				return err
			}
			var v volumeapi.VolumeStatus
			if err := c.Do(cmd.Context(), http.MethodPatch, "/v1/volumes/"+url.PathEscape(args[0]), volumeapi.UpdateVolumeRequest{WriteCache: &writeCache}, &v); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "volume %s: write cache %s\n", v.Name, writeCacheState(v.WriteCache))
			return nil
		},
	}
	setCmd.Flags().BoolVar(&writeCache, "write-cache", false, writeCacheHelp)

	cmd.AddCommand(createCmd, listCmd, infoCmd, deleteCmd, growCmd, setCmd, newAttachInfoCmd(g), newAccessCmd(g), newVolumeWaitCmd(g))
	return cmd
}

const writeCacheHelp = "a volatile write cache (write-back): a write is durable at the next SYNCHRONIZE CACHE or when it has FUA (default off: every write durable when acknowledged)"

// writeCacheState says what a volume's write cache setting means.
func writeCacheState(on bool) string {
	if on {
		return "on (write-back: a write is durable at the next SYNCHRONIZE CACHE, or at once with FUA)"
	}
	return "off (write-through: every write is durable when acknowledged)"
}

// volumeAlign is what a volume's size is a multiple of: its 4 KiB blocks.
const volumeAlign = 4096

// volumeSize parses --size and rounds it up to whole blocks, saying so
// on stderr when it does.
func volumeSize(cmd *cobra.Command, in string) (int64, error) {
	s, err := config.ParseByteSize(in)
	if err != nil {
		return 0, fmt.Errorf("--size: %w", err)
	}
	if s <= 0 {
		return 0, fmt.Errorf("--size: %q: a volume needs a size above 0", in)
	}
	if r := s.RoundUp(volumeAlign); r != s {
		fmt.Fprintf(cmd.ErrOrStderr(), "size %s rounded up to %d bytes (%s), a whole number of the volume's %s blocks\n", in, int64(r), r.Human(), config.ByteSize(volumeAlign).Human())
		s = r
	}
	return int64(s), nil
}

func accessFlags(cmd *cobra.Command, a *volumeapi.ISCSIAccess) {
	cmd.Flags().StringVar(&a.CHAPUser, "chap-user", "", "iSCSI: CHAP user name initiators must log in with")
	cmd.Flags().StringVar(&a.CHAPSecret, "chap-secret", "", "iSCSI: CHAP secret, 12 to 255 bytes")
	cmd.Flags().StringVar(&a.MutualUser, "mutual-user", "", "iSCSI: name the target answers mutual CHAP with")
	cmd.Flags().StringVar(&a.MutualSecret, "mutual-secret", "", "iSCSI: secret the target answers mutual CHAP with (not the CHAP secret)")
	cmd.Flags().StringArrayVar(&a.Initiators, "initiator", nil, "iSCSI: an initiator name allowed to log in (repeat; default: any)")
}

func newAccessCmd(g *globals) *cobra.Command {
	var a volumeapi.ISCSIAccess
	var clear bool
	cmd := &cobra.Command{
		Use:   "access NAME {--chap-user U --chap-secret S | --initiator IQN ... | --clear}",
		Short: "Set a volume's iSCSI access control: CHAP and allowed initiators (--clear: open to any initiator without CHAP)",
		Long: "Replaces the volume's iSCSI access settings as a whole. Logged-in sessions of the volume end\n" +
			"and initiators log in again under the new settings. --clear removes CHAP and the initiator\n" +
			"list, so that any initiator may log in; without flags nothing is changed and the command fails.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			given := a.CHAPUser != "" || a.CHAPSecret != "" || a.MutualUser != "" || a.MutualSecret != "" || len(a.Initiators) > 0
			switch {
			case clear && given:
				return errors.New("--clear removes all access control: give it alone, or the settings without it")
			case !clear && !given:
				return fmt.Errorf("no access settings given: set --chap-user and --chap-secret and/or --initiator, or --clear to remove CHAP and the initiator list of %s (any initiator may then log in)", args[0])
			}
			c, err := adminClient(cmd, g)
			if err != nil {
				return err
			}
			var ai volumeapi.AttachInfo
			if err := c.Do(cmd.Context(), http.MethodPut, "/v1/volumes/"+url.PathEscape(args[0])+"/iscsi", a, &ai); err != nil {
				return err
			}
			printAttachInfo(cmd.OutOrStdout(), ai)
			return nil
		},
	}
	accessFlags(cmd, &a)
	cmd.Flags().BoolVar(&clear, "clear", false, "remove CHAP and the initiator list: any initiator may log in without authentication")
	return cmd
}

func newAttachInfoCmd(g *globals) *cobra.Command {
	var output string
	var showSecret bool
	cmd := &cobra.Command{
		Use:   "attach-info NAME",
		Short: "Show how an initiator reaches a volume: target name, portal, iscsiadm commands, iscsi:// URL",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := adminClient(cmd, g)
			if err != nil {
				return err
			}
			path := "/v1/volumes/" + url.PathEscape(args[0]) + "/attach-info"
			if showSecret {
				path += "?secrets=1"
			}
			var ai volumeapi.AttachInfo
			if err := c.Do(cmd.Context(), http.MethodGet, path, nil, &ai); err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), ai)
			}
			printAttachInfo(cmd.OutOrStdout(), ai)
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	cmd.Flags().BoolVar(&showSecret, "show-secret", false, "print the CHAP secrets (they are hidden by default)")
	return cmd
}

func printAttachInfo(w io.Writer, ai volumeapi.AttachInfo) {
	fmt.Fprintf(w, "volume   %s\ntarget   %s\nportal   %s\nlun      %d\n", ai.Volume, ai.Target, ai.Portal, ai.LUN)
	secret := ai.CHAPSecret
	if ai.CHAPUser != "" {
		if secret == "" {
			secret = "SECRET"
			fmt.Fprintf(w, "chap     user %s (secret hidden: --show-secret prints it)\n", ai.CHAPUser)
		} else {
			fmt.Fprintf(w, "chap     user %s secret %s\n", ai.CHAPUser, secret)
		}
		if ai.MutualUser != "" {
			fmt.Fprintf(w, "mutual   user %s\n", ai.MutualUser)
		}
	} else {
		fmt.Fprintf(w, "chap     none: any initiator may log in without authentication\n")
	}
	if len(ai.Initiators) > 0 {
		fmt.Fprintf(w, "allowed  %s\n", strings.Join(ai.Initiators, ", "))
	}
	node := fmt.Sprintf("iscsiadm -m node -T %s -p %s", ai.Target, ai.Portal)
	fmt.Fprintf(w, "\nLinux (open-iscsi):\n  iscsiadm -m discovery -t sendtargets -p %s\n", ai.Portal)
	if ai.CHAPUser != "" {
		fmt.Fprintf(w, "  %s --op update -n node.session.auth.authmethod -v CHAP\n", node)
		fmt.Fprintf(w, "  %s --op update -n node.session.auth.username -v %s\n", node, ai.CHAPUser)
		fmt.Fprintf(w, "  %s --op update -n node.session.auth.password -v '%s'\n", node, secret)
		if ai.MutualUser != "" {
			mutual := ai.MutualSecret
			if mutual == "" {
				mutual = "MUTUAL-SECRET"
			}
			fmt.Fprintf(w, "  %s --op update -n node.session.auth.username_in -v %s\n", node, ai.MutualUser)
			fmt.Fprintf(w, "  %s --op update -n node.session.auth.password_in -v '%s'\n", node, mutual)
		}
	}
	fmt.Fprintf(w, "  %s --login\n\nlibiscsi / qemu URL:\n  %s\n", node, ai.URL)
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
