package fileshare

import (
	"context"
	"fmt"
	"sync"
	"testing"
)

// TestStatWhileFirstUploadEnds stats a new directory and a new file while
// their first upload ends, again and again: every stat gives what was
// made (a directory with its mode; a file with its mode and size). A stat
// that read the path as not yet uploaded and then found the file's state
// retired by the upload's end gave the share's defaults for a file: a
// directory then read as a regular file (the SMB view's kernel took the
// directory for a file, and smbd left names out of a listing), and a file
// lost its mode, size and times.
func TestStatWhileFirstUploadEnds(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.m.Create(ctx, Config{Name: "s"}); err != nil {
		t.Fatal(err)
	}
	s := e.share("s")
	data := []byte("made before the upload")
	for i := range 200 {
		dir, file := fmt.Sprintf("d%03d", i), fmt.Sprintf("f%03d", i)
		if _, err := s.Mkdir(ctx, dir, 0o750, 0, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Create(ctx, file, 0o640, 0, 0, true); err != nil {
			t.Fatal(err)
		}
		if _, err := s.WriteAt(ctx, file, data, 0); err != nil {
			t.Fatal(err)
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var mu sync.Mutex
		var bad []string
		for range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					var got string
					if a, err := s.Stat(ctx, dir); err != nil || a.Type != TypeDir || a.Mode != 0o750 {
						got = fmt.Sprintf("%s: type %d mode %o, %v", dir, a.Type, a.Mode, err)
					} else if a, err := s.Stat(ctx, file); err != nil || a.Type != TypeFile || a.Mode != 0o640 || a.Size != int64(len(data)) {
						got = fmt.Sprintf("%s: type %d mode %o size %d, %v", file, a.Type, a.Mode, a.Size, err)
					}
					if got != "" {
						mu.Lock()
						bad = append(bad, got)
						mu.Unlock()
						return
					}
				}
			}()
		}
		err := e.m.Flush(ctx, "s")
		close(stop)
		wg.Wait()
		if err != nil {
			t.Fatal(err)
		}
		if len(bad) > 0 {
			t.Fatalf("round %d, stat as the first upload ended: %q", i, bad)
		}
	}
}
