// Command testsummary reads `go test -json` on its standard input and
// prints what `go test` prints without -v: the output of failed tests and
// each package's ok, FAIL or "no test files" line, as go test writes it.
// Below each package's line it says how many tests (subtests included)
// ran, passed, failed and were skipped, and it prints the output of every skipped test, so a skip is
// seen. It ends with the slowest top-level tests and packages (where the
// run's time went) and the totals, and exits non-zero when a test or package
// failed or, with -fail-on-skip, when any test was skipped.
//
//	go test -json ./... | go run ./scripts/testsummary -fail-on-skip
//
// Given files (named pipes) instead, it reads them all at once, line by
// line, as one run: go test runs started side by side with different
// flags, summarised together.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
)

func main() {
	failOnSkip := flag.Bool("fail-on-skip", false, "exit non-zero when any test was skipped")
	countsFile := flag.String("counts", "", "also write the run's passed, failed and skipped counts to this file, one line")
	flag.Parse()
	var in io.Reader = os.Stdin
	var readErr func() error
	if flag.NArg() > 0 {
		in, readErr = mergeLines(flag.Args())
	}
	status, total := summarise(in, os.Stdout, *failOnSkip)
	if readErr != nil {
		if err := readErr(); err != nil {
			fmt.Printf("testsummary: %v\n", err)
			status = 1
		}
	}
	if *countsFile != "" {
		if err := os.WriteFile(*countsFile, []byte(fmt.Sprintf("%d %d %d\n", total.passed, total.failed, total.skipped)), 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "testsummary: %v\n", err)
			status = 1
		}
	}
	os.Exit(status)
}

// mergeLines reads the files at paths at once and returns their lines,
// whole and each once, as one stream, ending when all have ended, and a
// function that says (once the stream has ended) whether any could not
// be read.
func mergeLines(paths []string) (io.Reader, func() error) {
	pr, pw := io.Pipe()
	var mu sync.Mutex // one line at a time into pw
	var wg sync.WaitGroup
	errs := make([]error, len(paths))
	for i, path := range paths {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, err := os.Open(path)
			if err != nil {
				errs[i] = err
				return
			}
			defer f.Close()
			r := bufio.NewReader(f)
			for {
				line, err := r.ReadBytes('\n')
				if len(line) > 0 {
					if line[len(line)-1] != '\n' {
						line = append(line, '\n')
					}
					mu.Lock()
					pw.Write(line)
					mu.Unlock()
				}
				if err == io.EOF {
					return
				}
				if err != nil {
					errs[i] = fmt.Errorf("%s: %w", path, err)
					return
				}
			}
		}()
	}
	go func() {
		wg.Wait()
		pw.Close()
	}()
	return pr, func() error { return errors.Join(errs...) }
}

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action     string
	Package    string
	ImportPath string // build-output and build-fail events
	Test       string
	Output     string
	Elapsed    float64 // seconds, on a test's pass, fail or skip
}

// counts are a package's (or the run's) test results.
type counts struct{ run, passed, failed, skipped int }

func (c *counts) add(o counts) {
	c.run += o.run
	c.passed += o.passed
	c.failed += o.failed
	c.skipped += o.skipped
}

func (c counts) String() string {
	return fmt.Sprintf("tests: %d run, %d passed, %d failed, %d skipped", c.run, c.passed, c.failed, c.skipped)
}

// pkg is what is kept of a package until it ends: each running test's
// output, the report printed at its end, and its counts.
type pkg struct {
	tests  map[string]*bytes.Buffer
	report bytes.Buffer // failed and skipped tests' output, package output
	final  string       // go test's ok/FAIL/? line for the package
	counts
}

// summarise reads events from in, writes the summary to out and returns
// the exit status and the run's counts.
func summarise(in io.Reader, out io.Writer, failOnSkip bool) (int, counts) {
	pkgs := map[string]*pkg{}
	get := func(name string) *pkg {
		p := pkgs[name]
		if p == nil {
			p = &pkg{tests: map[string]*bytes.Buffer{}}
			pkgs[name] = p
		}
		return p
	}
	var total counts
	var skipped []string
	var timed []timing // top-level tests, for the slowest
	var pkgTimed []timing
	npkgs, failedPkgs := 0, 0
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &e) != nil {
			// Not an event (go's own messages on the same stream): as is.
			fmt.Fprintf(out, "%s\n", line)
			continue
		}
		if e.Action == "build-output" {
			io.WriteString(out, e.Output)
			continue
		}
		if e.Package == "" {
			continue
		}
		p := get(e.Package)
		if e.Test != "" {
			buf := p.tests[e.Test]
			if (e.Action == "pass" || e.Action == "fail") && !strings.Contains(e.Test, "/") {
				timed = append(timed, timing{e.Package + " " + e.Test, e.Elapsed})
			}
			switch e.Action {
			case "run":
				p.run++
				p.tests[e.Test] = &bytes.Buffer{}
			case "output":
				if buf != nil {
					buf.WriteString(e.Output)
				} else {
					p.report.WriteString(e.Output)
				}
			case "pass":
				p.passed++
				delete(p.tests, e.Test)
			case "fail":
				p.failed++
				if buf != nil {
					p.report.Write(withoutProgress(buf.Bytes()))
				}
				delete(p.tests, e.Test)
			case "skip":
				p.skipped++
				skipped = append(skipped, e.Package+" "+e.Test)
				if buf != nil {
					p.report.Write(withoutProgress(buf.Bytes()))
				}
				delete(p.tests, e.Test)
			}
			continue
		}
		switch e.Action {
		case "output":
			o := e.Output
			switch {
			case isFinal(o, e.Package):
				p.final = strings.TrimRight(o, "\n")
			case o == "PASS\n" || o == "FAIL\n" || strings.HasPrefix(o, "=== "):
			default:
				p.report.WriteString(o)
			}
		case "pass", "fail", "skip":
			// The package ended. Tests still running (a timeout or a
			// crash ended it) show what they printed.
			names := make([]string, 0, len(p.tests))
			for name := range p.tests {
				names = append(names, name)
			}
			sort.Strings(names)
			for _, name := range names {
				p.report.Write(withoutProgress(p.tests[name].Bytes()))
			}
			out.Write(p.report.Bytes())
			final := p.final
			if final == "" {
				final = strings.ToUpper(e.Action) + "\t" + e.Package
			}
			if e.Action == "skip" && p.run == 0 {
				fmt.Fprintln(out, final) // no test files
			} else {
				// go test's own line, unchanged, so that tools reading
				// go test's output still find it; the counts follow.
				fmt.Fprintf(out, "%s\n    %s\n", final, p.counts)
			}
			npkgs++
			if e.Action != "skip" {
				pkgTimed = append(pkgTimed, timing{e.Package, e.Elapsed})
			}
			if e.Action == "fail" {
				failedPkgs++
			}
			total.add(p.counts)
			delete(pkgs, e.Package)
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintf(out, "testsummary: reading go test's output: %v\n", err)
		return 1, total
	}
	// Packages whose end never came: go test was killed.
	for name, p := range pkgs {
		fmt.Fprintf(out, "FAIL\t%s\t(no end reported: go test stopped?)\n    %s\n", name, p.counts)
		failedPkgs++
		total.add(p.counts)
	}
	printSlowest(out, "tests", timed, 10)
	printSlowest(out, "packages", pkgTimed, 10)
	fmt.Fprintf(out, "== %d packages, %s\n", npkgs, total)
	status := 0
	if failedPkgs > 0 || total.failed > 0 {
		fmt.Fprintf(out, "FAIL: %d packages and %d tests failed\n", failedPkgs, total.failed)
		status = 1
	}
	if failOnSkip && len(skipped) > 0 {
		fmt.Fprintf(out, "FAIL: %d tests skipped; here every test must run (a test that needs a missing tool fails and says how to install it):\n", len(skipped))
		for _, s := range skipped {
			fmt.Fprintf(out, "    %s\n", s)
		}
		status = 1
	}
	return status, total
}

// isFinal reports whether line is go test's closing line for package name:
// "ok  \tname\t1.2s", "FAIL\tname\t1.2s" or "?   \tname\t[no test files]".
func isFinal(line, name string) bool {
	for _, prefix := range []string{"ok  \t", "FAIL\t", "?   \t"} {
		if rest, ok := strings.CutPrefix(line, prefix); ok && (rest == name+"\n" || strings.HasPrefix(rest, name+"\t") || strings.HasPrefix(rest, name+" ")) {
			return true
		}
	}
	return false
}

// withoutProgress drops test2json's === RUN/PAUSE/CONT/NAME lines from a
// test's output and puts its --- PASS/FAIL/SKIP line first, as go test
// prints it without -v.
func withoutProgress(b []byte) []byte {
	var head, body bytes.Buffer
	for _, line := range bytes.SplitAfter(b, []byte("\n")) {
		switch {
		case bytes.HasPrefix(line, []byte("=== ")):
		case bytes.HasPrefix(line, []byte("--- ")):
			head.Write(line)
		default:
			body.Write(line)
		}
	}
	head.Write(body.Bytes())
	return head.Bytes()
}

// timing is how long one top-level test or one package took.
type timing struct {
	name    string
	seconds float64
}

// printSlowest prints the n slowest of timed, tests or packages (what).
func printSlowest(out io.Writer, what string, timed []timing, n int) {
	if len(timed) == 0 {
		return
	}
	sort.SliceStable(timed, func(i, j int) bool { return timed[i].seconds > timed[j].seconds })
	if len(timed) > n {
		timed = timed[:n]
	}
	fmt.Fprintf(out, "== slowest %s\n", what)
	for _, t := range timed {
		fmt.Fprintf(out, "%8.1fs  %s\n", t.seconds, t.name)
	}
}
