//go:build !linux

package uploadbuffer

// copyFileRange: only Linux copies between files inside the kernel here.
func copyFileRange(src uintptr, srcOff int64, dst uintptr, dstOff int64, n int64) (bool, error) {
	return false, nil
}
