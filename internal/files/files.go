// Package files copies files to and from hosts over SFTP (Fabric's put
// and get), skipping a copy when the other side already has the same
// content (SHA-256, computed on the host by sha256sum over SSH). A file
// is written to a temporary name and renamed into place, so that a reader
// never sees half of it.
package files

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"booted/internal/shell"
)

// Sum is the SHA-256 of the local file at path.
func Sum(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// remoteSum is the SHA-256 of path on the host, "" if it has no such file.
func remoteSum(c *ssh.Client, path string) (string, error) {
	s, err := c.NewSession()
	if err != nil {
		return "", err
	}
	defer s.Close()
	var out bytes.Buffer
	s.Stdout = &out
	if err := s.Run("sha256sum -- " + shell.Quote(path) + " 2>/dev/null || true"); err != nil {
		return "", err
	}
	f := strings.Fields(out.String())
	if len(f) == 0 {
		return "", nil
	}
	return f[0], nil
}

// client opens SFTP over c, closed when ctx ends (SFTP calls take no
// context).
func client(ctx context.Context, c *ssh.Client) (*sftp.Client, func(), error) {
	sc, err := sftp.NewClient(c)
	if err != nil {
		return nil, nil, fmt.Errorf("sftp: %w", err)
	}
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			sc.Close()
		case <-done:
		}
	}()
	return sc, func() { close(done); sc.Close() }, nil
}

// Put copies local file src to dst on the host (its mode kept) unless dst
// has the same content already; it returns the bytes copied (0: unchanged).
func Put(ctx context.Context, c *ssh.Client, src, dst string) (int64, error) {
	st, err := os.Stat(src)
	if err != nil {
		return 0, err
	}
	if !st.Mode().IsRegular() {
		return 0, fmt.Errorf("%s is not a regular file (put copies one file; a directory: tar it first)", src)
	}
	want, err := Sum(src)
	if err != nil {
		return 0, err
	}
	if have, err := remoteSum(c, dst); err != nil {
		return 0, err
	} else if have == want {
		return 0, nil
	}
	sc, closeFn, err := client(ctx, c)
	if err != nil {
		return 0, err
	}
	defer closeFn()
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	tmp := dst + ".booted-tmp"
	out, err := sc.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	if err != nil {
		return 0, fmt.Errorf("create %s: %w", tmp, err)
	}
	n, err := io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = sc.Chmod(tmp, st.Mode().Perm())
	}
	if err == nil {
		err = sc.PosixRename(tmp, dst)
	}
	if err != nil {
		sc.Remove(tmp)
		return 0, fmt.Errorf("write %s: %w", dst, err)
	}
	return n, nil
}

// Get copies src on the host to local file dst (its directory made)
// unless dst has the same content already; it returns the bytes copied
// (0: unchanged).
func Get(ctx context.Context, c *ssh.Client, src, dst string) (int64, error) {
	have, err := remoteSum(c, src)
	if err != nil {
		return 0, err
	}
	if have == "" {
		return 0, fmt.Errorf("%s: no such file on the host (or it cannot be read)", src)
	}
	if local, err := Sum(dst); err == nil && local == have {
		return 0, nil
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, err
	}
	sc, closeFn, err := client(ctx, c)
	if err != nil {
		return 0, err
	}
	defer closeFn()
	in, err := sc.Open(src)
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", src, err)
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return 0, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".*")
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(tmp, in)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		if st, serr := in.Stat(); serr == nil {
			os.Chmod(tmp.Name(), st.Mode().Perm())
		}
		err = os.Rename(tmp.Name(), dst)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return 0, fmt.Errorf("read %s: %w", src, err)
	}
	return n, nil
}
