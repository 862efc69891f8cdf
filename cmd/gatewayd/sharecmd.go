package main

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/gatewayd/gatewayd/api/shareapi"
	"github.com/gatewayd/gatewayd/frontends/smb"
)

func newShareCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "share", Short: "Manage NFS and SMB file shares (each file a plain S3 object)"}
	var output string

	var c shareapi.ShareStatus
	var clients, fileMode, dirMode, protocols string
	var validUsers, invalidUsers, adminUsers string
	var smbOpts smb.ShareOptions
	createCmd := &cobra.Command{
		Use:   "create --name NAME",
		Short: "Create a file share",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if clients != "" {
				for _, cl := range strings.Split(clients, ",") {
					c.Clients = append(c.Clients, strings.TrimSpace(cl))
				}
			}
			for _, p := range strings.Split(protocols, ",") {
				if p = strings.TrimSpace(p); p != "" {
					c.Protocols = append(c.Protocols, p)
				}
			}
			smbOpts.ValidUsers, smbOpts.InvalidUsers, smbOpts.AdminUsers = splitUsers(validUsers), splitUsers(invalidUsers), splitUsers(adminUsers)
			if err := smb.SetShareOptions(&c.Config, smbOpts); err != nil {
				return err
			}
			for _, m := range []struct {
				flag string
				dst  *uint32
			}{{fileMode, &c.FileMode}, {dirMode, &c.DirMode}} {
				if m.flag != "" {
					v, err := strconv.ParseUint(m.flag, 8, 32)
					if err != nil {
						return fmt.Errorf("mode %q: want octal, e.g. 0644", m.flag)
					}
					*m.dst = uint32(v)
				}
			}
			var st shareapi.ShareStatus
			if err := call(cmd, g, http.MethodPost, "/v1/shares", c.Config, &st); err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), st)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "created share %s (objects under %q)\n", st.Name, st.Prefix)
			if st.Mount != nil {
				fmt.Fprintf(cmd.OutOrStdout(), "mount it with:\n  %s\n", st.Mount.Command)
			}
			if st.SMB != nil {
				fmt.Fprintf(cmd.OutOrStdout(), "over SMB: %s (port %d)\n  %s\n", st.SMB.UNC, st.SMB.Port, st.SMB.Smbclient)
			}
			return nil
		},
	}
	f := createCmd.Flags()
	f.StringVar(&c.Name, "name", "", "share name (the NFS export is /NAME)")
	f.StringVar(&c.Prefix, "prefix", "", "key prefix of the share's objects, ending in / (default NAME/)")
	f.StringVar(&clients, "clients", "", "comma-separated CIDRs allowed to mount (default: any)")
	f.StringVar(&c.Squash, "squash", "none", "owner mapping: none, root (uid 0 becomes the anonymous uid) or all")
	f.Uint32Var(&c.AnonUID, "anon-uid", 65534, "the anonymous uid for squash")
	f.Uint32Var(&c.AnonGID, "anon-gid", 65534, "the anonymous gid for squash")
	f.BoolVar(&c.ReadOnly, "read-only", false, "refuse every change")
	f.StringVar(&fileMode, "file-mode", "", "mode of objects without metadata (default 0644)")
	f.StringVar(&dirMode, "dir-mode", "", "mode of directories without metadata (default 0755)")
	f.Uint32Var(&c.UID, "uid", 0, "owner of objects without metadata, and of new files")
	f.Uint32Var(&c.GID, "gid", 0, "group of objects without metadata, and of new files")
	f.StringVar(&protocols, "protocols", "nfs", "comma-separated frontends serving the share: nfs, smb")
	f.BoolVar(&smbOpts.Guest, "smb-guest", false, "let SMB clients in without a user (guest)")
	f.BoolVar(&smbOpts.Encrypt, "smb-encrypt", false, "require SMB3 encryption")
	f.BoolVar(&smbOpts.KernelOplocks, "smb-kernel-oplocks", false, kernelOplocksUsage)
	smbAccessFlags(f, &validUsers, &invalidUsers, &adminUsers, &smbOpts.AccessBasedEnum)
	f.BoolVar(&c.Audit, "audit", false, auditUsage)
	f.StringVarP(&output, "output", "o", "text", "text or json")
	_ = createCmd.MarkFlagRequired("name")

	listCmd := &cobra.Command{
		Use:   "list",
		Short: "List file shares",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var list []shareapi.ShareStatus
			if err := call(cmd, g, http.MethodGet, "/v1/shares", nil, &list); err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), list)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tPREFIX\tCLIENTS\tSQUASH\tREAD-ONLY\tPROTOCOLS\tAUDIT")
			for _, s := range list {
				cl := strings.Join(s.Clients, ",")
				if cl == "" {
					cl = "any"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%v\t%s\t%v\n", s.Name, s.Prefix, cl, s.Squash, s.ReadOnly, strings.Join(s.Protocols, ","), s.Audit)
			}
			return tw.Flush()
		},
	}
	listCmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")

	infoCmd := &cobra.Command{
		Use:   "info NAME",
		Short: "Show a share and how to mount it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var s shareapi.ShareStatus
			if err := call(cmd, g, http.MethodGet, "/v1/shares/"+url.PathEscape(args[0]), nil, &s); err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), s)
			}
			w := cmd.OutOrStdout()
			cl := strings.Join(s.Clients, ", ")
			if cl == "" {
				cl = "any"
			}
			fmt.Fprintf(w, "name        %s\nprefix      %s\nclients     %s\nsquash      %s (anonymous %d:%d)\nread-only   %v\ndefaults    files %04o, directories %04o, owner %d:%d\naudit       %v\n",
				s.Name, s.Prefix, cl, s.Squash, s.AnonUID, s.AnonGID, s.ReadOnly, s.FileMode, s.DirMode, s.UID, s.GID, s.Audit)
			if s.Mount != nil {
				fmt.Fprintf(w, "export      %s:%s (NFSv3 and MOUNT on port %d)\nmount       %s\nlibnfs      %s\n",
					s.Mount.Server, s.Mount.Export, s.Mount.Port, s.Mount.Command, s.Mount.URL)
			}
			if s.SMB != nil {
				o, err := smb.ReadShareOptions(s.Config)
				if err != nil {
					return err
				}
				fmt.Fprintf(w, "smb         %s on port %d (guest %v, encryption required %v)\nsmbclient   %s\ncifs        %s\n",
					s.SMB.UNC, s.SMB.Port, o.Guest, o.Encrypt, s.SMB.Smbclient, s.SMB.Command)
				list := func(l []string) string {
					if len(l) == 0 {
						return "-"
					}
					return strings.Join(l, ", ")
				}
				fmt.Fprintf(w, "smb users   valid %s; invalid %s; admin %s; access-based enumeration %v\n",
					list(o.ValidUsers), list(o.InvalidUsers), list(o.AdminUsers), o.AccessBasedEnum)
			}
			return nil
		},
	}
	infoCmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")

	deleteCmd := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a share from the gateway (pending writes are uploaded first; the objects stay in the bucket)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := call(cmd, g, http.MethodDelete, "/v1/shares/"+url.PathEscape(args[0]), nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted share %s\n", args[0])
			return nil
		},
	}

	var refresh shareapi.RefreshRequest
	refreshCmd := &cobra.Command{
		Use:   "refresh NAME [--path P] [--recursive]",
		Short: "Show objects added, changed or removed directly in S3 now, not after the attribute TTL",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := call(cmd, g, http.MethodPost, "/v1/shares/"+url.PathEscape(args[0])+"/refresh", refresh, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "refreshed share %s at /%s\n", args[0], strings.Trim(refresh.Path, "/"))
			return nil
		},
	}
	refreshCmd.Flags().StringVar(&refresh.Path, "path", "", "directory to refresh (default the root)")
	refreshCmd.Flags().BoolVar(&refresh.Recursive, "recursive", false, "refresh everything below the path too")

	var wait shareapi.WaitRequest
	waitCmd := &cobra.Command{
		Use:   "wait NAME [--path P] [--flush]",
		Short: "Return once everything written to the share (or under P) before the call is in S3",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var res shareapi.WaitResult
			if err := call(cmd, g, http.MethodPost, "/v1/shares/"+url.PathEscape(args[0])+"/wait", wait, &res); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "share %s at %s: in S3 (%d changes waited for)\n", res.Share, res.Path, res.WaitedFor)
			return nil
		},
	}
	waitCmd.Flags().StringVar(&wait.Path, "path", "", "file or directory to wait for (default the whole share)")
	waitCmd.Flags().BoolVar(&wait.Flush, "flush", false, "upload now, not after the settle time")

	cmd.AddCommand(createCmd, listCmd, infoCmd, deleteCmd, refreshCmd, waitCmd, newShareUpdateCmd(g))
	return cmd
}

const auditUsage = "record every NFS and SMB operation that opens or changes a file in the audit log"

// smbAccessFlags declares the SMB access options of share create and update.
func smbAccessFlags(f *pflag.FlagSet, valid, invalid, admin *string, abe *bool) {
	f.StringVar(valid, "smb-valid-users", "", `comma-separated users and groups ('@' first) allowed over SMB, local or DOMAIN\name (default: every user)`)
	f.StringVar(invalid, "smb-invalid-users", "", "comma-separated users and groups never allowed over SMB")
	f.StringVar(admin, "smb-admin-users", "", "comma-separated users and groups who work as root on the share over SMB")
	f.BoolVar(abe, "smb-access-based-enum", false, "hide the share from users it refuses when they list the server's shares")
}

// splitUsers splits a comma-separated list; names may hold spaces.
func splitUsers(list string) []string {
	var out []string
	for _, u := range strings.Split(list, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	return out
}

// kernelOplocksUsage describes --smb-kernel-oplocks.
const kernelOplocksUsage = "SMB oplocks as kernel leases on the share's view, so that a change in the bucket breaks them " +
	"(always so on a share served over NFS too); no SMB2 leases or durable handles then"

func newShareUpdateCmd(g *globals) *cobra.Command {
	var readOnly, guest, encrypt, kernelOplocks, abe, audit bool
	var valid, invalid, admin, output string
	cmd := &cobra.Command{
		Use:   "update NAME [--read-only=BOOL] [--smb-...]",
		Short: "Change a served share's read-only flag, SMB access or auditing (the options given change, the others stay)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var u shareapi.ShareUpdate
			f := cmd.Flags()
			for _, b := range []struct {
				flag string
				v    *bool
				dst  **bool
			}{{"read-only", &readOnly, &u.ReadOnly}, {"smb-guest", &guest, &u.SMBGuest}, {"smb-encrypt", &encrypt, &u.SMBEncrypt}, {"smb-access-based-enum", &abe, &u.SMBAccessBasedEnum},
				{"smb-kernel-oplocks", &kernelOplocks, &u.SMBKernelOplocks}, {"audit", &audit, &u.Audit}} {
				if f.Changed(b.flag) {
					*b.dst = b.v
				}
			}
			for _, l := range []struct {
				flag string
				v    *string
				dst  **[]string
			}{{"smb-valid-users", &valid, &u.SMBValidUsers}, {"smb-invalid-users", &invalid, &u.SMBInvalidUsers}, {"smb-admin-users", &admin, &u.SMBAdminUsers}} {
				if f.Changed(l.flag) {
					list := splitUsers(*l.v)
					if list == nil {
						list = []string{}
					}
					*l.dst = &list
				}
			}
			var st shareapi.ShareStatus
			if err := call(cmd, g, http.MethodPatch, "/v1/shares/"+url.PathEscape(args[0]), u, &st); err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), st)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "updated share %s\n", st.Name)
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&readOnly, "read-only", false, "refuse every change, over NFS and SMB")
	f.BoolVar(&guest, "smb-guest", false, "let SMB clients in without a user (guest)")
	f.BoolVar(&encrypt, "smb-encrypt", false, "require SMB3 encryption")
	f.BoolVar(&kernelOplocks, "smb-kernel-oplocks", false, kernelOplocksUsage)
	smbAccessFlags(f, &valid, &invalid, &admin, &abe)
	f.BoolVar(&audit, "audit", false, auditUsage)
	f.StringVarP(&output, "output", "o", "text", "text or json")
	return cmd
}
