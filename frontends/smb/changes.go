package smb

import (
	"strings"

	"github.com/hanwen/go-fuse/v2/fs"
)

// invalidate drops what the kernel holds of share path p after a change
// made in the bucket (fileshare's change hook): the entry of p's name (a
// negative one too), p's attributes and cached pages, and its directory's
// listing, so smbd sees the change at once rather than after attrTimeout.
// Where the kernel knows nothing of a directory on the way, the entry of
// that directory's name in its parent goes (it may be cached as absent).
// "" is the whole share: the root's listing goes; the rest expires within
// attrTimeout.
func invalidate(root *fs.Inode, p string) {
	if p == "" {
		root.NotifyContent(0, 0)
		return
	}
	parent := root
	names := strings.Split(p, "/")
	for i, name := range names {
		child := parent.GetChild(name)
		if child == nil || i == len(names)-1 {
			// Errors are ENOENT: the kernel did not hold it.
			parent.NotifyEntry(name)
			parent.NotifyContent(0, 0)
			if child != nil {
				child.NotifyContent(0, 0)
			}
			return
		}
		parent = child
	}
}
