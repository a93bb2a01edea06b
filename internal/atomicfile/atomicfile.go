// Package atomicfile writes a file so that a reader sees the old content or
// the new, never part of it: a temporary file beside it, then a rename.
package atomicfile

import (
	"os"
	"path/filepath"
)

// Write writes b to path with mode (its directory made, 0700, if missing).
func Write(path string, b []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, mode); err != nil {
		return err
	}
	if err := os.Chmod(tmp, mode); err != nil { // WriteFile keeps an existing file's mode
		return err
	}
	return os.Rename(tmp, path)
}
