package main

import (
	"bufio"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/spf13/cobra"

	"github.com/gatewayd/gatewayd/api/smbapi"
)

func newSMBCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "smb", Short: "Manage SMB access (Samba's smbd, run by the gateway)"}
	users := &cobra.Command{Use: "user", Short: "Manage SMB users (Samba's passdb; each needs a Unix account of the same name)"}

	var password string
	var output string
	addCmd := &cobra.Command{
		Use:   "add NAME [--password PW]",
		Short: "Add an SMB user or set its password (read from stdin unless --password is given)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("password") {
				pw, err := readPassword(cmd, "give --password or one line on stdin")
				if err != nil {
					return err
				}
				password = pw
			}
			if err := call(cmd, g, http.MethodPost, "/v1/smb/users", smbapi.SMBUser{Name: args[0], Password: password}, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "SMB user %s can log in\n", args[0])
			return nil
		},
	}
	addCmd.Flags().StringVar(&password, "password", "", "the password (visible to other local users while the command runs; stdin is safer)")

	deleteCmd := &cobra.Command{
		Use:   "delete NAME",
		Short: "Remove an SMB user",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := call(cmd, g, http.MethodDelete, "/v1/smb/users/"+url.PathEscape(args[0]), nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted SMB user %s\n", args[0])
			return nil
		},
	}

	listCmd := &cobra.Command{
		Use:   "list",
		Short: "List SMB users",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var list []string
			if err := call(cmd, g, http.MethodGet, "/v1/smb/users", nil, &list); err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), list)
			}
			for _, u := range list {
				fmt.Fprintln(cmd.OutOrStdout(), u)
			}
			return nil
		},
	}
	listCmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")

	users.AddCommand(addCmd, deleteCmd, listCmd)
	cmd.AddCommand(users, newSMBJoinCmd(g), newSMBLeaveCmd(g), newSMBStatusCmd(g))
	return cmd
}

// readPassword reads one line of stdin.
func readPassword(cmd *cobra.Command, how string) (string, error) {
	line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
	if err != nil && line == "" {
		return "", errors.New("no password: " + how)
	}
	return strings.TrimRight(line, "\r\n"), nil
}

func newSMBJoinCmd(g *globals) *cobra.Command {
	var r smbapi.SMBJoinRequest
	cmd := &cobra.Command{
		Use:   "join --realm REALM --user USER",
		Short: "Join an Active Directory domain (USER's password on stdin); domain users and groups then log in over SMB",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pw, err := readPassword(cmd, "give it as one line on stdin")
			if err != nil {
				return err
			}
			r.Password = pw
			var st smbapi.SMBDomainStatus
			if err := call(cmd, g, http.MethodPost, "/v1/smb/join", r, &st); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "joined %s (%s) as %s\n", st.Realm, st.Workgroup, st.Account)
			printDomain(cmd, st)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&r.Realm, "realm", "", "the domain's DNS name (EXAMPLE.COM)")
	f.StringVar(&r.User, "user", "", "a domain user allowed to join machines to the domain")
	f.StringVar(&r.Workgroup, "workgroup", "", "the domain's NetBIOS name (default: asked of its domain controller)")
	f.StringVar(&r.IDMap, "idmap", "rid", "how domain users and groups get Unix ids: rid or autorid")
	f.Uint32Var(&r.IDLow, "idmap-low", 100000, "the lowest Unix id given to domain accounts")
	f.Uint32Var(&r.IDHigh, "idmap-high", 1999999, "the highest Unix id given to domain accounts")
	f.StringVar(&r.DC, "dc", "", "the domain controller to use (default: found through DNS)")
	_ = cmd.MarkFlagRequired("realm")
	_ = cmd.MarkFlagRequired("user")
	return cmd
}

func newSMBLeaveCmd(g *globals) *cobra.Command {
	var r smbapi.SMBLeaveRequest
	cmd := &cobra.Command{
		Use:   "leave [--user USER] [--force]",
		Short: "Leave the domain (USER's password on stdin removes the machine account); local SMB users log in again",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if r.User != "" {
				pw, err := readPassword(cmd, "give it as one line on stdin")
				if err != nil {
					return err
				}
				r.Password = pw
			}
			if err := call(cmd, g, http.MethodPost, "/v1/smb/leave", r, nil); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "left the domain")
			return nil
		},
	}
	cmd.Flags().StringVar(&r.User, "user", "", "a domain user allowed to remove the machine account")
	cmd.Flags().BoolVar(&r.Force, "force", false, "forget the domain here even if the machine account cannot be removed")
	return cmd
}

func newSMBStatusCmd(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show smbd's state and the domain membership: domain, trust check, domain controller in use",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var st smbapi.SMBStatus
			if err := call(cmd, g, http.MethodGet, "/v1/smb/status", nil, &st); err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), st)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "smbd        %s\nlisten      %s\n", st.State, st.Listen)
			if !st.Domain.Joined {
				fmt.Fprintln(cmd.OutOrStdout(), "domain      none (local users only)")
				return nil
			}
			printDomain(cmd, st.Domain)
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	return cmd
}

func printDomain(cmd *cobra.Command, st smbapi.SMBDomainStatus) {
	fmt.Fprintf(cmd.OutOrStdout(), "domain      %s (%s)\naccount     %s\ntrust       %s\ndc          %s\nidmap       %s %s\nwinbindd    %s\n",
		st.Realm, st.Workgroup, st.Account, st.Trust, st.DC, st.IDMap, st.IDRange, st.Winbindd)
}
