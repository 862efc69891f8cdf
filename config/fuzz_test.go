package config

import (
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary bytes to the config parser: it must return a
// config or an error, never panic, and a config it accepts must pass
// validation again after a round trip through Marshal.
func FuzzParse(f *testing.F) {
	def, err := Marshal(Default("/data"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(def)
	f.Add([]byte("store:\n  url: s3://bucket/prefix\n"))
	f.Add([]byte("vtl:\n  slots: 20\n  drives: 2\n  targets: per-device\n"))
	f.Add([]byte("cache:\n  size: 64MiB\nupload_buffer:\n  size: 1GiB\n"))
	f.Add([]byte("a: &x [1]\nb: *x\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg := Default("/data")
		if err := Parse(b, cfg); err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is not one line: %q", err)
			}
			return
		}
		out, err := Marshal(cfg)
		if err != nil {
			t.Fatalf("accepted config does not marshal: %v", err)
		}
		again := Default("/data")
		if err := Parse(out, again); err != nil {
			t.Fatalf("accepted config fails after a round trip: %v\n%s", err, out)
		}
	})
}
