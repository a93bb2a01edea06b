package files

import (
	"fmt"
	"io"
	"os"
	"syscall"
)

// Tail is the last n bytes of the local file at path (all of it when it
// is shorter), read without following a symbolic link at path: a host's
// console log lives where the host's own files do, and a host that makes
// it a link to another file must not have that file read for it. A file
// that is not there is an error fs.ErrNotExist matches.
func Tail(path string, n int64) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	off := max(0, st.Size()-n)
	return io.ReadAll(io.NewSectionReader(f, off, st.Size()-off))
}
