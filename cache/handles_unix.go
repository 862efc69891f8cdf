//go:build unix

package cache

import "syscall"

// openChunkLimit is the bound on open chunk files for this process.
func openChunkLimit() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return minOpenChunks
	}
	return int(min(max(rl.Cur/8, minOpenChunks), maxOpenChunks))
}
