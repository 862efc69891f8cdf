package volume

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/internal/diskclaim"
	"github.com/gatewayd/gatewayd/vfs"
)

// A stored volume's disk belongs to that volume alone. On the operating
// system's filesystem (Options.FS is vfs.Default) the disk is identified by
// device and inode (a file) or major:minor (a block device), after
// resolving symlinks, so two paths naming one disk are one disk; and the
// volume holds it while it is open (diskclaim: flock on a file, O_EXCL on
// a block device), so `gatewayd restore` and another gateway on this host
// cannot write it. On another FS (tests' in-memory FS) the cleaned path is
// the identity and nothing is held.

// ErrDiskInUse says a disk is already another volume's, or held by another
// program (errors.Is).
var ErrDiskInUse = errkind.Mark(errkind.Permanent, errors.New("disk in use"))

// diskInUse is an error that reads as its own message and is ErrDiskInUse.
type diskInUse struct{ err error }

func (e diskInUse) Error() string   { return e.err.Error() }
func (e diskInUse) Unwrap() []error { return []error{e.err, ErrDiskInUse} }

func (m *Manager) osDisks() bool { return m.opts.FS == vfs.Default }

// diskKey identifies the disk at path.
func (m *Manager) diskKey(path string) (string, error) {
	if !m.osDisks() {
		return "path " + filepath.Clean(path), nil
	}
	id, _, err := diskclaim.Identify(path)
	if err != nil {
		return "", fmt.Errorf("volume disk: %w", err)
	}
	return id.String(), nil
}

// checkDiskFree refuses a disk one of this gateway's volumes has, naming
// that volume. Called with m.mu held, or from New before the manager is
// shared.
func (m *Manager) checkDiskFree(path string) (string, error) {
	key, err := m.diskKey(path)
	if err != nil {
		return "", err
	}
	for _, v := range m.volumes {
		if v.diskKey == key {
			return "", diskInUse{fmt.Errorf("disk %s is already in use by volume %s (its disk %s is the same %s); a disk holds one volume", path, v.info.Name, v.info.Disk, key)}
		}
	}
	return key, nil
}

// claimDisk checks that a stored volume's disk is no other volume's and
// holds it for the volume. Called as checkDiskFree is.
func (m *Manager) claimDisk(v *Volume) error {
	key, err := m.checkDiskFree(v.info.Disk)
	if err != nil {
		return fmt.Errorf("volume %s: %w", v.info.Name, err)
	}
	v.diskKey = key
	if !m.osDisks() {
		return nil
	}
	d, err := diskclaim.Open(v.info.Disk)
	if errors.Is(err, diskclaim.ErrBusy) {
		return diskInUse{fmt.Errorf("volume %s: disk %w", v.info.Name, err)}
	}
	if err != nil {
		return fmt.Errorf("volume %s: disk: %w", v.info.Name, err)
	}
	v.claim = d
	return nil
}

// diskCapacity is how many bytes the volume's disk holds: a file's size,
// a block device's capacity.
func (v *Volume) diskCapacity() (int64, error) {
	if v.claim != nil {
		return v.claim.Size()
	}
	return diskSize(v.disk)
}

// localWriteFailed logs a failed write or sync of local disk data and
// turns the volumes' health degraded. The warning stays until the gateway
// restarts: a disk that failed a write once is not to be trusted silently
// again.
func (m *Manager) localWriteFailed(v *Volume, what string, err error) {
	v.localWriteErrors.Add(1)
	m.counters.localWriteErrors.Add(1)
	m.log.Error("local disk write failed", "volume", v.info.Name, "what", what, "err", err)
	m.healthMu.Lock()
	defer m.healthMu.Unlock()
	m.diskFault = fmt.Sprintf("local disk write failed (volume %s, %s, %s): %v", v.info.Name, what, m.opts.Clock.Now().UTC().Format(time.RFC3339), err)
	m.setHealthLocked()
}

// reportUploads records the outcome of an upload round in the health
// registry, keeping a local disk fault in view.
func (m *Manager) reportUploads(err error) {
	m.healthMu.Lock()
	defer m.healthMu.Unlock()
	m.uploadFault = ""
	if err != nil {
		m.uploadFault = "uploads failing, data waits in the upload buffer: " + err.Error()
	}
	m.setHealthLocked()
}

func (m *Manager) setHealthLocked() {
	if m.opts.Health == nil {
		return
	}
	switch {
	case m.diskFault != "" && m.uploadFault != "":
		m.opts.Health.Warn(m.diskFault + "; " + m.uploadFault)
	case m.diskFault != "":
		m.opts.Health.Warn(m.diskFault)
	case m.uploadFault != "":
		m.opts.Health.Warn(m.uploadFault)
	default:
		m.opts.Health.OK()
	}
}

// isLocalIOError tells a failure of the local filesystem from other causes
// of a failed cache write (the object store, a cancelled request).
func isLocalIOError(err error) bool {
	var pe *os.PathError
	var errno syscall.Errno
	return errors.As(err, &pe) || errors.As(err, &errno)
}
