//go:build race

package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
)

// raceEnabled: this test binary has the race detector, and so do the
// daemons of the tests in raceTests, so that the code joining frontends,
// uploaders and the admin API is race-checked end to end too.
const raceEnabled = true

// TestRaceTestsExist checks that every name in raceTests is a test of
// this package, so a renamed test does not quietly lose its race-checked
// daemon.
func TestRaceTestsExist(t *testing.T) {
	files, err := filepath.Glob("*_test.go")
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]bool{}
	fset := token.NewFileSet()
	for _, f := range files {
		af, err := parser.ParseFile(fset, f, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range af.Decls {
			if fn, ok := d.(*ast.FuncDecl); ok && fn.Recv == nil && strings.HasPrefix(fn.Name.Name, "Test") {
				tests[fn.Name.Name] = true
			}
		}
	}
	for name := range raceTests {
		if !tests[name] {
			t.Errorf("raceTests names %s, which is no test of this package", name)
		}
	}
}
