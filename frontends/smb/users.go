package smb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"os/user"
	"sort"
	"strings"

	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/names"
)

// ErrBadUser is returned for a user name or password smbd cannot take.
var ErrBadUser = errkind.Mark(errkind.Permanent, errors.New("invalid SMB user"))

// ErrNoUser is returned when deleting a user the passdb does not hold.
var ErrNoUser = errkind.Mark(errkind.NotFound, errors.New("no such SMB user"))

func checkUserName(name string) error {
	if err := names.CheckIdent("SMB user name", name, 32); err != nil {
		return fmt.Errorf("%w: %w", ErrBadUser, err)
	}
	return nil
}

// AddUser adds name to Samba's passdb with password, or sets its password.
// Samba maps every SMB user to a Unix account of the same name, so the
// account must exist on this host.
func (s *Server) AddUser(ctx context.Context, name, password string) error {
	if err := checkUserName(name); err != nil {
		return err
	}
	if password == "" || strings.ContainsAny(password, "\n\r\x00") {
		return fmt.Errorf("password must be non-empty and on one line: %w", ErrBadUser)
	}
	if _, err := user.Lookup(name); err != nil {
		return fmt.Errorf("%w: no Unix account %q on this host; Samba maps each SMB user to one (create it with: useradd --no-create-home --shell /usr/sbin/nologin %s)", ErrBadUser, name, name)
	}
	_, err := s.tool(ctx, s.smbpasswd, password+"\n"+password+"\n", "-c", s.ConfPath(), "-s", "-a", name)
	return err
}

// DeleteUser removes name from the passdb.
func (s *Server) DeleteUser(ctx context.Context, name string) error {
	if err := checkUserName(name); err != nil {
		return err
	}
	users, err := s.Users(ctx)
	if err != nil {
		return err
	}
	found := false
	for _, u := range users {
		found = found || u == name
	}
	if !found {
		return fmt.Errorf("%q: %w", name, ErrNoUser)
	}
	_, err = s.tool(ctx, s.pdbedit, "", "-s", s.ConfPath(), "-x", name)
	return err
}

// Users lists the passdb's users, by name.
func (s *Server) Users(ctx context.Context) ([]string, error) {
	out, err := s.tool(ctx, s.pdbedit, "", "-s", s.ConfPath(), "-L")
	if err != nil {
		return nil, err
	}
	users := []string{}
	for _, line := range strings.Split(out, "\n") {
		if name, _, ok := strings.Cut(line, ":"); ok && checkUserName(name) == nil {
			users = append(users, name)
		}
	}
	sort.Strings(users)
	return users, nil
}

func (s *Server) tool(ctx context.Context, bin, stdin string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		// One line: the message ends up in an error a command prints.
		var lines []string
		for _, l := range strings.Split(errb.String()+"\n"+out.String(), "\n") {
			if l = strings.TrimSpace(l); l != "" {
				lines = append(lines, l)
			}
		}
		msg := strings.Join(lines, "; ")
		return "", fmt.Errorf("%s %s: %w: %s", bin, args[len(args)-1], err, msg)
	}
	return out.String(), nil
}
