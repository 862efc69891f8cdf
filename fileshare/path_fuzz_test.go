package fileshare

import (
	"path"
	"strings"
	"testing"
)

// FuzzCleanPath: every path a client sends (NFS names and paths, SMB
// through FUSE) passes cleanPath before it becomes an object key. What it
// accepts must stay inside the share: no empty, "." or ".." segment, no
// leading or trailing slash, no NUL, within the length limits, unchanged by
// path.Clean and by a second cleanPath. Seeds: testdata/fuzz/FuzzCleanPath.
func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{"", "/", "a", "/a/b/", "a//b", "../etc/passwd", "a/../../b", "./a", "a/.", "a\x00b",
		strings.Repeat("n", 256), strings.Repeat("d/", 600), "ünï/cødé", "a/..b/c..", " /\t"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		got, err := cleanPath(p)
		if err != nil {
			return
		}
		if got == "" {
			if strings.Trim(p, "/") != "" {
				t.Fatalf("cleanPath(%q) = the root", p)
			}
			return
		}
		if len(got) > 1024 || strings.HasPrefix(got, "/") || strings.HasSuffix(got, "/") || strings.ContainsRune(got, 0) {
			t.Fatalf("cleanPath(%q) = %q", p, got)
		}
		for _, seg := range strings.Split(got, "/") {
			if seg == "" || seg == "." || seg == ".." || len(seg) > 255 {
				t.Fatalf("cleanPath(%q) = %q with segment %q", p, got, seg)
			}
		}
		if path.Clean("/"+got) != "/"+got {
			t.Fatalf("cleanPath(%q) = %q, which path.Clean changes", p, got)
		}
		if again, err := cleanPath(got); err != nil || again != got {
			t.Fatalf("cleanPath(cleanPath(%q)) = %q, %v", p, again, err)
		}
		if k := (&Share{cfg: Config{Prefix: "share/"}}).key(got); !strings.HasPrefix(k, "share/") || strings.Contains(k, "/../") {
			t.Fatalf("path %q gives key %q outside the share's prefix", got, k)
		}
	})
}
