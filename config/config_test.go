package config

import (
	"errors"
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
	for in, want := range map[string]ByteSize{"0": 0, "512": 512, "4k": 4096, "16MiB": 16 << 20, "1G": 1 << 30, "2GB": 2e9} {
		got, err := ParseByteSize(in)
		if err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "1.5G", "99999999999T", "MiB"} {
		if _, err := ParseByteSize(in); err == nil {
			t.Errorf("ParseByteSize(%q) accepted", in)
		}
	}
}
