package main

import (
	"bufio"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/spf13/cobra"

	"github.com/gatewayd/gatewayd/gateway"
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
				line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
				if err != nil && line == "" {
					return errors.New("no password: give --password or one line on stdin")
				}
				password = strings.TrimRight(line, "\r\n")
			}
			if err := call(cmd, g, http.MethodPost, "/v1/smb/users", gateway.SMBUser{Name: args[0], Password: password}, nil); err != nil {
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
	cmd.AddCommand(users)
	return cmd
}
