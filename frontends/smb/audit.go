package smb

import (
	"strings"

	"github.com/gatewayd/gatewayd/audit"
)

// The audit log of SMB shares comes from Samba's vfs_full_audit module,
// loaded on each share with auditing on. It writes one line a call through
// Samba's debug system, in its own debug class (full_audit, at level 1
// while every other class stays at 0: smbd's command line). smbd runs
// with its debug output on its standard output, a pipe gatewayd reads
// (runOnce): each line is one write of at most a few KiB to the pipe,
// whole even when smbd's processes for several clients write at once, and
// a slow reader holds smbd up rather than lose lines. Lines of the module
// start with auditTag and say:
//
//	gwaudit|CLIENT-IP|USER|SHARE|CALL|ok|ARGS...
//	gwaudit|CLIENT-IP|USER|SHARE|CALL|fail (REASON)|ARGS...
//
// USER is the name the client logged in with (%U: not the share's forced
// owner, which %u would give). ARGS end with the file's path as smbd sees
// it, the view's mount directory and the path in the share; a rename's
// and a link's are the two paths; the times a call sets, a mode or an
// owner follow the path.

// auditTag starts every line vfs_full_audit writes for the audit log.
const auditTag = "gwaudit|"

// auditCalls are the VFS calls recorded: opens and creates (create_file),
// and every call that changes a file or a directory.
const auditCalls = "create_file mkdirat unlinkat renameat linkat symlinkat pwrite pwrite_send ftruncate fallocate fchmod fchown fntimes fset_nt_acl"

// auditDebugLevel is smbd's debug level: 0, and the module's class at 1,
// where it writes its lines.
const auditDebugLevel = "0 full_audit:1"

// trailingArgs: the arguments after the path of calls whose path is not
// their last one.
var trailingArgs = map[string]int{"fntimes": 4, "fchmod": 1, "fchown": 2}

// auditConf writes the options of a share with auditing on. global is
// smb.conf's text so far: a share's "vfs objects" replaces the global
// one, so the share's list is full_audit then the global list.
func auditConf(w func(k, v string), global string) {
	modules := "full_audit"
	for _, line := range strings.Split(global, "\n") {
		if k, v, found := strings.Cut(strings.TrimSpace(line), "="); found && strings.TrimSpace(k) == "vfs objects" {
			modules += " " + strings.TrimSpace(v)
		}
		if strings.HasPrefix(line, "[") && line != "[global]" {
			break // past the global section
		}
	}
	w("vfs objects", modules)
	w("full_audit:syslog", "no")
	w("full_audit:prefix", strings.TrimSuffix(auditTag, "|")+"|%I|%U|%S")
	w("full_audit:success", auditCalls)
	w("full_audit:failure", auditCalls)
}

// auditLine reads a line of smbd's output; if it is the module's, it
// returns the record it stands for and true. root gives a share's view
// directory by its name (case ignored, as SMB names are), or "" for a
// share not served or without auditing.
func auditLine(line string, root func(share string) (name, dir string)) (audit.Record, bool) {
	line = strings.TrimSpace(line)
	if !strings.HasPrefix(line, auditTag) {
		return audit.Record{}, false
	}
	f := strings.SplitN(line, "|", 7)
	if len(f) < 6 {
		return audit.Record{}, true // cut short: nothing to record
	}
	name, dir := root(f[3])
	if dir == "" {
		return audit.Record{}, true
	}
	r := audit.Record{Protocol: "smb", Client: f[1], User: f[2], Share: name, Op: f[4], Result: f[5]}
	if reason, failed := strings.CutPrefix(f[5], "fail ("); failed {
		r.Result = strings.TrimSuffix(reason, ")")
	}
	if len(f) < 7 {
		return r, true
	}
	args := f[6]
	i := strings.Index(args, dir)
	if i < 0 { // a path outside the view (a symlink's target)
		r.Detail = args
		return r, true
	}
	if i > 0 {
		r.Detail = strings.ReplaceAll(strings.TrimSuffix(args[:i], "|"), "|", ", ")
	}
	paths := args[i:]
	switch r.Op {
	case "renameat", "linkat", "symlinkat":
		if j := strings.Index(paths, "|"+dir); j >= 0 {
			r.NewPath = inShare(paths[j+1:], dir)
			paths = paths[:j]
		}
	default:
		if n := trailingArgs[r.Op]; n > 0 {
			parts := strings.Split(paths, "|")
			if len(parts) > n {
				r.Detail = strings.Join(parts[len(parts)-n:], ", ")
				paths = strings.Join(parts[:len(parts)-n], "|")
			}
		}
	}
	r.Path = inShare(paths, dir)
	return r, true
}

// inShare is the share path of p, a path under the view's directory dir.
func inShare(p, dir string) string {
	rest, found := strings.CutPrefix(p, dir)
	if !found || rest != "" && rest[0] != '/' {
		return p
	}
	return strings.Trim(rest, "/")
}
