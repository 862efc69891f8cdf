package localdir

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/gatewayd/gatewayd/objstore"
)

var _ objstore.Composer = (*Store)(nil)

// Compose implements objstore.Composer: the sources are opened first (a
// later Put replaces their files, not the open ones), the parts are copied
// into a temp file (copy_file_range where the filesystem has it) and it
// is committed as Put commits, metadata included.
func (s *Store) Compose(ctx context.Context, key string, parts []objstore.Part, meta map[string]string) error {
	dir, name, err := s.location(key)
	if err != nil {
		return err
	}
	if err := objstore.CheckCompose(s, key, parts, meta); err != nil {
		return err
	}
	sources := map[string]*os.File{}
	defer func() {
		for _, f := range sources {
			f.Close()
		}
	}()
	_, err = objstore.CheckParts(s, key, parts, func(p objstore.Part) (int64, error) {
		f := sources[p.SrcKey]
		if f == nil {
			if f, err = s.openSource(key, p.SrcKey); err != nil {
				return 0, err
			}
			sources[p.SrcKey] = f
		}
		info, err := f.Stat()
		if err != nil {
			return 0, classify(fmt.Errorf("%s: compose %s: %w", s, key, err))
		}
		if p.SrcETag != "" && etagOf(info) != p.SrcETag {
			return 0, objstore.PreconditionFailed(s, "compose", key, fmt.Sprintf("source %s: ETag is %s, not %s", p.SrcKey, etagOf(info), p.SrcETag))
		}
		return info.Size(), nil
	})
	if err != nil {
		return err
	}
	return s.writeAndCommit(ctx, "compose", key, dir, name, func(f *os.File) error {
		for i, p := range parts {
			if err := ctx.Err(); err != nil {
				return err
			}
			var r io.Reader = p.Data
			if p.Data == nil {
				src := sources[p.SrcKey]
				if _, err := src.Seek(p.SrcOffset, io.SeekStart); err != nil {
					return err
				}
				r = src // as itself, so that the copy stays in the kernel
			}
			if err := copyIn(ctx, f, r, p.Size); err != nil {
				return fmt.Errorf("part %d: %w", i+1, err)
			}
		}
		return setMeta(f, meta)
	})
}

// openSource opens the file of a Compose source.
func (s *Store) openSource(key, src string) (*os.File, error) {
	dir, name, err := s.location(src)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(filepath.Join(dir, name))
	if err != nil {
		if isMissing(err) {
			return nil, objstore.NotFound(s, src)
		}
		return nil, classify(fmt.Errorf("%s: compose %s: open %s: %w", s, key, src, err))
	}
	if info, err := f.Stat(); err != nil || !info.Mode().IsRegular() {
		f.Close()
		return nil, objstore.NotFound(s, src)
	}
	return f, nil
}
