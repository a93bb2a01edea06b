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
	f, st, err := openLog(path, os.O_RDONLY)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	off := max(0, st.Size()-n)
	return io.ReadAll(io.NewSectionReader(f, off, st.Size()-off))
}

// Cap bounds the local file at path, a log another process appends to:
// past max bytes, it keeps the last max/2 (after a line saying how much was
// cut), in place, so that the writer's next append lands after them. It
// never follows a link at path, and leaves a file at or under max alone.
// It returns the bytes cut.
func Cap(path string, max int64) (int64, error) {
	f, st, err := openLog(path, os.O_RDWR|os.O_APPEND)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if st.Size() <= max {
		return 0, nil
	}
	keep := max / 2
	tail := make([]byte, keep)
	if _, err := f.ReadAt(tail, st.Size()-keep); err != nil && err != io.EOF {
		return 0, err
	}
	if err := f.Truncate(0); err != nil {
		return 0, err
	}
	cut := st.Size() - keep
	if _, err := fmt.Fprintf(f, "[booted: %d bytes of this log cut; it keeps its last %d]\n", cut, keep); err != nil {
		return 0, err
	}
	_, err = f.Write(tail)
	return cut, err
}

// openLog opens the regular file at path with flag, never through a link
// at path (nor blocking on a FIFO put there), and returns its state.
func openLog(path string, flag int) (*os.File, os.FileInfo, error) {
	f, err := os.OpenFile(path, flag|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, err
	}
	st, err := f.Stat()
	if err == nil && !st.Mode().IsRegular() {
		err = fmt.Errorf("%s: not a regular file", path)
	}
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, st, nil
}
