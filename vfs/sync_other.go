//go:build !linux

package vfs

import "os"

func wrapOSFile(f *os.File, err error) (File, error) {
	if err != nil {
		return nil, err
	}
	return f, nil
}
