// Package atomicfile writes a file so that a reader sees the old content or
// the new, never part of it: a temporary file beside it, then a rename.
package atomicfile

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Write writes b to path with mode (its directory made, 0700, if missing).
// The temporary file is made new (never opened through a link or an
// existing file).
func Write(path string, b []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	err = fill(f, b, mode)
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// fill writes b to the new file f, gives it mode and closes it.
func fill(f *os.File, b []byte, mode os.FileMode) error {
	_, err := f.Write(b)
	if err == nil {
		err = f.Chmod(mode)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// beneath is how a path under a tree someone else controls is resolved:
// within the tree, through no link at all.
const beneath = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

// WriteIn writes b to rel (slash-separated, relative) under the directory
// root with mode, as Write does, for a tree whose contents another party
// controls (a local host's own files): no component of rel is followed if
// it is a link or leads out of root (an error, nothing written), missing
// directories are made (0700), and the file is made new and renamed into
// place.
func WriteIn(root, rel string, b []byte, mode os.FileMode) error {
	return WriteInAs(root, rel, b, mode, -1)
}

// WriteInAs is WriteIn making the file owned by uid (its group the same
// id) when uid is not -1: the tree's party's (a local host's root, an id
// of its own here), set on the new file before it takes rel's place.
func WriteInAs(root, rel string, b []byte, mode os.FileMode, uid int) error {
	rel = filepath.Clean(rel)
	if filepath.IsAbs(rel) || rel == "." || strings.HasPrefix(rel, "..") {
		return fmt.Errorf("%s: %q is not a path below it", root, rel)
	}
	rootfd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("%s: %w", root, err)
	}
	defer unix.Close(rootfd)
	dirfd, err := dirIn(rootfd, filepath.Dir(rel))
	if err != nil {
		return fmt.Errorf("%s: %w", filepath.Join(root, rel), err)
	}
	defer unix.Close(dirfd)
	var rnd [8]byte
	rand.Read(rnd[:])
	name, tmp := filepath.Base(rel), "."+filepath.Base(rel)+".tmp"+hex.EncodeToString(rnd[:])
	fd, err := unix.Openat(dirfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, uint32(mode.Perm()))
	if err != nil {
		return fmt.Errorf("%s: %w", filepath.Join(root, rel), err)
	}
	if uid != -1 {
		if err := unix.Fchown(fd, uid, uid); err != nil {
			unix.Close(fd)
			unix.Unlinkat(dirfd, tmp, 0)
			return fmt.Errorf("%s: %w", filepath.Join(root, rel), err)
		}
	}
	err = fill(os.NewFile(uintptr(fd), tmp), b, mode)
	if err == nil {
		err = unix.Renameat(dirfd, tmp, dirfd, name)
	}
	if err != nil {
		unix.Unlinkat(dirfd, tmp, 0)
		return fmt.Errorf("%s: %w", filepath.Join(root, rel), err)
	}
	return nil
}

// dirIn opens directory rel below rootfd, making what is missing (0700),
// through no link and never out of the tree.
func dirIn(rootfd int, rel string) (int, error) {
	fd, err := unix.Dup(rootfd)
	if err != nil {
		return -1, err
	}
	if rel == "." {
		return fd, nil
	}
	for _, part := range strings.Split(rel, string(filepath.Separator)) {
		next, err := unix.Openat2(fd, part, &unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: beneath})
		if err == unix.ENOENT {
			if err = unix.Mkdirat(fd, part, 0o700); err == nil || err == unix.EEXIST {
				next, err = unix.Openat2(fd, part, &unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: beneath})
			}
		}
		unix.Close(fd)
		if err != nil {
			return -1, err
		}
		fd = next
	}
	return fd, nil
}
