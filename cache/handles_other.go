//go:build !unix

package cache

// openChunkLimit is the bound on open chunk files for this process.
func openChunkLimit() int { return minOpenChunks }
