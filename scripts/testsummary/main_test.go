package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

// sample is a package with a passing test, a failing one, a skipped one
// and a test with three subtests (one skipped).
const sample = `package sample

import "testing"

func TestPass(t *testing.T) {}

func TestFail(t *testing.T) { t.Fatal("this one fails") }

func TestSkip(t *testing.T) { t.Skip("needs something missing") }

func TestSubtests(t *testing.T) {
	t.Run("a", func(t *testing.T) {})
	t.Run("b", func(t *testing.T) {})
	t.Run("c", func(t *testing.T) { t.Skip("skipped subtest") })
}
`

// goTestJSON runs the real go test -json on a module made of files and
// returns its output (go test itself exits non-zero when a test fails).
func goTestJSON(t *testing.T, files map[string]string) []byte {
	t.Helper()
	dir := t.TempDir()
	files["go.mod"] = "module example.com/sample\n\ngo 1.22\n"
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("go", "test", "-json", "-count=1", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=", "GOTOOLCHAIN=local")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if len(out) == 0 {
		t.Fatalf("go test -json: %v\n%s", err, stderr.String())
	}
	return out
}

func TestSummarise(t *testing.T) {
	stream := goTestJSON(t, map[string]string{"sample_test.go": sample})
	var out bytes.Buffer
	status, total := summarise(bytes.NewReader(stream), &out, false)
	if status != 1 {
		t.Errorf("exit status %d with a failed test, want 1", status)
	}
	if want := (counts{run: 7, passed: 4, failed: 1, skipped: 2}); total != want {
		t.Errorf("counts %+v, want %+v", total, want)
	}
	got := out.String()
	t.Logf("summary:\n%s", got)
	for _, want := range []string{
		"FAIL\texample.com/sample\t",                           // go test's own line, kept
		"s\n    tests: 7 run, 4 passed, 1 failed, 2 skipped\n", // the counts under it
		"this one fails",                                       // a failed test's output
		"needs something missing",                              // a skip's reason
		"skipped subtest",
		"== 1 packages, tests: 7 run, 4 passed, 1 failed, 2 skipped\n",
		"== slowest tests\n",
		"s  example.com/sample TestFail\n", // top-level tests that ran are timed
		"== slowest packages\n",
		"s  example.com/sample\n", // and the package
	} {
		if !strings.Contains(got, want) {
			t.Errorf("summary lacks %q", want)
		}
	}
	if strings.Contains(got, "=== RUN") {
		t.Error("summary has go test's progress lines")
	}
}

func TestSummariseSkips(t *testing.T) {
	stream := goTestJSON(t, map[string]string{"sample_test.go": `package sample

import "testing"

func TestPass(t *testing.T) {}

func TestSkip(t *testing.T) { t.Skip("tool not installed") }
`})
	var out bytes.Buffer
	if status, _ := summarise(bytes.NewReader(stream), &out, false); status != 0 {
		t.Errorf("exit status %d with only a skip and skips allowed, want 0\n%s", status, out.String())
	}
	if !strings.Contains(out.String(), "tests: 2 run, 1 passed, 0 failed, 1 skipped") {
		t.Errorf("summary:\n%s", out.String())
	}
	// The package's line is go test's own, so tools that read go
	// test's output find it.
	if !regexp.MustCompile(`(?m)^ok  \texample\.com/sample\t[0-9.]+s$`).MatchString(out.String()) {
		t.Errorf("no go test package line in the summary:\n%s", out.String())
	}
	out.Reset()
	if status, _ := summarise(bytes.NewReader(stream), &out, true); status != 1 {
		t.Errorf("exit status %d with a skip and -fail-on-skip, want 1", status)
	}
	if !strings.Contains(out.String(), "1 tests skipped") || !strings.Contains(out.String(), "example.com/sample TestSkip") {
		t.Errorf("summary does not name the skipped test:\n%s", out.String())
	}
}

func TestSummariseNoTests(t *testing.T) {
	stream := goTestJSON(t, map[string]string{"sample.go": "package sample\n"})
	var out bytes.Buffer
	if status, _ := summarise(bytes.NewReader(stream), &out, true); status != 0 {
		t.Errorf("exit status %d for a package without tests\n%s", status, out.String())
	}
	if !strings.Contains(out.String(), "?   \texample.com/sample\t[no test files]\n") {
		t.Errorf("summary:\n%s", out.String())
	}
}

func TestSummariseBuildFailure(t *testing.T) {
	stream := goTestJSON(t, map[string]string{"sample_test.go": "package sample\n\nfunc TestX(t *testing.T) { undefined() }\n"})
	var out bytes.Buffer
	if status, _ := summarise(bytes.NewReader(stream), &out, false); status != 1 {
		t.Errorf("exit status %d after a build failure, want 1\n%s", status, out.String())
	}
	if !strings.Contains(out.String(), "undefined") {
		t.Errorf("summary does not show the compiler's error:\n%s", out.String())
	}
}

// A stream cut off in the middle of a package (go test killed) fails.
func TestSummariseCutOff(t *testing.T) {
	stream := goTestJSON(t, map[string]string{"sample_test.go": sample})
	cut := stream[:bytes.Index(stream, []byte(`"Test":"TestSkip"`))]
	cut = cut[:bytes.LastIndexByte(cut, '\n')+1]
	var out bytes.Buffer
	if status, _ := summarise(bytes.NewReader(cut), &out, false); status != 1 {
		t.Errorf("exit status %d for a cut-off stream, want 1\n%s", status, out.String())
	}
}

// TestMergeLines: two go test runs read at once, from named pipes as
// scripts/test.sh gives them, are summarised as one run; a file that
// cannot be read is an error.
func TestMergeLines(t *testing.T) {
	stream := goTestJSON(t, map[string]string{"sample_test.go": sample})
	other := bytes.ReplaceAll(stream, []byte("example.com/sample"), []byte("example.com/other"))
	dir := t.TempDir()
	var paths []string
	for i, s := range [][]byte{stream, other} {
		path := filepath.Join(dir, fmt.Sprintf("run%d.json", i))
		if err := syscall.Mkfifo(path, 0o600); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, path)
		go func() {
			// Written in pieces that split lines, as a pipe may.
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				t.Error(err)
				return
			}
			defer f.Close()
			for len(s) > 0 {
				n := min(len(s), 100)
				f.Write(s[:n])
				s = s[n:]
			}
		}()
	}
	in, readErr := mergeLines(paths)
	var out bytes.Buffer
	status, total := summarise(in, &out, false)
	if err := readErr(); err != nil {
		t.Fatal(err)
	}
	if status != 1 {
		t.Errorf("exit status %d with a failed test, want 1", status)
	}
	if want := (counts{run: 14, passed: 8, failed: 2, skipped: 4}); total != want {
		t.Errorf("counts %+v, want %+v\n%s", total, want, out.String())
	}
	for _, name := range []string{"example.com/sample", "example.com/other"} {
		if !regexp.MustCompile(`(?m)^FAIL\t` + regexp.QuoteMeta(name) + `\t[0-9.]+s$`).MatchString(out.String()) {
			t.Errorf("no line for %s in the summary:\n%s", name, out.String())
		}
	}

	in, readErr = mergeLines([]string{filepath.Join(dir, "missing.json")})
	io.Copy(io.Discard, in)
	if readErr() == nil {
		t.Error("a missing file read without an error")
	}
}
