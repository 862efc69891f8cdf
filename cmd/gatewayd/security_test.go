package main

// Access control of the real daemon, each check from the outside: iSCSI
// CHAP and initiator allow lists through the project's initiator, NFS
// client allow lists and squash through a Go NFS client, and the admin API
// on TCP (bearer token) and on its socket (mode 0600). The plaintext scan
// of the bucket after a workload is part of TestSoak.

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	nfsc "github.com/willscott/go-nfs-client/nfs"
	"github.com/willscott/go-nfs-client/nfs/rpc"

	"github.com/gatewayd/gatewayd/frontends/iscsi/initiator"
	"github.com/gatewayd/gatewayd/internal/freeport"
	"github.com/gatewayd/gatewayd/internal/nfstest"
)

func TestSecurityAccessControl(t *testing.T) {
	t.Parallel() // waits on servers: beside the others (see TestMain)
	dir := t.TempDir()
	mustRun(t, "init", "--data-dir", dir)
	adminAddr := freeport.Addr(t)
	serve(t, dir, "--admin-listen", adminAddr)

	t.Run("admin API", func(t *testing.T) {
		for _, name := range []string{"admin.sock", "admin.token"} {
			fi, err := os.Stat(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("%s mode %v, want 0600", name, fi.Mode().Perm())
			}
		}
		if fi, _ := os.Stat(filepath.Join(dir, "admin.sock")); fi.Mode()&os.ModeSocket == 0 {
			t.Errorf("admin.sock is not a socket: %v", fi.Mode())
		}
		tok, err := os.ReadFile(filepath.Join(dir, "admin.token"))
		if err != nil {
			t.Fatal(err)
		}
		token := strings.TrimSpace(string(tok))
		if len(token) < 16 {
			t.Fatalf("admin token of %d characters", len(token))
		}
		do := func(method, path, auth string, body string) int {
			t.Helper()
			req, err := http.NewRequest(method, "http://"+adminAddr+path, strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return resp.StatusCode
		}
		for _, auth := range []string{"", "Bearer ", "Bearer " + token + "x", "Bearer " + token[:len(token)-1], "Basic " + token, token} {
			for _, rq := range [][2]string{{http.MethodGet, "/v1/status"}, {http.MethodGet, "/metrics"}, {http.MethodPost, "/v1/volumes"}} {
				body := ""
				if rq[0] == http.MethodPost {
					body = `{"name":"intruder","size":1048576}`
				}
				if code := do(rq[0], rq[1], auth, body); code != http.StatusUnauthorized {
					t.Errorf("%s %s with Authorization %q: HTTP %d, want 401", rq[0], rq[1], auth, code)
				}
			}
		}
		if out := mustRun(t, "volume", "list", "--data-dir", dir); strings.Contains(out, "intruder") {
			t.Fatalf("a request without the token created a volume:\n%s", out)
		}
		if code := do(http.MethodGet, "/v1/status", "Bearer "+token, ""); code != http.StatusOK {
			t.Fatalf("status with the token: HTTP %d", code)
		}
	})

	t.Run("iSCSI CHAP and initiators", func(t *testing.T) {
		const allowed = "iqn.2024-01.io.gatewayd.test:allowed"
		mustRun(t, "volume", "create", "--data-dir", dir, "--name", "locked", "--size", "8M",
			"--chap-user", "alice", "--chap-secret", "alice-secret-123", "--initiator", allowed)
		portal := iscsiPortal(t, dir)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute) // a bound for a wedged target
		defer cancel()
		iqn := "iqn.2024-01.io.gatewayd:locked"
		for name, o := range map[string]initiator.Options{
			"no CHAP":            {InitiatorName: allowed},
			"wrong secret":       {InitiatorName: allowed, CHAPUser: "alice", CHAPSecret: "alice-secret-124"},
			"wrong user":         {InitiatorName: allowed, CHAPUser: "mallory", CHAPSecret: "alice-secret-123"},
			"unknown initiator":  {InitiatorName: "iqn.2024-01.io.gatewayd.test:other", CHAPUser: "alice", CHAPSecret: "alice-secret-123"},
			"default initiator":  {CHAPUser: "alice", CHAPSecret: "alice-secret-123"},
			"empty secret":       {InitiatorName: allowed, CHAPUser: "alice", CHAPSecret: ""},
			"secret as username": {InitiatorName: allowed, CHAPUser: "alice-secret-123", CHAPSecret: "alice"},
		} {
			o.TargetName = iqn
			c, err := initiator.Dial(ctx, portal, o)
			if err == nil {
				c.Close()
				t.Errorf("login with %s accepted", name)
				continue
			}
			var le *initiator.LoginError
			if !errors.As(err, &le) || le.Status>>8 != 2 {
				t.Errorf("login with %s: %v, want an initiator error (status class 2)", name, err)
			}
		}
		c, err := initiator.Dial(ctx, portal, initiator.Options{TargetName: iqn, InitiatorName: allowed, CHAPUser: "alice", CHAPSecret: "alice-secret-123"})
		if err != nil {
			t.Fatalf("login with the right CHAP and initiator: %v", err)
		}
		defer c.Close()
		c.Command(ctx, 0, make([]byte, 6), nil, 0) // the power-on unit attention
		if _, err := scsiRW(ctx, c, true, 0, make([]byte, 4096), 0); err != nil {
			t.Fatalf("write after a good login: %v", err)
		}
	})

	t.Run("NFS clients and squash", func(t *testing.T) {
		mustRun(t, "share", "create", "--data-dir", dir, "--name", "lan", "--clients", "127.0.0.1/32")
		mustRun(t, "share", "create", "--data-dir", dir, "--name", "elsewhere", "--clients", "10.0.0.0/8,127.0.0.2/32")
		mustRun(t, "share", "create", "--data-dir", dir, "--name", "squashed", "--squash", "all")
		mustRun(t, "share", "create", "--data-dir", dir, "--name", "plain")
		addr := nfsAddr(t, dir)
		mount := func(share string, auth rpc.Auth) (*nfsc.Target, func(), error) {
			return nfstest.Mount(t, addr, share, auth)
		}
		if _, _, err := mount("elsewhere", rpc.AuthNull); err == nil || !strings.Contains(err.Error(), "ACCES") {
			t.Fatalf("mount from 127.0.0.1 of a share for 10.0.0.0/8 and 127.0.0.2: %v", err)
		}
		v, done, err := mount("lan", rpc.AuthNull)
		if err != nil {
			t.Fatalf("mount from 127.0.0.1 of a share for 127.0.0.1/32: %v", err)
		}
		done()

		// squash all: every owner becomes the anonymous one; none keeps them.
		for share, want := range map[string]uint32{"squashed": 65534, "plain": 0} {
			v, done, err = mount(share, rpc.NewAuthUnix("client", 0, 0).Auth())
			if err != nil {
				t.Fatal(err)
			}
			f, err := v.OpenFile("owned.txt", 0o644)
			if err != nil {
				t.Fatal(err)
			}
			f.Write([]byte("x"))
			f.Close()
			_, fh, err := v.Lookup("owned.txt")
			if err != nil {
				t.Fatal(err)
			}
			if a, err := v.GetAttr(fh); err != nil || a.UID != want || a.GID != want {
				t.Errorf("%s: new file owned by %d:%d (%v), want %d:%d", share, a.UID, a.GID, err, want, want)
			}
			if _, err := v.SetAttr(fh, nfsc.Sattr3{UID: nfsc.SetUID{SetIt: true, UID: 0}, GID: nfsc.SetUID{SetIt: true, UID: 0}}); err != nil {
				t.Fatal(err)
			}
			if a, err := v.GetAttr(fh); err != nil || a.UID != want || a.GID != want {
				t.Errorf("%s: after chown to root: %d:%d (%v), want %d:%d", share, a.UID, a.GID, err, want, want)
			}
			done()
		}
	})
}
