//go:build smbnotify

package main

import "testing"

// Built only with the smbnotify tag, run by hand (docs/smb.md): plain
// smbd, the peer every torture list is held against, stalled in
// smb2.notify.basedir for 20 minutes on a busy machine, and the suite then
// fails for the peer's sake, not the gateway's:
//
//	go test -tags smbnotify -timeout 60m -run 'TestSMBTortureNotify$' ./cmd/gatewayd/

// TestSMBTortureNotify is TestSMBTortureLocking for smb2.notify, change
// notification, held to testdata/smbtorture-notify.txt.
func TestSMBTortureNotify(t *testing.T) {
	t.Parallel()
	tortureAgainstList(t, []string{"smb2.notify"}, "testdata/smbtorture-notify.txt")
}
