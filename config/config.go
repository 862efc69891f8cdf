// Package config owns gatewayd.yaml: the options of one gateway, their
// defaults, validation, and the store URL syntax (file://DIR, s3://bucket/prefix).
//
// Every option has a default, so a gateway runs with no file at all. A file
// only needs the options it changes; unknown keys are an error, so a typo is
// reported instead of silently ignored. Relative paths are relative to the
// data directory.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// FileName is the config file inside the data directory.
const FileName = "gatewayd.yaml"

// Config is the whole configuration of one gateway.
type Config struct {
	// DataDir is not read from the file: it is where the file is.
	DataDir string `yaml:"-"`

	LogLevel  string    `yaml:"log_level"` // debug, info, warn, error
	Store     Store     `yaml:"store"`
	Keys      Keys      `yaml:"keys"`
	Meta      Meta      `yaml:"meta"`
	Cache     Cache     `yaml:"cache"`
	Buffer    Buffer    `yaml:"upload_buffer"`
	Volumes   Volumes   `yaml:"volumes"`
	Snapshots Snapshots `yaml:"snapshots"`
	Admin     Admin     `yaml:"admin"`
	ISCSI     ISCSI     `yaml:"iscsi"`
	NFS       NFS       `yaml:"nfs"`
	SMB       SMB       `yaml:"smb"`
	Shares    Shares    `yaml:"shares"`
	VTL       VTL       `yaml:"vtl"`
	// Notifications sends events out to webhooks (docs/events.md).
	Notifications Notifications `yaml:"notifications"`
}

// VTL configures the virtual tape library: one medium changer and its
// tape drives, served over iSCSI, tapes kept in the object store.
type VTL struct {
	// Enabled serves the library (needs iscsi.listen).
	Enabled bool `yaml:"enabled"`
	// Slots and Drives are the library's geometry, fixed when the library
	// is first opened (later changes are refused at start).
	Slots  int `yaml:"slots"`
	Drives int `yaml:"drives"`
	// BufferDir and BufferSize are the tapes' own upload buffer: every
	// record written is durable there before it is acknowledged.
	BufferDir  string   `yaml:"buffer_dir"`
	BufferSize ByteSize `yaml:"buffer_size"`
	// ChangerVendor and ChangerProduct are what the changer reports in
	// INQUIRY: STK L700 by default, AWS Gateway-VTL like AWS Storage
	// Gateway's.
	ChangerVendor  string `yaml:"changer_vendor"`
	ChangerProduct string `yaml:"changer_product"`
	// Targets is "library" (one target, changer at LUN 0, drives at LUN
	// 1..N) or "per-device" (one target per device, each at LUN 0).
	Targets string `yaml:"targets"`
	// CHAPUser and CHAPSecret, when set, are required of initiators;
	// Initiators, when set, are the only initiator names allowed.
	CHAPUser   string   `yaml:"chap_user"`
	CHAPSecret string   `yaml:"chap_secret"`
	Initiators []string `yaml:"initiators"`
	// ArchiveStorageClass is where archived tapes' objects go, on stores
	// with storage classes (S3: GLACIER, DEEP_ARCHIVE, ...).
	ArchiveStorageClass string `yaml:"archive_storage_class"`
}

// SMB configures the SMB frontend: Samba's smbd, run and configured by
// gatewayd over FUSE views of the shares (docs/smb.md).
type SMB struct {
	// Listen is smbd's address (one port; smbd cannot choose one); empty
	// turns SMB off. smbd starts with the first share served over SMB.
	Listen string `yaml:"listen"`
	// Smbd is the smbd binary; empty looks on PATH and in /usr/sbin.
	Smbd string `yaml:"smbd"`
	// StateDir holds smb.conf, the passdb and smbd's state; MountDir the
	// shares' FUSE views.
	StateDir string `yaml:"state_dir"`
	MountDir string `yaml:"mount_dir"`
	// Signing is mandatory (default), desired or auto.
	Signing string `yaml:"signing"`
	// NetbiosName is the server's name on the network and, in a domain,
	// its machine account (default GATEWAYD): gateways joining one domain
	// need different names.
	NetbiosName string `yaml:"netbios_name,omitempty"`
}

// defaultSMBListen is port 445, where every SMB client looks, when the
// gateway runs as root; 4450 otherwise (445 needs privilege).
func defaultSMBListen() string {
	if os.Geteuid() == 0 {
		return "127.0.0.1:445"
	}
	return "127.0.0.1:4450"
}

// NFS configures the NFS frontend.
type NFS struct {
	Listen string `yaml:"listen"`
	// Rpcbind registers NFS and MOUNT with the system's rpcbind, when one
	// runs on this host, so clients need no port options.
	Rpcbind bool `yaml:"rpcbind"`
	// Grace is the NFSv4.1 grace period after a restart, in which clients
	// reclaim their opens and locks and new ones wait; at least the lease
	// time (90 s), which 0 means.
	Grace time.Duration `yaml:"grace"`
	// ReadDelegations hands NFSv4.1 clients with a back channel read
	// delegations, recalled when someone else changes the file.
	ReadDelegations bool `yaml:"read_delegations"`
}

// Shares tunes file shares (NFS).
type Shares struct {
	// BufferDir and BufferSize are the file shares' own upload buffer:
	// every write to a file is durable there before it is acknowledged.
	BufferDir  string        `yaml:"buffer_dir"`
	BufferSize ByteSize      `yaml:"buffer_size"`
	SettleTime time.Duration `yaml:"settle_time"` // quiet time before a file is uploaded
	// AttrTTL is how long listings and attributes read from S3 are trusted:
	// how soon objects changed directly in the bucket appear.
	AttrTTL time.Duration `yaml:"attr_ttl"`
	// Events receives the bucket's event notifications (docs/events.md).
	Events BucketEvents `yaml:"bucket_events"`
	// Audit is the audit log of the shares with auditing on
	// (docs/events.md).
	Audit AuditLog `yaml:"audit"`
}

// AuditLog configures the audit log file: JSON Lines, rotated by size.
type AuditLog struct {
	Path    string   `yaml:"path"`     // relative to the data dir; default audit/audit.log
	MaxSize ByteSize `yaml:"max_size"` // rotated past this size; default 64MiB
	Keep    int      `yaml:"keep"`     // rotated files kept; default 10
}

// BucketEvents configures the receiver of the bucket's event notifications
// (a webhook): objects changed in the bucket appear in the shares at once.
// Off unless Listen is set.
type BucketEvents struct {
	Listen string `yaml:"listen"` // host:port of the receiver's own listener
	// Token is what the sender presents (Authorization: Bearer TOKEN).
	Token     string `yaml:"token"`
	QueueSize int    `yaml:"queue_size"` // distinct keys waiting at most (default 4096)
	// SQS is a queue the notifications arrive in (AWS: S3 or EventBridge
	// to SQS), polled when QueueURL is set.
	SQS BucketEventsSQS `yaml:"sqs"`
}

// BucketEventsSQS is an SQS (or SQS-compatible) queue of the bucket's
// notifications.
type BucketEventsSQS struct {
	QueueURL string `yaml:"queue_url"`
	Region   string `yaml:"region"`   // default: the store's s3.region, else us-east-1
	Endpoint string `yaml:"endpoint"` // an SQS-compatible server; empty: AWS's
	// AccessKey and SecretKey sign the requests; empty: the SDK's default
	// chain (environment, shared files, instance role).
	AccessKey string `yaml:"access_key"`
	SecretKey string `yaml:"secret_key"`
}

// Store says where the gateway keeps its data.
type Store struct {
	// URL is file://DIR (a local directory acting as a bucket; relative DIR
	// is under the data dir) or s3://BUCKET[/PREFIX].
	URL string `yaml:"url"`
	S3  S3     `yaml:"s3"`

	Retry         Retry    `yaml:"retry"`
	MaxConcurrent int      `yaml:"max_concurrent"` // in-flight requests to the store
	UploadLimit   ByteSize `yaml:"upload_limit"`   // bytes per second, 0 = unlimited
	DownloadLimit ByteSize `yaml:"download_limit"` // bytes per second, 0 = unlimited
	// LeaseTTL is how long the gateway's lease on the bucket prefix lasts
	// unless renewed (every third of it): how soon another gateway may
	// take the prefix over after this one died (docs/lease.md).
	LeaseTTL time.Duration `yaml:"lease_ttl"`
}

// S3 holds the options of an s3:// store.
type S3 struct {
	Endpoint  string `yaml:"endpoint"` // empty = AWS for the region
	Region    string `yaml:"region"`
	PathStyle bool   `yaml:"path_style"` // MinIO and most on-premises servers want this
	// Static credentials; empty means the default AWS credential chain
	// (environment, shared config, instance role).
	AccessKeyID     string   `yaml:"access_key_id"`
	SecretAccessKey string   `yaml:"secret_access_key"`
	StorageClass    string   `yaml:"storage_class"` // empty = bucket default
	PartSize        ByteSize `yaml:"part_size"`     // multipart part size
}

// Retry is the backoff policy for retryable store errors.
type Retry struct {
	MaxAttempts int           `yaml:"max_attempts"`
	BaseDelay   time.Duration `yaml:"base_delay"`
	MaxDelay    time.Duration `yaml:"max_delay"`
}

// Keys says where the master key comes from.
type Keys struct {
	// MasterKeyFile holds 32 random bytes, mode 0600.
	MasterKeyFile string `yaml:"master_key_file"`
	// PassphraseEnv, when set, names an environment variable holding a
	// passphrase the master key is derived from instead of the key file.
	PassphraseEnv string `yaml:"passphrase_env"`
}

// Meta says where local metadata lives.
type Meta struct {
	Dir string `yaml:"dir"`
}

// Cache is the local chunk cache of cached volumes.
type Cache struct {
	Dir  string   `yaml:"dir"`
	Size ByteSize `yaml:"size"` // chunk data kept at most
}

// Buffer is the upload buffer: the durable log every write lands in first.
type Buffer struct {
	Dir  string   `yaml:"dir"`
	Size ByteSize `yaml:"size"` // when full, writes wait for uploads
}

// Volumes tunes block volumes.
type Volumes struct {
	// DiskDir holds stored volumes' sparse files when no disk is given.
	DiskDir        string        `yaml:"disk_dir"`
	Uploaders      int           `yaml:"uploaders"`       // parallel chunk uploads
	UploadInterval time.Duration `yaml:"upload_interval"` // how often the uploader looks for work
	SettleTime     time.Duration `yaml:"settle_time"`     // quiet time before a chunk is uploaded
	// RecoveryPointInterval is how often a cached volume's chunk map is
	// written to the object store as a manifest (its recovery point).
	RecoveryPointInterval time.Duration `yaml:"recovery_point_interval"`
	// HydrateParallel and HydrateRate pace the background copy of a
	// stored volume restored from a snapshot (rate 0: no limit).
	HydrateParallel int      `yaml:"hydrate_parallel"`
	HydrateRate     ByteSize `yaml:"hydrate_rate"`
}

// Snapshots tunes snapshot garbage collection.
type Snapshots struct {
	// GCInterval is how often unreferenced chunks and pages are collected
	// (0: only when asked, with gatewayd gc).
	GCInterval time.Duration `yaml:"gc_interval"`
	// GCGrace keeps unreferenced objects younger than this.
	GCGrace time.Duration `yaml:"gc_grace"`
	// ObjectLock is the retention mode of locked snapshots, "governance"
	// or "compliance", on a bucket created with Object Lock (set by
	// gatewayd init --object-lock); empty: snapshots cannot be locked.
	ObjectLock string `yaml:"object_lock"`
}

// Admin configures the admin API.
type Admin struct {
	// Socket is the unix socket (mode 0600) every CLI subcommand talks to.
	Socket string `yaml:"socket"`
	// TCPListen, when set, also serves the API on TCP; every request there
	// needs the bearer token in TokenFile.
	TCPListen string `yaml:"tcp_listen"`
	TokenFile string `yaml:"token_file"`
	// Console is who the web console on the TCP listener serves:
	// "loopback" (clients on a loopback address only), "any" or "off".
	Console string `yaml:"console"`
}

// ISCSI configures the iSCSI target portal.
type ISCSI struct {
	// Listen is the portal address; empty turns iSCSI off.
	Listen string `yaml:"listen"`
	// IQNPrefix names targets: a volume V is served as <IQNPrefix>:<V>.
	IQNPrefix string `yaml:"iqn_prefix"`
	// NOPInterval: a session silent this long gets a NOP-In ping;
	// NOPTimeout: a ping unanswered this long drops the connection.
	NOPInterval time.Duration `yaml:"nop_interval"`
	NOPTimeout  time.Duration `yaml:"nop_timeout"`
}

// Listen is a frontend's listen address; empty turns the frontend off.
type Listen struct {
	Listen string `yaml:"listen"`
}

// Default returns the configuration used when no file sets anything:
// local-directory store and metadata under dataDir, loopback only.
func Default(dataDir string) *Config {
	return &Config{
		DataDir:  dataDir,
		LogLevel: "info",
		Store: Store{
			URL: "file://objects",
			S3: S3{
				Region:   "us-east-1",
				PartSize: 16 << 20,
			},
			Retry:         Retry{MaxAttempts: 8, BaseDelay: 200 * time.Millisecond, MaxDelay: 30 * time.Second},
			MaxConcurrent: 32,
			LeaseTTL:      time.Minute,
		},
		Keys:      Keys{MasterKeyFile: "master.key"},
		Meta:      Meta{Dir: "meta"},
		Cache:     Cache{Dir: "cache", Size: 8 << 30},
		Buffer:    Buffer{Dir: "uploadbuffer", Size: 8 << 30},
		Volumes:   Volumes{DiskDir: "disks", Uploaders: 4, UploadInterval: time.Second, SettleTime: 2 * time.Second, RecoveryPointInterval: 5 * time.Minute, HydrateParallel: 4},
		Snapshots: Snapshots{GCInterval: 24 * time.Hour, GCGrace: time.Hour},
		Admin:     Admin{Socket: "admin.sock", TokenFile: "admin.token", Console: "loopback"},
		ISCSI:     ISCSI{Listen: "127.0.0.1:3260", IQNPrefix: "iqn.2024-01.io.gatewayd", NOPInterval: 5 * time.Second, NOPTimeout: 30 * time.Second},
		NFS:       NFS{Listen: "127.0.0.1:2049", Rpcbind: true},
		SMB:       SMB{Listen: defaultSMBListen(), StateDir: "smb", MountDir: "smb/mnt", Signing: "mandatory"},
		Shares:    Shares{BufferDir: "sharebuffer", BufferSize: 2 << 30, SettleTime: 2 * time.Second, AttrTTL: 10 * time.Second},
		VTL: VTL{Enabled: true, Slots: 1600, Drives: 10, BufferDir: "tapebuffer", BufferSize: 4 << 30,
			ChangerVendor: "STK", ChangerProduct: "L700", Targets: "library", ArchiveStorageClass: "GLACIER"},
		Notifications: defaultNotifications(),
	}
}

// ErrNoFile is returned by Load when the data directory has no config file.
var ErrNoFile = errors.New("no " + FileName)

// Load reads DataDir/gatewayd.yaml over the defaults. A missing file gives
// the defaults and an error wrapping ErrNoFile, so callers that need an
// initialised data directory can say so and others can go on.
func Load(dataDir string) (*Config, error) {
	cfg := Default(dataDir)
	path := filepath.Join(dataDir, FileName)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return cfg, fmt.Errorf("%s: %w", path, ErrNoFile)
	}
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	if err := Parse(b, cfg); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// Parse decodes YAML onto cfg (which holds the defaults) and validates it.
func Parse(b []byte, cfg *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("invalid config: %s", oneLine(err))
	}
	return cfg.Validate()
}

// Marshal renders cfg as YAML (what `gatewayd config print` shows and what
// `gatewayd init` writes). Secrets are rendered as stored; callers that show
// config to a person use Redacted first.
func Marshal(cfg *Config) ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(cfg); err != nil {
		return nil, err
	}
	return buf.Bytes(), enc.Close()
}

// Redacted returns a copy of cfg with secrets replaced by "REDACTED".
func (c *Config) Redacted() *Config {
	cp := *c
	if cp.Store.S3.SecretAccessKey != "" {
		cp.Store.S3.SecretAccessKey = "REDACTED"
	}
	cp.Notifications = cp.Notifications.redact()
	if cp.Shares.Events.SQS.SecretKey != "" {
		cp.Shares.Events.SQS.SecretKey = "REDACTED"
	}
	return &cp
}

// Validate reports the first invalid option with its name.
func (c *Config) Validate() error {
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log_level: %q is not one of debug, info, warn, error", c.LogLevel)
	}
	if _, err := c.ParseStoreURL(); err != nil {
		return err
	}
	if c.Store.Retry.MaxAttempts < 1 {
		return fmt.Errorf("store.retry.max_attempts: must be at least 1, got %d", c.Store.Retry.MaxAttempts)
	}
	if c.Store.Retry.BaseDelay <= 0 || c.Store.Retry.MaxDelay < c.Store.Retry.BaseDelay {
		return fmt.Errorf("store.retry: need 0 < base_delay <= max_delay, got %v and %v", c.Store.Retry.BaseDelay, c.Store.Retry.MaxDelay)
	}
	if c.Store.MaxConcurrent < 1 {
		return fmt.Errorf("store.max_concurrent: must be at least 1, got %d", c.Store.MaxConcurrent)
	}
	if c.Store.UploadLimit < 0 || c.Store.DownloadLimit < 0 {
		return errors.New("store.upload_limit/download_limit: must not be negative")
	}
	if c.Store.LeaseTTL < time.Second || c.Store.LeaseTTL > time.Hour {
		return fmt.Errorf("store.lease_ttl: must be between 1s and 1h, got %v", c.Store.LeaseTTL)
	}
	if ps := c.Store.S3.PartSize; ps < 5<<20 || ps > 5<<30 {
		return fmt.Errorf("store.s3.part_size: must be between 5MiB and 5GiB, got %s", ps)
	}
	if c.Keys.MasterKeyFile == "" && c.Keys.PassphraseEnv == "" {
		return errors.New("keys: set master_key_file or passphrase_env")
	}
	if c.Meta.Dir == "" {
		return errors.New("meta.dir: must not be empty")
	}
	if c.Cache.Dir == "" || c.Buffer.Dir == "" || c.Volumes.DiskDir == "" {
		return errors.New("cache.dir, upload_buffer.dir and volumes.disk_dir must not be empty")
	}
	if c.Cache.Size < 64<<20 {
		return fmt.Errorf("cache.size: at least 64MiB, got %s", c.Cache.Size)
	}
	if c.Buffer.Size < 64<<20 {
		return fmt.Errorf("upload_buffer.size: at least 64MiB, got %s", c.Buffer.Size)
	}
	if c.Volumes.Uploaders < 1 || c.Volumes.UploadInterval <= 0 || c.Volumes.SettleTime < 0 || c.Volumes.RecoveryPointInterval <= 0 {
		return errors.New("volumes: uploaders must be at least 1, upload_interval and recovery_point_interval positive")
	}
	if c.NFS.Grace < 0 {
		return fmt.Errorf("nfs.grace: must not be negative, got %s", c.NFS.Grace)
	}
	if c.Shares.BufferDir == "" || c.Shares.BufferSize < 64<<20 || c.Shares.SettleTime < 0 || c.Shares.AttrTTL <= 0 {
		return errors.New("shares: buffer_dir must not be empty, buffer_size at least 64MiB, attr_ttl positive")
	}
	if c.Shares.Audit.Keep < 0 || c.Shares.Audit.MaxSize > 0 && c.Shares.Audit.MaxSize < 64<<10 {
		return errors.New("shares.audit: keep must not be negative, max_size at least 64KiB")
	}
	if q := c.Shares.Events.SQS.QueueURL; q != "" {
		if u, err := url.Parse(q); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fmt.Errorf("shares.bucket_events.sqs.queue_url %q: want the queue's https:// URL", q)
		}
	}
	if err := c.VTL.validate(); err != nil {
		return err
	}
	if c.Volumes.HydrateParallel < 1 {
		return errors.New("volumes.hydrate_parallel: at least 1")
	}
	if c.Snapshots.GCInterval < 0 || c.Snapshots.GCGrace < 0 {
		return errors.New("snapshots: gc_interval and gc_grace must not be negative")
	}
	if m := c.Snapshots.ObjectLock; m != "" && m != "governance" && m != "compliance" {
		return fmt.Errorf("snapshots.object_lock: governance, compliance or empty, got %q", m)
	}
	if c.Admin.Socket == "" {
		return errors.New("admin.socket: must not be empty")
	}
	if c.Admin.Console != "loopback" && c.Admin.Console != "any" && c.Admin.Console != "off" {
		return fmt.Errorf("admin.console: %q: want loopback, any or off", c.Admin.Console)
	}
	if err := validIQNPrefix(c.ISCSI.IQNPrefix); err != nil {
		return err
	}
	if c.ISCSI.NOPInterval <= 0 || c.ISCSI.NOPTimeout <= 0 {
		return errors.New("iscsi: nop_interval and nop_timeout must be positive")
	}
	if c.SMB.Listen != "" {
		if _, port, err := net.SplitHostPort(c.SMB.Listen); err != nil || port == "0" {
			return fmt.Errorf("smb.listen: %q is not host:port with a port (smbd cannot pick one)", c.SMB.Listen)
		}
	}
	switch c.SMB.Signing {
	case "mandatory", "desired", "auto":
	default:
		return fmt.Errorf("smb.signing: %q is not one of mandatory, desired, auto", c.SMB.Signing)
	}
	if c.SMB.StateDir == "" || c.SMB.MountDir == "" {
		return errors.New("smb.state_dir and smb.mount_dir must not be empty")
	}
	for name, addr := range map[string]string{"admin.tcp_listen": c.Admin.TCPListen, "iscsi.listen": c.ISCSI.Listen, "nfs.listen": c.NFS.Listen} {
		if addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return fmt.Errorf("%s: %q is not host:port", name, addr)
		}
	}
	return c.Notifications.validate()
}

// Path resolves p against the data directory.
func (c *Config) Path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.DataDir, p)
}

// StoreURL is a parsed store.url.
type StoreURL struct {
	Scheme string // "file" or "s3"
	Dir    string // file: absolute directory
	Bucket string // s3
	Prefix string // s3: key prefix without leading or trailing slash
}

// String renders the URL with an absolute directory for file stores.
func (u StoreURL) String() string {
	if u.Scheme == "file" {
		return "file://" + u.Dir
	}
	if u.Prefix == "" {
		return "s3://" + u.Bucket
	}
	return "s3://" + u.Bucket + "/" + u.Prefix
}

// ParseStoreURL parses store.url, resolving a relative file:// directory
// against the data directory.
func (c *Config) ParseStoreURL() (StoreURL, error) {
	raw := c.Store.URL
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return StoreURL{}, fmt.Errorf("store.url: %q is neither file://DIR nor s3://BUCKET/PREFIX", raw)
	}
	switch scheme {
	case "file":
		if rest == "" {
			return StoreURL{}, errors.New("store.url: file:// needs a directory")
		}
		return StoreURL{Scheme: "file", Dir: c.Path(rest)}, nil
	case "s3":
		bucket, prefix, _ := strings.Cut(rest, "/")
		if bucket == "" {
			return StoreURL{}, fmt.Errorf("store.url: %q has no bucket", raw)
		}
		if u, err := url.Parse("s3://" + rest); err != nil || u.Host != bucket {
			return StoreURL{}, fmt.Errorf("store.url: %q: invalid bucket name", raw)
		}
		return StoreURL{Scheme: "s3", Bucket: bucket, Prefix: strings.Trim(prefix, "/")}, nil
	}
	return StoreURL{}, fmt.Errorf("store.url: unknown scheme %q (want file or s3)", scheme)
}

// ByteSize is a size in bytes that reads "16MiB", "1G", "512k" or a plain number.
type ByteSize int64

// sizeUnits are the units ParseByteSize takes, in any letter case: a
// bare letter or "iB" is binary (5G = 5GiB = 5×2³⁰), "B" after the
// letter is decimal (5GB = 5×10⁹), as disks are sold.
var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"pib", 1 << 50}, {"tib", 1 << 40}, {"gib", 1 << 30}, {"mib", 1 << 20}, {"kib", 1 << 10},
	{"pb", 1e15}, {"tb", 1e12}, {"gb", 1e9}, {"mb", 1e6}, {"kb", 1e3},
	{"p", 1 << 50}, {"t", 1 << 40}, {"g", 1 << 30}, {"m", 1 << 20}, {"k", 1 << 10},
	{"b", 1},
}

// SizeSyntax says what ParseByteSize takes; its errors end with it.
const SizeSyntax = "want a whole number of bytes with an optional unit: 512M, 5G or 5GiB (binary), 5GB (decimal)"

// ParseByteSize parses a size such as "16MiB", "5g", "5GB" or "4096". Its
// error quotes the input as given.
func ParseByteSize(in string) (ByteSize, error) {
	s := strings.TrimSpace(in)
	mult := int64(1)
	lower := strings.ToLower(s)
	for _, u := range sizeUnits {
		if strings.HasSuffix(lower, u.suffix) {
			s, mult = strings.TrimSpace(s[:len(s)-len(u.suffix)]), u.mult
			break
		}
	}
	if strings.HasPrefix(s, "-") {
		return 0, fmt.Errorf("invalid size %q: a size cannot be negative", in)
	}
	if s == "" || strings.HasPrefix(s, "+") {
		return 0, fmt.Errorf("invalid size %q: %s", in, SizeSyntax)
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid size %q: %s", in, SizeSyntax)
	}
	if n > (1<<62)/mult {
		return 0, fmt.Errorf("invalid size %q: more than 4EiB", in)
	}
	return ByteSize(n * mult), nil
}

// RoundUp rounds b up to a multiple of align.
func (b ByteSize) RoundUp(align int64) ByteSize {
	if align <= 1 || int64(b)%align == 0 {
		return b
	}
	return ByteSize((int64(b)/align + 1) * align)
}

// Human is b for people to read: exact in the largest binary unit that
// divides it ("8GiB", "16B"), else to three significant digits
// ("128MiB", "1.50GiB"). Machine output (JSON, the config file) keeps
// exact bytes.
func (b ByteSize) Human() string {
	n := int64(b)
	sign := ""
	if n < 0 {
		sign, n = "-", -n
	}
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	i := 0
	for i+1 < len(units) && n >= int64(1)<<(10*(i+1)) {
		i++
	}
	div := int64(1) << (10 * i)
	if n%div == 0 {
		return sign + strconv.FormatInt(n/div, 10) + units[i]
	}
	v := float64(n) / float64(div)
	prec := 0
	switch {
	case v < 10:
		prec = 2
	case v < 100:
		prec = 1
	}
	return sign + strconv.FormatFloat(v, 'f', prec, 64) + units[i]
}

func (b ByteSize) String() string {
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if b != 0 && int64(b)%u.mult == 0 {
			return strconv.FormatInt(int64(b)/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(b), 10)
}

// UnmarshalYAML accepts a number or a string with a unit.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseByteSize(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*b = v
	return nil
}

// MarshalYAML writes the size with the largest exact binary unit.
func (b ByteSize) MarshalYAML() (any, error) { return b.String(), nil }

func oneLine(err error) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", "; ")), " ")
}

// validIQNPrefix checks iscsi.iqn_prefix: an iqn. name (RFC 3720 section
// 3.2.6.3.1) without the ":" suffix part that volume names fill in.
func validIQNPrefix(p string) error {
	if !strings.HasPrefix(p, "iqn.") || len(p) > 160 {
		return fmt.Errorf("iscsi.iqn_prefix: %q must start with iqn. and be at most 160 bytes", p)
	}
	for _, r := range p {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '-') {
			return fmt.Errorf("iscsi.iqn_prefix: %q may hold only a-z, 0-9, '.' and '-'", p)
		}
	}
	return nil
}

func (v VTL) validate() error {
	switch {
	case v.Slots < 1 || v.Slots > 8000:
		return fmt.Errorf("vtl.slots: 1 to 8000, got %d", v.Slots)
	case v.Drives < 1 || v.Drives > 64:
		return fmt.Errorf("vtl.drives: 1 to 64, got %d", v.Drives)
	case v.BufferDir == "" || v.BufferSize < 64<<20:
		return errors.New("vtl: buffer_dir must not be empty, buffer_size at least 64MiB")
	case v.Targets != "library" && v.Targets != "per-device":
		return fmt.Errorf("vtl.targets: \"library\" or \"per-device\", got %q", v.Targets)
	case (v.CHAPUser == "") != (v.CHAPSecret == ""):
		return errors.New("vtl: chap_user and chap_secret go together")
	case len(v.ChangerVendor) > 8 || len(v.ChangerProduct) > 16:
		return errors.New("vtl: changer_vendor is at most 8 characters, changer_product at most 16")
	}
	return nil
}
