package fileshare

import "context"

// Changes to a file's content made through one frontend are news to
// another that lets its clients cache the content (the SMB view: the
// kernel's page cache and the oplocks smbd grants). OnWrite tells it.

// OnWrite sets fn to be called with the path of a file after its content
// changed through the share, by a write or a size change, made with a
// context not marked by QuietChanges (nil: none). fn is called after the
// change is applied, with no lock of the share held; it must not block.
func (s *Share) OnWrite(fn func(p string)) {
	if fn == nil {
		s.onWrite.Store(nil)
		return
	}
	s.onWrite.Store(&fn)
}

type quietKey struct{}

// QuietChanges returns ctx marking the changes made with it as the ones
// of the frontend that set OnWrite: it knows of them already, so the
// share does not call it back for them.
func QuietChanges(ctx context.Context) context.Context {
	return context.WithValue(ctx, quietKey{}, true)
}

// wrote calls the share's write callback, if any, for a change of p's
// content made with ctx.
func (s *Share) wrote(ctx context.Context, p string) {
	if quiet, _ := ctx.Value(quietKey{}).(bool); quiet {
		return
	}
	if fn := s.onWrite.Load(); fn != nil {
		(*fn)(p)
	}
}
