package report

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"booted/internal/remote"
	"booted/internal/testutil"
)

// Ensure the live display keeps redrawing while one host is slow, and
// names the slow host.
func TestProgress_SlowHostDoesNotBlock(t *testing.T) {
	out := &testutil.SyncBuffer{}
	p := &Progress{out: out, title: "deploy", total: 3, tty: true, running: map[string]time.Time{}, stop: make(chan struct{}), stopped: make(chan struct{})}
	go p.loop()
	p.Start("slow")
	p.Start("w1")
	p.Start("w2")
	p.Done(remote.Result{Host: "w1", Status: remote.OK})
	p.Done(remote.Result{Host: "w2", Status: remote.Failed, Error: "boom"})
	// The display redraws every 200 ms; wait for a redraw (5 s at most).
	for start := time.Now(); !strings.Contains(out.String(), "running, 1 failed (slow") && time.Since(start) < 5*time.Second; {
		time.Sleep(20 * time.Millisecond)
	}
	got := out.String()
	p.Close()
	if !strings.Contains(got, "deploy: 2/3 done, 1 running, 1 failed (slow") {
		t.Errorf("display:\n%q", got)
	}
	if !strings.Contains(got, "w2: failed: boom\n") {
		t.Errorf("failure not shown above the status line:\n%q", got)
	}
}

func TestRecap(t *testing.T) {
	var b bytes.Buffer
	bad := Recap(&b, "service:deploy hello", []remote.Result{
		{Host: "w1", Status: remote.OK, Duration: 1200 * time.Millisecond, Note: "uploaded"},
		{Host: "w2", Status: remote.Unreachable, Error: "unreachable: dial tcp: connection refused", Err: errors.New("x")},
		{Host: "w3", Status: remote.Failed, Error: "exit status 1", Stderr: "line one\nline two"},
	}, false)
	got := b.String()
	for _, want := range []string{
		"recap service:deploy hello: 1 ok, 1 failed, 1 unreachable, 0 skipped",
		"w1  ok           1.2s  uploaded",
		"w2  unreachable  0s    unreachable: dial tcp: connection refused",
		"| line two",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("recap lacks %q:\n%s", want, got)
		}
	}
	if strings.Join(bad, ",") != "w2,w3" {
		t.Errorf("bad = %v", bad)
	}
}

func TestPrefixer(t *testing.T) {
	var b bytes.Buffer
	var mu sync.Mutex
	p := NewPrefixer(&b, &mu, "w1 | ")
	p.Write([]byte("one\ntw"))
	p.Write([]byte("o\nthree"))
	p.Flush()
	if b.String() != "w1 | one\nw1 | two\nw1 | three\n" {
		t.Errorf("%q", b.String())
	}
}

// A host that writes more than the capture keeps loses the rest, says so,
// and is never refused a write (its command would fail on a short write).
func TestHostCapture_Limit(t *testing.T) {
	c := NewHostCapture()
	o, e := c.Writers("w1")
	big := bytes.Repeat([]byte("x"), CaptureLimit+10)
	if n, err := o.Write(big); n != len(big) || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	e.Write([]byte("oops\n"))
	out, errs := c.Take("w1")
	if len(out) < CaptureLimit || !strings.HasSuffix(out, "[booted: 10 more bytes dropped]\n") || errs != "oops\n" {
		t.Errorf("took %d bytes ending %q, stderr %q", len(out), out[len(out)-40:], errs)
	}
	if out, errs := c.Take("w1"); out != "" || errs != "" {
		t.Error("Take did not forget w1")
	}
}

// On a terminal narrower than the line, each redraw fits on one row: the
// landed line wrapped, and "\r" + "erase line" left a copy of its first
// row behind on every redraw.
func TestProgress_FitsTheTerminal(t *testing.T) {
	var buf bytes.Buffer
	width := 40
	p := &Progress{out: &buf, title: "service:deploy hello v2 (batch 1 of 3)", total: 1000, tty: true,
		running: map[string]time.Time{"worker-0001": time.Now(), "worker-0002": time.Now()}, width: func() int { return width }}
	p.draw()
	width = 10 // the terminal shrank
	p.draw()
	draws := strings.Split(buf.String(), "\r\033[K")[1:]
	if len(draws) != 2 {
		t.Fatalf("draws: %q", buf.String())
	}
	for i, want := range []int{40, 10} {
		if n := utf8.RuneCountInString(draws[i]); n >= want || !strings.HasSuffix(draws[i], "…") {
			t.Errorf("draw %d at width %d is %d columns: %q", i, want, n, draws[i])
		}
	}
}

// Listings with BOOTED_OUTPUT=json are JSON lines: each line one row, whole.
func TestRows_JSONLines(t *testing.T) {
	type row struct {
		Name  string `json:"name"`
		State string `json:"state"`
	}
	var b bytes.Buffer
	rows := []row{{"w1", "serving"}, {"w2", "failed"}}
	if err := Rows(&b, true, rows, []string{"NAME", "STATE"}, func(r row) []string { return []string{r.Name, r.State} }); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines for 2 rows:\n%s", len(lines), &b)
	}
	for i, l := range lines {
		var got row
		if err := json.Unmarshal([]byte(l), &got); err != nil || got != rows[i] {
			t.Errorf("line %d %q: %+v, %v; want %+v", i+1, l, got, err, rows[i])
		}
	}
	b.Reset()
	if err := Rows(&b, true, []row{}, nil, nil); err != nil || b.Len() != 0 {
		t.Errorf("no rows: %q, %v; want nothing", &b, err)
	}
}

// A cell a host or a tenant wrote (a failure reason, a tag) is shown
// without escape sequences: it cannot set the terminal's title, clear it
// or move the cursor; a tab in it does not shift the columns.
func TestRows_NoEscapes(t *testing.T) {
	var b bytes.Buffer
	rows := []string{"w1\x1b]0;owned\x07", "w2\x1b[2J\x1b[Hfine\tnow"}
	if err := Rows(&b, false, rows, []string{"NAME"}, func(s string) []string { return []string{s} }); err != nil {
		t.Fatal(err)
	}
	if out := b.String(); strings.ContainsAny(out, "\x1b\x07\t") || !strings.Contains(out, "w2fine now") {
		t.Fatalf("table: %q", out)
	}
}
