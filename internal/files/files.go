// Package files copies files to and from hosts over SFTP (Fabric's put
// and get), skipping a copy when the other side already has the same
// content: a local file is hashed once (and not again while its stamp is
// the same); a host's file booted put there is checked with one stat
// against what booted recorded, any other with sha256sum on the host. A
// file is written to a temporary name and renamed into place, so that a
// reader never sees half of it.
package files

import (
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
	"sync"
	"syscall"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"booted/internal/shell"
)

// Local is a local file to put, hashed once: its path, mode, SHA-256, and
// the stamp it had when hashed.
type Local struct {
	Path   string      `json:"path"`
	Mode   fs.FileMode `json:"mode"`
	SHA256 string      `json:"sha256"`
	Stamp  Stamp       `json:"stamp"`
}

// Stamp tells that a local file may have changed without reading it, as
// git's index does: device, inode, size, and times to the nanosecond (a
// write changes mtime and ctime; setting mtime back changes ctime).
type Stamp struct {
	Dev   uint64 `json:"dev"`
	Ino   uint64 `json:"ino"`
	Size  int64  `json:"size"`
	Mtime int64  `json:"mtime"`
	Ctime int64  `json:"ctime"`
}

func stampOf(st fs.FileInfo) Stamp {
	s := Stamp{Size: st.Size(), Mtime: st.ModTime().UnixNano()}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		s.Dev, s.Ino, s.Ctime = uint64(sys.Dev), sys.Ino, sys.Ctim.Nano()
	}
	return s
}

// hashed are the files this process has hashed, by path.
var hashed = struct {
	sync.Mutex
	m map[string]Local
}{m: map[string]Local{}}

// Hash returns the regular file at path with its SHA-256, reading it only
// when neither this process nor known (a Local recorded earlier, as the
// inventory keeps them between operations) hashed it at its present stamp.
// An operation hashes its file once, however many hosts it goes to.
func Hash(path string, known *Local) (Local, error) {
	st, err := os.Stat(path)
	if err != nil {
		return Local{}, err
	}
	if !st.Mode().IsRegular() {
		return Local{}, fmt.Errorf("%s is not a regular file (put copies one file; a directory: tar it first)", path)
	}
	l := Local{Path: path, Mode: st.Mode().Perm(), Stamp: stampOf(st)}
	hashed.Lock()
	got, ok := hashed.m[path]
	hashed.Unlock()
	switch {
	case ok && got.Stamp == l.Stamp:
		return got, nil
	case known != nil && known.Path == path && known.Stamp == l.Stamp && known.SHA256 != "":
		l.SHA256 = known.SHA256
	default:
		if l.SHA256, err = Sum(path); err != nil {
			return Local{}, err
		}
		if st, err := os.Stat(path); err != nil || stampOf(st) != l.Stamp {
			return Local{}, fmt.Errorf("%s changed while it was being read; put it again", path)
		}
	}
	hashed.Lock()
	hashed.m[path] = l
	hashed.Unlock()
	return l, nil
}

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

// head keeps the first max bytes written to it (a host's answer, bounded:
// a stat and a sum are a line each) and drops the rest.
type head struct {
	max int
	b   []byte
}

func (h *head) Write(p []byte) (int, error) {
	h.b = append(h.b, p[:min(len(p), max(h.max-len(h.b), 0))]...)
	return len(p), nil
}

func (h *head) String() string { return string(h.b) }

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

// Placed is what booted left at a path on a host: its content's SHA-256
// and what stat says of the file it wrote (size, permissions, times to the
// nanosecond, inode). As long as one stat of the path says the same, the
// file is what booted put there: writing it, replacing it, touching it
// back to its old time or changing its mode all change its ctime or inode.
type Placed struct {
	SHA256 string `json:"sha256"`
	Stat   string `json:"stat"`
}

// statFormat is GNU stat's: size, octal mode, mtime and ctime (ns), inode.
const statFormat = "%s %a %.9Y %.9Z %i"

// check reads, in one remote command, what stat says of path ("" when
// there is no such file) and, when sum is set, its SHA-256 (reading it).
func check(c *ssh.Client, path string, sum bool) (stat, sha string, err error) {
	s, err := c.NewSession()
	if err != nil {
		return "", "", err
	}
	defer s.Close()
	out := &head{max: 4096}
	s.Stdout = out
	cmd := "stat -c " + shell.Quote(statFormat) + " -- " + shell.Quote(path) + " 2>/dev/null || echo"
	if sum {
		cmd += "; sha256sum -- " + shell.Quote(path) + " 2>/dev/null || true"
	}
	if err := s.Run(cmd); err != nil {
		return "", "", err
	}
	lines := strings.SplitN(out.String(), "\n", 3)
	stat = strings.TrimSpace(lines[0])
	if len(lines) > 1 {
		if f := strings.Fields(lines[1]); len(f) > 0 {
			sha = f[0]
		}
	}
	return stat, sha, nil
}

// statMode is the octal mode in what check's stat printed.
func statMode(stat string) string {
	if f := strings.Fields(stat); len(f) > 1 {
		return f[1]
	}
	return ""
}

// PutSpec is one put: a local file hashed once (Hash), where it goes, and
// what booted recorded placing there before (nil: nothing).
type PutSpec struct {
	Src   Local
	Dst   string
	Known *Placed
	// Verify reads the host's file (sha256sum) even when one stat says it
	// is what booted put there: for a file changed behind booted's back
	// in a way stat cannot see (BOOTED_VERIFY=1).
	Verify bool
}

// Put copies p.Src to p.Dst on the host (its mode kept) unless the host
// has that content there already: it returns the bytes copied (0:
// unchanged) and what is there now, to be recorded for the next put. With
// a record of booted's own put of that content (p.Known), one stat of the
// host's file tells, without reading it (unless p.Verify); without one,
// the host reads it (sha256sum), in the same remote command.
func Put(ctx context.Context, c *ssh.Client, p PutSpec) (int64, Placed, error) {
	src, dst := p.Src, p.Dst
	known := p.Known != nil && p.Known.SHA256 == src.SHA256 && p.Known.Stat != "" && !p.Verify
	stat, have, err := check(c, dst, !known)
	if err != nil {
		return 0, Placed{}, err
	}
	if stat != "" && statMode(stat) == fmt.Sprintf("%o", src.Mode.Perm()) &&
		(known && stat == p.Known.Stat || !known && have == src.SHA256) {
		return 0, Placed{SHA256: src.SHA256, Stat: stat}, nil
	}
	if stat == "" && have == src.SHA256 && have != "" {
		return 0, Placed{SHA256: src.SHA256}, nil // a host whose stat is not GNU's: by content, as before
	}
	sc, closeFn, err := client(ctx, c)
	if err != nil {
		return 0, Placed{}, err
	}
	defer closeFn()
	in, err := os.Open(src.Path)
	if err != nil {
		return 0, Placed{}, err
	}
	defer in.Close()
	tmp := dst + ".booted-tmp"
	out, err := sc.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	if err != nil {
		return 0, Placed{}, fmt.Errorf("create %s: %w", tmp, err)
	}
	// what is sent is hashed on the way: a file changed since it was
	// hashed is not put in place under the old hash's name
	sent := sha256.New()
	n, err := io.Copy(out, io.TeeReader(in, sent))
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil && hex.EncodeToString(sent.Sum(nil)) != src.SHA256 {
		err = fmt.Errorf("%s changed while it was being put; put it again", src.Path)
	}
	if err == nil {
		err = sc.Chmod(tmp, src.Mode.Perm())
	}
	if err == nil {
		err = sc.PosixRename(tmp, dst)
	}
	if err != nil {
		sc.Remove(tmp)
		return 0, Placed{}, fmt.Errorf("write %s: %w", dst, err)
	}
	stat, _, err = check(c, dst, false)
	if err != nil {
		return 0, Placed{}, err
	}
	return n, Placed{SHA256: src.SHA256, Stat: stat}, nil
}

// Get copies src on the host to local file dst (its directory made)
// unless dst has the same content already; it returns the bytes copied
// (0: unchanged).
func Get(ctx context.Context, c *ssh.Client, src, dst string) (int64, error) {
	_, have, err := check(c, src, true)
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
