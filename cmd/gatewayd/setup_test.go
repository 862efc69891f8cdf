package main

import (
	"context"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/internal/miniotest"
)

// The set-up many end-to-end tests share: a gateway on a MinIO of the
// test's own, served with SMB.

// minioFlags are init's flags for a store on srv.
func minioFlags(srv *miniotest.Server) []string {
	return []string{"--s3-endpoint", srv.Endpoint, "--s3-path-style", "--s3-access-key", srv.AccessKey, "--s3-secret-key", srv.SecretKey}
}

// initOnMinIO starts a MinIO of the test's own with bucket made and inits
// a gateway in a new data directory whose store is s3://bucket/gw on it;
// more are further init flags.
func initOnMinIO(t *testing.T, bucket string, more ...string) (*miniotest.Server, string) {
	t.Helper()
	srv := miniotest.Start(t)
	srv.CreateBucket(t, bucket)
	dir := t.TempDir()
	mustRun(t, append(append([]string{"init", "--data-dir", dir, "--store", "s3://" + bucket + "/gw"}, minioFlags(srv)...), more...)...)
	return srv, dir
}

// serveSMB starts the daemon of dir serving SMB on addr (more: further
// serve flags) and adds the Samba account root (smbPassword). The share
// views are cleaned up after the daemon has stopped.
func serveSMB(t *testing.T, dir, addr string, more ...string) *daemon {
	t.Helper()
	t.Cleanup(func() { cleanSMB(dir) })
	d := serve(t, dir, append([]string{"--smb-listen", addr}, more...)...)
	mustRun(t, "smb", "user", "add", "--data-dir", dir, "root", "--password", smbPassword)
	return d
}

// testContext is a whole test's context: it ends a minute before go
// test's -timeout would stop the binary, so a wedged test fails with its
// own message. A bound for a hang, never a speed check: on a busy machine
// one of these tests takes tens of minutes, and a fixed bound of a few
// failed tests that were only slow.
func testContext(t *testing.T) (context.Context, context.CancelFunc) {
	if d, ok := t.Deadline(); ok {
		return context.WithDeadline(context.Background(), d.Add(-time.Minute))
	}
	return context.WithCancel(context.Background())
}
