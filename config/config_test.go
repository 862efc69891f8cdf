package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDefaultsAreValidAndRoundTrip(t *testing.T) {
	cfg := Default("/data")
	if err := cfg.Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	b, err := Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	back := Default("/data")
	back.LogLevel = "error" // must be overwritten by the file
	if err := Parse(b, back); err != nil {
		t.Fatalf("re-parse of printed config: %v\n%s", err, b)
	}
	if back.LogLevel != "info" || back.Store.S3.PartSize != 16<<20 || back.Store.Retry.MaxDelay != 30*time.Second {
		t.Fatalf("round trip lost values: %+v", back)
	}
	if !strings.Contains(string(b), "part_size: 16MiB") {
		t.Fatalf("sizes not printed with units:\n%s", b)
	}
}

func TestParseOverridesOnlyWhatIsSet(t *testing.T) {
	cfg := Default("/data")
	err := Parse([]byte("store:\n  url: s3://bkt/gw1/\n  s3:\n    endpoint: http://127.0.0.1:9000\n    path_style: true\n  upload_limit: 10MiB\n"), cfg)
	if err != nil {
		t.Fatal(err)
	}
	u, err := cfg.ParseStoreURL()
	if err != nil || u.Scheme != "s3" || u.Bucket != "bkt" || u.Prefix != "gw1" {
		t.Fatalf("store url = %+v, %v", u, err)
	}
	if cfg.Store.UploadLimit != 10<<20 || !cfg.Store.S3.PathStyle || cfg.Store.S3.Region != "us-east-1" {
		t.Fatalf("unexpected: %+v", cfg.Store)
	}
}

func TestBadConfigGivesOneClearLine(t *testing.T) {
	cases := map[string]string{
		"typo":          "stor:\n  url: file://x\n",
		"bad yaml":      "store: [\n",
		"bad size":      "store:\n  upload_limit: 12 parsecs\n",
		"bad scheme":    "store:\n  url: ftp://x\n",
		"no bucket":     "store:\n  url: s3:///prefix\n",
		"bad level":     "log_level: chatty\n",
		"bad listen":    "iscsi:\n  listen: 3260\n",
		"bad duration":  "store:\n  retry:\n    base_delay: soon\n",
		"tiny part":     "store:\n  s3:\n    part_size: 1MiB\n",
		"zero attempts": "store:\n  retry:\n    max_attempts: 0\n",
		"short lease":   "store:\n  lease_ttl: 500ms\n",
		"long lease":    "store:\n  lease_ttl: 2h\n",
	}
	for name, text := range cases {
		err := Parse([]byte(text), Default("/d"))
		if err == nil {
			t.Errorf("%s: accepted %q", name, text)
			continue
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error spans lines: %q", name, err)
		}
	}
}

func TestLoadMissingAndUnreadable(t *testing.T) {
	dir := t.TempDir()
	cfg, err := Load(dir)
	if !errors.Is(err, ErrNoFile) || cfg == nil {
		t.Fatalf("missing file: cfg=%v err=%v", cfg, err)
	}
	if err := os.WriteFile(filepath.Join(dir, FileName), []byte("\x00\x01:::"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir); err == nil || errors.Is(err, ErrNoFile) {
		t.Fatalf("garbage file: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, FileName), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir); err != nil {
		t.Fatalf("empty file should mean defaults: %v", err)
	}
}

func TestByteSize(t *testing.T) {
	for in, want := range map[string]ByteSize{"0": 0, "512": 512, "512B": 512, "4k": 4096, "100k": 100 << 10, "100K": 100 << 10,
		"16MiB": 16 << 20, "512M": 512 << 20, "512m": 512 << 20, "1G": 1 << 30, "2GB": 2e9,
		"5g": 5 << 30, "5G": 5 << 30, "5GiB": 5 << 30, "5gib": 5 << 30, "5GB": 5e9, "5gb": 5e9, "5 G": 5 << 30, " 7T ": 7 << 40, "1KB": 1000} {
		got, err := ParseByteSize(in)
		if err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	// Errors quote the input as typed and say what is wanted.
	for in, why := range map[string]string{"": "whole number", "-1": "negative", "-5G": "negative", "1.5G": "whole number",
		"99999999999T": "more than", "MiB": "whole number", "5X": "whole number", "G5": "whole number", "+5G": "whole number", "5 GiBs": "whole number"} {
		_, err := ParseByteSize(in)
		if err == nil {
			t.Errorf("ParseByteSize(%q) accepted", in)
			continue
		}
		if want := fmt.Sprintf("invalid size %q", in); !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), why) {
			t.Errorf("ParseByteSize(%q): %q, want %q and %q", in, err, want, why)
		}
	}
	// The config file takes the same sizes.
	c := Default("/data")
	if err := Parse([]byte("cache:\n  size: 5g\nstore:\n  upload_limit: 10MB\n"), c); err != nil || c.Cache.Size != 5<<30 || c.Store.UploadLimit != 10e6 {
		t.Fatalf("sizes in gatewayd.yaml: %v %+v", err, c)
	}
}

func TestByteSizeRoundUpHuman(t *testing.T) {
	if got := ByteSize(5000).RoundUp(4096); got != 8192 {
		t.Errorf("RoundUp(5000, 4096) = %d", got)
	}
	if got := ByteSize(8192).RoundUp(4096); got != 8192 {
		t.Errorf("RoundUp(8192, 4096) = %d", got)
	}
	for n, want := range map[int64]string{0: "0B", 16: "16B", 1023: "1023B", 1024: "1KiB", 1536: "1.50KiB", 8 << 30: "8GiB",
		134221232: "128MiB", 3 << 20: "3MiB", 15*(1<<20) + 1: "15.0MiB", 1 << 40: "1TiB", -2048: "-2KiB"} {
		if got := ByteSize(n).Human(); got != want {
			t.Errorf("ByteSize(%d).Human() = %q, want %q", n, got, want)
		}
	}
}

// The bucket events' SQS queue: its URL is checked, its secret key
// redacted.
func TestBucketEventsSQS(t *testing.T) {
	c := Default(t.TempDir())
	for _, bad := range []string{"ftp://q", "sqs.example/q", "https://"} {
		c.Shares.Events.SQS.QueueURL = bad
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "shares.bucket_events.sqs.queue_url") {
			t.Errorf("queue_url %q: %v", bad, err)
		}
	}
	c.Shares.Events.SQS.QueueURL = "https://sqs.eu-west-1.amazonaws.com/123456789012/q"
	c.Shares.Events.SQS.SecretKey = "s3cret"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if r := c.Redacted(); r.Shares.Events.SQS.SecretKey != "REDACTED" || c.Shares.Events.SQS.SecretKey != "s3cret" {
		t.Errorf("redacted %q, original %q", r.Shares.Events.SQS.SecretKey, c.Shares.Events.SQS.SecretKey)
	}
}
