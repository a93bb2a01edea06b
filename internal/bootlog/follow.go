package bootlog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// Position is how far a log has been read: the file (by inode, so that it is
// found again after it was renamed) and the offset after the last complete
// line handed out.
type Position struct {
	Inode  uint64 `json:"inode"`
	Offset int64  `json:"offset"`
}

// Follower reads a log that nginx appends to and that nginx:restart rotates
// by renaming it to PATH.TIMESTAMP.
type Follower struct {
	// Path of the live log.
	Path string
	// Poll is how often to look for new data when no change is signalled
	// (the log is watched with inotify: a write wakes the reader at once).
	// Zero means 100ms.
	Poll time.Duration
	// Idle is how long a rotated file must go unwritten before it is taken
	// as finished: nginx may write to it until it reopens its logs. Zero
	// means 1s.
	Idle time.Duration
	// Logf, if set, is told about position loss and truncation.
	Logf func(format string, args ...any)
}

// maxLine bounds one line; a longer run without a newline is handed out in
// pieces (and so is garbled).
const maxLine = 1 << 20

// Follow reads complete lines from pos onwards, in order, across rotations,
// and hands each batch to fn with the position just after it. fn's error
// stops Follow. With untilCaughtUp, Follow returns once it has read to the
// end of the live log; otherwise it runs until ctx is done. It returns the
// position it stopped at (the live log's inode even when it read nothing).
// A zero pos starts at the beginning of the oldest log kept (rotated
// copies first, then the live log).
func (f *Follower) Follow(ctx context.Context, pos Position, untilCaughtUp bool, fn func(lines [][]byte, next Position) error) (Position, error) {
	poll, idle := f.Poll, f.Idle
	if poll == 0 {
		poll = 100 * time.Millisecond
	}
	if idle == 0 {
		idle = time.Second
	}
	var cur *os.File
	defer func() {
		if cur != nil {
			cur.Close()
		}
	}()
	var watch *Watcher // made at the first wait (a catch-up may never wait)
	defer func() {
		if watch != nil {
			watch.Close()
		}
	}()
	wait := func() error {
		if watch == nil {
			watch = Watch(f.Path)
			return nil // read once more: a write may have come before the watch
		}
		return watch.Wait(ctx, poll)
	}
	buf := make([]byte, 64<<10)
	var pending []byte
	for {
		if err := ctx.Err(); err != nil {
			return pos, err
		}
		if cur == nil {
			fh, p, err := f.open(pos)
			if err != nil {
				return pos, err
			}
			if fh == nil { // no log yet
				if untilCaughtUp {
					return pos, nil
				}
				if err := wait(); err != nil {
					return pos, err
				}
				continue
			}
			cur, pos, pending = fh, p, pending[:0]
		}
		n, rerr := cur.ReadAt(buf, pos.Offset+int64(len(pending)))
		if n > 0 {
			pending = append(pending, buf[:n]...)
			var lines [][]byte
			consumed := 0
			for {
				i := bytes.IndexByte(pending[consumed:], '\n')
				if i < 0 {
					if len(pending)-consumed > maxLine {
						lines = append(lines, bytes.Clone(pending[consumed:]))
						consumed = len(pending)
					}
					break
				}
				lines = append(lines, bytes.Clone(pending[consumed:consumed+i]))
				consumed += i + 1
			}
			if len(lines) > 0 {
				next := Position{Inode: pos.Inode, Offset: pos.Offset + int64(consumed)}
				if err := fn(lines, next); err != nil {
					return pos, err
				}
				pos = next
				pending = append(pending[:0], pending[consumed:]...)
			}
			continue
		}
		if rerr != nil && !errors.Is(rerr, io.EOF) {
			return pos, fmt.Errorf("read %s: %w", f.Path, rerr)
		}
		// At the end of the open file: rotated, truncated, or caught up?
		st, err := os.Stat(f.Path)
		live := err == nil && inode(st) == pos.Inode
		switch {
		case live && st.Size() < pos.Offset:
			f.logf("%s was truncated; reading it again from the start", f.Path)
			pos.Offset, pending = 0, pending[:0]
			continue
		case live:
			if untilCaughtUp {
				return pos, nil
			}
		default: // the open file was rotated away (or the live log is gone)
			fst, err := cur.Stat()
			if err == nil && time.Since(fst.ModTime()) >= idle {
				if n, _ := cur.ReadAt(buf[:1], pos.Offset+int64(len(pending))); n > 0 {
					continue // written to since the last read after all
				}
				if len(pending) > 0 {
					// a last line without newline: hand it out as it is
					next := Position{Inode: pos.Inode, Offset: pos.Offset + int64(len(pending))}
					if err := fn([][]byte{bytes.Clone(pending)}, next); err != nil {
						return pos, err
					}
				}
				nextPos, ok := f.after(pos.Inode)
				cur.Close()
				cur, pending = nil, pending[:0]
				if !ok && untilCaughtUp {
					// the live log does not exist yet
					if _, err := os.Stat(f.Path); err != nil {
						return pos, nil
					}
				}
				pos = nextPos
				continue
			}
		}
		if err := wait(); err != nil {
			return pos, err
		}
	}
}

// open opens the file pos refers to, found by inode among the live log and
// its rotated copies. A nil file means there is no log yet.
func (f *Follower) open(pos Position) (*os.File, Position, error) {
	try := func(path string, p Position) (*os.File, Position, error) {
		fh, err := os.Open(path)
		if err != nil {
			return nil, p, err
		}
		st, err := fh.Stat()
		if err != nil {
			fh.Close()
			return nil, p, err
		}
		if p.Inode != 0 && inode(st) != p.Inode {
			fh.Close()
			return nil, p, errors.New("raced with a rotation")
		}
		p.Inode = inode(st)
		if st.Size() < p.Offset {
			f.logf("%s is shorter than the recorded position; reading it from the start", path)
			p.Offset = 0
		}
		return fh, p, nil
	}
	for attempt := 0; attempt < 3; attempt++ {
		cs := f.candidates()
		if pos.Inode != 0 {
			for _, c := range cs {
				if c.inode == pos.Inode {
					fh, p, err := try(c.path, pos)
					if err == nil {
						return fh, p, nil
					}
				}
			}
			f.logf("%s: the file of the recorded position is gone; reading the logs again from the oldest", f.Path)
			pos = Position{}
		}
		// No position: from the start of the oldest log kept, so that
		// callbacks written before a rotation are read whenever
		// discovery first runs.
		if len(cs) == 0 {
			return nil, Position{}, nil
		}
		fh, p, err := try(cs[0].path, Position{})
		if errors.Is(err, os.ErrNotExist) {
			continue // rotated or removed meanwhile
		}
		if err == nil {
			return fh, p, nil
		}
	}
	return nil, pos, fmt.Errorf("open %s: it keeps being rotated", f.Path)
}

type candidate struct {
	path  string
	inode uint64
}

// candidates lists the rotated copies, oldest first, then the live log.
func (f *Follower) candidates() []candidate {
	dir, base := filepath.Dir(f.Path), filepath.Base(f.Path)
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), base+".") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names) // rotated names end in a sortable timestamp
	names = append(names, base)
	var out []candidate
	for _, n := range names {
		st, err := os.Stat(filepath.Join(dir, n))
		if err == nil {
			out = append(out, candidate{filepath.Join(dir, n), inode(st)})
		}
	}
	return out
}

// after returns the start of the file that follows the one with inode ino:
// the next rotated copy, or the live log.
func (f *Follower) after(ino uint64) (Position, bool) {
	cs := f.candidates()
	for i, c := range cs {
		if c.inode == ino && i+1 < len(cs) {
			return Position{Inode: cs[i+1].inode}, true
		}
	}
	if len(cs) > 0 && cs[len(cs)-1].path == f.Path {
		return Position{Inode: cs[len(cs)-1].inode}, true
	}
	return Position{}, false
}

func (f *Follower) logf(format string, args ...any) {
	if f.Logf != nil {
		f.Logf(format, args...)
	}
}

// RotatedName returns the name a log is renamed to when it is rotated at t.
func RotatedName(path string, t time.Time) string {
	return path + "." + t.UTC().Format("20060102T150405.000000000Z")
}

func inode(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}
