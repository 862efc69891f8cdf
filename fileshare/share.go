package fileshare

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/names"
)

// Config describes a share.
type Config struct {
	Name string `json:"name"`
	// ID is a small number naming the share in NFS file handles, assigned
	// at creation and never reused while the share exists.
	ID uint32 `json:"id"`
	// Prefix is where the share's objects live, relative to the gateway's
	// store root: "" or ending in "/".
	Prefix   string   `json:"prefix"`
	ReadOnly bool     `json:"read_only,omitempty"`
	Clients  []string `json:"clients,omitempty"` // CIDRs allowed to mount; empty: any
	// Squash maps the caller's identity for files it creates and changes:
	// "none", "root" (uid 0 becomes the anonymous uid) or "all".
	Squash  string `json:"squash"`
	AnonUID uint32 `json:"anon_uid"`
	AnonGID uint32 `json:"anon_gid"`
	// Defaults for objects that carry no metadata.
	FileMode uint32    `json:"file_mode"`
	DirMode  uint32    `json:"dir_mode"`
	UID      uint32    `json:"uid"`
	GID      uint32    `json:"gid"`
	Created  time.Time `json:"created"`
	// Protocols are the frontends that serve the share: "nfs", "smb"
	// (default nfs alone).
	Protocols []string `json:"protocols,omitempty"`
	// Frontends holds each frontend's own options for the share, by
	// protocol: the frontend defines and checks them (docs/smb.md); the
	// service keeps them, and lets them change on a served share.
	Frontends map[string]json.RawMessage `json:"frontends,omitempty"`
	// Audit records every NFS and SMB operation that opens or changes a
	// file of the share in the audit log (docs/events.md).
	Audit bool `json:"audit,omitempty"`
}

// Serves says whether a frontend ("nfs", "smb") serves the share. Shares
// made before there was a choice are NFS shares.
func (c Config) Serves(protocol string) bool {
	if len(c.Protocols) == 0 {
		return protocol == "nfs"
	}
	for _, p := range c.Protocols {
		if p == protocol {
			return true
		}
	}
	return false
}

// Errors callers tell apart; NFS maps each to its status.
var (
	ErrNotExist    = errkind.Mark(errkind.NotFound, errors.New("no such file or directory"))
	ErrExist       = errkind.Mark(errkind.Permanent, errors.New("file exists"))
	ErrNotDir      = errkind.Mark(errkind.Permanent, errors.New("not a directory"))
	ErrIsDir       = errkind.Mark(errkind.Permanent, errors.New("is a directory"))
	ErrNotEmpty    = errkind.Mark(errkind.Permanent, errors.New("directory not empty"))
	ErrReadOnly    = errkind.Mark(errkind.Permanent, errors.New("read-only share"))
	ErrNotSupp     = errkind.Mark(errkind.Permanent, errors.New("not supported by a file share (hard links and special files)"))
	ErrInvalid     = errkind.Mark(errkind.Permanent, errors.New("invalid argument"))
	ErrNameTooLong = errkind.Mark(errkind.Permanent, errors.New("file name too long"))
	ErrShareExists = errkind.Mark(errkind.Permanent, errors.New("a share with that name exists"))
	ErrNoShare     = errkind.Mark(errkind.NotFound, errors.New("no such share"))
)

// reservedPrefixes hold the gateway's own objects (docs/format.md).
var reservedPrefixes = []string{"chunks/", "maps/", "snapshots/", "volumes/", "keys/", "tapes/", "config", xattrPrefix}

// Normalize fills defaults and checks c.
func (c *Config) Normalize() error {
	if err := names.CheckIdent("share name", c.Name, 64); err != nil {
		return err
	}
	if c.Prefix == "" {
		c.Prefix = c.Name + "/"
	}
	if !strings.HasSuffix(c.Prefix, "/") || strings.HasPrefix(c.Prefix, "/") || strings.Contains(c.Prefix, "//") {
		return fmt.Errorf("share prefix %q: a key prefix ending in '/', not starting with one", c.Prefix)
	}
	for _, seg := range strings.Split(strings.TrimSuffix(c.Prefix, "/"), "/") {
		if seg == "." || seg == ".." {
			return fmt.Errorf("share prefix %q: no '.' or '..' segments", c.Prefix)
		}
	}
	for _, r := range reservedPrefixes {
		if strings.HasPrefix(c.Prefix, r) || strings.HasPrefix(r, c.Prefix) {
			return fmt.Errorf("share prefix %q overlaps the gateway's own objects (%s)", c.Prefix, r)
		}
	}
	switch c.Squash {
	case "":
		c.Squash = "none"
	case "none", "root", "all":
	default:
		return fmt.Errorf("squash %q: want none, root or all", c.Squash)
	}
	for _, cidr := range c.Clients {
		if _, err := netip.ParsePrefix(cidr); err != nil {
			if _, err2 := netip.ParseAddr(cidr); err2 != nil {
				return fmt.Errorf("client %q: want a CIDR (10.0.0.0/8) or an address", cidr)
			}
		}
	}
	if len(c.Protocols) == 0 {
		c.Protocols = []string{"nfs"}
	}
	seen := map[string]bool{}
	var protocols []string
	for _, p := range c.Protocols {
		p = strings.ToLower(strings.TrimSpace(p))
		if p != "nfs" && p != "smb" {
			return fmt.Errorf("protocol %q: want nfs or smb", p)
		}
		if !seen[p] {
			seen[p] = true
			protocols = append(protocols, p)
		}
	}
	c.Protocols = protocols
	for p, raw := range c.Frontends {
		if !seen[p] {
			return fmt.Errorf("options for %s need %s among the share's protocols", p, p)
		}
		if t := bytes.TrimSpace(raw); !json.Valid(t) || t[0] != '{' {
			return fmt.Errorf("options for %s: want a JSON object", p)
		}
	}
	if c.FileMode == 0 {
		c.FileMode = 0o644
	}
	if c.DirMode == 0 {
		c.DirMode = 0o755
	}
	if c.AnonUID == 0 && c.AnonGID == 0 {
		c.AnonUID, c.AnonGID = 65534, 65534
	}
	if c.FileMode > 0o7777 || c.DirMode > 0o7777 {
		return errors.New("file_mode and dir_mode are permission bits (at most 07777)")
	}
	return nil
}

// Allows says whether a client address may mount the share.
func (c *Config) Allows(addr netip.Addr) bool {
	if len(c.Clients) == 0 {
		return true
	}
	addr = addr.Unmap()
	for _, cidr := range c.Clients {
		if p, err := netip.ParsePrefix(cidr); err == nil && p.Contains(addr) {
			return true
		}
		if a, err := netip.ParseAddr(cidr); err == nil && a.Unmap() == addr {
			return true
		}
	}
	return false
}

// MapOwner applies the share's squash to a caller's uid and gid.
func (c *Config) MapOwner(uid, gid uint32) (uint32, uint32) {
	switch c.Squash {
	case "all":
		return c.AnonUID, c.AnonGID
	case "root":
		if uid == 0 {
			uid = c.AnonUID
		}
		if gid == 0 {
			gid = c.AnonGID
		}
	}
	return uid, gid
}

// FileType is what a path names.
type FileType uint8

// File types.
const (
	TypeFile FileType = iota + 1
	TypeDir
	TypeSymlink
	// Special files: an empty object whose metadata names the type (and a
	// device's numbers); the gateway serves no data of theirs.
	TypeFIFO
	TypeSocket
	TypeBlock // block device
	TypeChar  // character device
)

// Special says whether t is a FIFO, a socket or a device.
func (t FileType) Special() bool { return t >= TypeFIFO && t <= TypeChar }

// Device is a device file's numbers.
type Device struct{ Major, Minor uint32 }

// specialNames are the gwd-type values of the special files.
var specialNames = map[FileType]string{TypeFIFO: "fifo", TypeSocket: "socket", TypeBlock: "block", TypeChar: "char"}

// Attr are a file's attributes.
type Attr struct {
	Ino    uint64
	Type   FileType
	Mode   uint32 // permission bits
	UID    uint32
	GID    uint32
	Size   int64
	Mtime  time.Time
	Ctime  time.Time
	Target string // symlinks
	Rdev   Device // block and character devices
	etag   string
	xa     *xattrSet // extended attributes (xattrs.go); nil: none
}

// Metadata names on objects.
const (
	metaMode  = "gwd-mode"
	metaUID   = "gwd-uid"
	metaGID   = "gwd-gid"
	metaMtime = "gwd-mtime"
	metaCtime = "gwd-ctime"
	metaType  = "gwd-type"
	metaRdev  = "gwd-rdev"
)

func (a Attr) metadata() map[string]string {
	m := map[string]string{
		metaMode:  strconv.FormatUint(uint64(a.Mode), 8),
		metaUID:   strconv.FormatUint(uint64(a.UID), 10),
		metaGID:   strconv.FormatUint(uint64(a.GID), 10),
		metaMtime: strconv.FormatInt(a.Mtime.UnixNano(), 10),
		metaCtime: strconv.FormatInt(a.Ctime.UnixNano(), 10),
	}
	if a.Type == TypeSymlink {
		m[metaType] = "symlink"
	}
	if n := specialNames[a.Type]; n != "" {
		m[metaType] = n
	}
	if a.Type == TypeBlock || a.Type == TypeChar {
		m[metaRdev] = fmt.Sprintf("%d,%d", a.Rdev.Major, a.Rdev.Minor)
	}
	a.xa.addMetadata(m)
	return m
}

// applyMetadata fills a from object metadata, keeping defaults for what is
// missing or malformed (objects written by other S3 applications).
func (a *Attr) applyMetadata(m map[string]string) {
	if v, err := strconv.ParseUint(m[metaMode], 8, 32); err == nil && v <= 0o7777 {
		a.Mode = uint32(v)
	}
	if v, err := strconv.ParseUint(m[metaUID], 10, 32); err == nil {
		a.UID = uint32(v)
	}
	if v, err := strconv.ParseUint(m[metaGID], 10, 32); err == nil {
		a.GID = uint32(v)
	}
	if v, err := strconv.ParseInt(m[metaMtime], 10, 64); err == nil {
		a.Mtime = time.Unix(0, v)
	}
	if v, err := strconv.ParseInt(m[metaCtime], 10, 64); err == nil {
		a.Ctime = time.Unix(0, v)
	}
	if m[metaType] == "symlink" && a.Type == TypeFile {
		a.Type = TypeSymlink
	}
	for t, n := range specialNames {
		if m[metaType] == n && a.Type == TypeFile {
			a.Type = t
		}
	}
	if a.Type == TypeBlock || a.Type == TypeChar {
		a.Rdev = parseRdev(m[metaRdev])
	}
	a.xa = xattrsFromMetadata(m)
}

// parseRdev reads gwd-rdev, "major,minor" in decimal; malformed is 0,0.
func parseRdev(v string) Device {
	maj, min, ok := strings.Cut(v, ",")
	a, err1 := strconv.ParseUint(maj, 10, 32)
	b, err2 := strconv.ParseUint(min, 10, 32)
	if !ok || err1 != nil || err2 != nil {
		return Device{}
	}
	return Device{uint32(a), uint32(b)}
}

func (c Config) marshal() ([]byte, error) { return json.Marshal(c) }

// unmarshalConfig reads a share's stored configuration. A frontend's
// options were once top-level keys named for the protocol ("smb_guest"):
// such a key of a protocol the share is served by moves into that
// frontend's options under the rest of its name ("guest"), so a share
// keeps its access lists across the change.
func unmarshalConfig(raw []byte) (Config, error) {
	var c Config
	if err := json.Unmarshal(raw, &c); err != nil {
		return Config{}, err
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(raw, &keys); err != nil {
		return Config{}, err
	}
	for _, p := range c.Protocols {
		old := map[string]json.RawMessage{}
		for k, v := range keys {
			if opt, ok := strings.CutPrefix(k, p+"_"); ok && opt != "" {
				old[opt] = v
			}
		}
		if len(old) == 0 {
			continue
		}
		if cur, ok := c.Frontends[p]; ok {
			if err := json.Unmarshal(cur, &old); err != nil { // the newer keys win
				return Config{}, fmt.Errorf("options for %s: %w", p, err)
			}
		}
		merged, err := json.Marshal(old)
		if err != nil {
			return Config{}, err
		}
		if c.Frontends == nil {
			c.Frontends = map[string]json.RawMessage{}
		}
		c.Frontends[p] = merged
	}
	return c, nil
}

// cleanPath checks a share path: slash-separated names, no "", "." or
// "..", at most 1024 bytes, each name at most 255. "" is the root.
func cleanPath(p string) (string, error) {
	p = strings.Trim(p, "/")
	if p == "" {
		return "", nil
	}
	if len(p) > 1024 {
		return "", ErrNameTooLong
	}
	for _, name := range strings.Split(p, "/") {
		if err := checkName(name); err != nil {
			return "", err
		}
	}
	return p, nil
}

func checkName(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return fmt.Errorf("name %q: %w", name, ErrInvalid)
	case len(name) > 255:
		return ErrNameTooLong
	case strings.ContainsAny(name, "/\x00"):
		return fmt.Errorf("name %q: %w", name, ErrInvalid)
	}
	return nil
}

func parentOf(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i]
	}
	return ""
}

func joinPath(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}
