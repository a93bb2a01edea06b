package bootlog

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

type collector struct {
	mu    sync.Mutex
	lines []string
	pos   Position
}

func (c *collector) add(lines [][]byte, next Position) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range lines {
		c.lines = append(c.lines, string(l))
	}
	c.pos = next
	return nil
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.lines)
}

func appendTo(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

func fastFollower(path string) *Follower {
	return &Follower{Path: path, Poll: 5 * time.Millisecond, Idle: 50 * time.Millisecond}
}

func TestFollower_PartialLinesWait(t *testing.T) {
	path := filepath.Join(t.TempDir(), "booted.log")
	appendTo(t, path, "one\ntwo\nthr")
	f, c := fastFollower(path), &collector{}
	if _, err := f.Follow(context.Background(), Position{}, true, c.add); err != nil {
		t.Fatal(err)
	}
	if strings.Join(c.lines, ",") != "one,two" || c.pos.Offset != 8 {
		t.Fatalf("got %q at %+v", c.lines, c.pos)
	}
	appendTo(t, path, "ee\n")
	if _, err := f.Follow(context.Background(), c.pos, true, c.add); err != nil {
		t.Fatal(err)
	}
	if strings.Join(c.lines, ",") != "one,two,three" {
		t.Fatalf("got %q", c.lines)
	}
}

func TestFollower_NoLog(t *testing.T) {
	f, c := fastFollower(filepath.Join(t.TempDir(), "booted.log")), &collector{}
	if _, err := f.Follow(context.Background(), Position{}, true, c.add); err != nil || len(c.lines) != 0 {
		t.Fatalf("err %v lines %q", err, c.lines)
	}
}

// Ensure that lines written to the old file after a rename, before the
// writer reopens (what nginx does), are not lost, and nothing is repeated.
func TestFollower_RotationLosesNothing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "booted.log")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	appendTo(t, path, "")
	f, c := fastFollower(path), &collector{}
	start, _ := f.Follow(ctx, Position{}, true, c.add) // open the log before it rotates
	f.Logf = t.Logf
	done := make(chan error, 1)
	go func() { _, err := f.Follow(ctx, start, false, c.add); done <- err }()

	const total = 3000
	w, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < total; i++ {
		if i > 0 && i%1000 == 0 {
			if err := os.Rename(path, RotatedName(path, time.Now())); err != nil {
				t.Fatal(err)
			}
			for j := 0; j < 5; j++ { // the writer has not reopened yet
				fmt.Fprintf(w, "%d\n", i)
				i++
			}
			time.Sleep(10 * time.Millisecond)
			w.Close()
			if w, err = os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		fmt.Fprintf(w, "%d\n", i)
	}
	w.Close()
	deadline := time.Now().Add(10 * time.Second)
	for c.count() < total && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != context.Canceled {
		t.Errorf("Follow: %v", err)
	}
	if c.count() != total {
		t.Fatalf("got %d lines, want %d", c.count(), total)
	}
	for i, l := range c.lines {
		if l != strconv.Itoa(i) {
			t.Fatalf("line %d is %q", i, l)
		}
	}
}

// Ensure that a reader that stopped before two rotations picks up exactly
// where it was: the rest of its file, the middle file, then the live log.
func TestFollower_ResumeAcrossRotations(t *testing.T) {
	path := filepath.Join(t.TempDir(), "booted.log")
	f, c := fastFollower(path), &collector{}
	appendTo(t, path, "a\nb\n")
	if _, err := f.Follow(context.Background(), Position{}, true, c.add); err != nil {
		t.Fatal(err)
	}
	appendTo(t, path, "c\n")
	os.Rename(path, RotatedName(path, time.Now()))
	appendTo(t, path, "d\n")
	os.Rename(path, RotatedName(path, time.Now().Add(time.Second)))
	appendTo(t, path, "e\nf\n")
	time.Sleep(60 * time.Millisecond) // let the rotated files go idle
	if _, err := f.Follow(context.Background(), c.pos, true, c.add); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.lines, ""); got != "abcdef" {
		t.Fatalf("got %q, want abcdef", got)
	}
}

func TestFollower_Truncated(t *testing.T) {
	path := filepath.Join(t.TempDir(), "booted.log")
	f, c := fastFollower(path), &collector{}
	appendTo(t, path, "aaaa\nbbbb\n")
	f.Follow(context.Background(), Position{}, true, c.add) //nolint
	os.Truncate(path, 0)
	appendTo(t, path, "c\n")
	if _, err := f.Follow(context.Background(), c.pos, true, c.add); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.lines, ","); got != "aaaa,bbbb,c" {
		t.Fatalf("got %q", got)
	}
}

// Ensure that a follower with no position (discovery never ran, or
// hosts:clear rewound it) reads the rotated logs, oldest first, before the
// live one: callbacks written before a rotation are not lost.
func TestFollower_NoPositionReadsRotatedFirst(t *testing.T) {
	path := filepath.Join(t.TempDir(), "booted.log")
	f, c := fastFollower(path), &collector{}
	appendTo(t, path, "a\nb\n")
	os.Rename(path, RotatedName(path, time.Now()))
	appendTo(t, path, "c\n")
	os.Rename(path, RotatedName(path, time.Now().Add(time.Second)))
	appendTo(t, path, "d\n")
	time.Sleep(60 * time.Millisecond) // let the rotated files go idle
	if _, err := f.Follow(context.Background(), Position{}, true, c.add); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.lines, ""); got != "abcd" {
		t.Fatalf("got %q, want abcd", got)
	}
	// Only rotated logs, no live one yet: they are read all the same.
	path2 := filepath.Join(t.TempDir(), "booted.log")
	appendTo(t, path2, "x\n")
	os.Rename(path2, RotatedName(path2, time.Now()))
	c2 := &collector{}
	if _, err := fastFollower(path2).Follow(context.Background(), Position{}, true, c2.add); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c2.lines, ""); got != "x" {
		t.Fatalf("only rotated: got %q, want x", got)
	}
}
