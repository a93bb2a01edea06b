// Package report shows multi-host operations to the person or program that
// runs them: a live progress line on a terminal (redrawn on a timer, so one
// slow host never blocks it), a line per host otherwise, JSON lines with
// BOOTED_OUTPUT=json, and a recap with one line per host at the end.
package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"booted/internal/remote"
)

// IsTerminal reports whether w is a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// Progress shows an operation as hosts start and finish.
type Progress struct {
	mu      sync.Mutex
	out     io.Writer
	title   string
	total   int
	json    bool
	tty     bool
	running map[string]time.Time
	done    int
	failed  int
	stop    chan struct{}
	stopped chan struct{}
	// width is the terminal's width now (it may change while drawing).
	width func() int
}

// termWidth is the width of the terminal w is, or 80.
func termWidth(w io.Writer) func() int {
	return func() int {
		if f, ok := w.(*os.File); ok {
			if cols, _, err := term.GetSize(int(f.Fd())); err == nil && cols > 0 {
				return cols
			}
		}
		return 80
	}
}

// fit cuts line to fewer than width columns, so that "\r" then "erase
// line" overwrite all of it: a line that wraps leaves a copy of its first
// rows on every redraw.
func fit(line string, width int) string {
	if width < 2 {
		return ""
	}
	r := []rune(line)
	if len(r) < width {
		return line
	}
	return string(r[:width-2]) + "…"
}

// NewProgress starts showing an operation on total hosts.
func NewProgress(out io.Writer, title string, total int, jsonOut bool) *Progress {
	p := &Progress{out: out, title: title, total: total, json: jsonOut, tty: !jsonOut && IsTerminal(out),
		running: map[string]time.Time{}, stop: make(chan struct{}), stopped: make(chan struct{}), width: termWidth(out)}
	if p.tty {
		go p.loop()
	} else {
		close(p.stopped)
	}
	return p
}

func (p *Progress) loop() {
	defer close(p.stopped)
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			p.mu.Lock()
			fmt.Fprint(p.out, "\r\033[K")
			p.mu.Unlock()
			return
		case <-t.C:
			p.mu.Lock()
			p.draw()
			p.mu.Unlock()
		}
	}
}

// draw writes the status line; p.mu is held.
func (p *Progress) draw() {
	type run struct {
		h string
		d time.Duration
	}
	var rs []run
	for h, t := range p.running {
		rs = append(rs, run{h, time.Since(t)})
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].d > rs[j].d })
	var slow []string
	for i, r := range rs {
		if i == 3 {
			break
		}
		slow = append(slow, fmt.Sprintf("%s %s", r.h, r.d.Round(time.Second)))
	}
	line := fmt.Sprintf("%s: %d/%d done, %d running, %d failed", p.title, p.done, p.total, len(p.running), p.failed)
	if len(slow) > 0 {
		line += " (" + strings.Join(slow, ", ") + ")"
	}
	width := 80
	if p.width != nil {
		width = p.width()
	}
	fmt.Fprint(p.out, "\r\033[K"+fit(line, width))
}

// Start notes that host started.
func (p *Progress) Start(host string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.running[host] = time.Now()
}

// Done notes that a host finished.
func (p *Progress) Done(r remote.Result) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.running, r.Host)
	p.done++
	if r.Status != remote.OK {
		p.failed++
	}
	switch {
	case p.json:
		b, _ := json.Marshal(r)
		fmt.Fprintf(p.out, "%s\n", b)
	case p.tty:
		if r.Status != remote.OK {
			fmt.Fprintf(p.out, "\r\033[K%s: %s: %s\n", r.Host, r.Status, firstLine(r.Error))
		}
		p.draw()
	default:
		fmt.Fprintf(p.out, "%s: %s (%s)%s\n", r.Host, r.Status, r.Duration.Round(time.Millisecond), suffix(r))
	}
}

func suffix(r remote.Result) string {
	switch {
	case r.Error != "":
		return ": " + firstLine(r.Error)
	case r.Note != "":
		return ": " + r.Note
	}
	return ""
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// Close stops the live display.
func (p *Progress) Close() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.stopped
}

// Summary is the JSON form of a recap.
type Summary struct {
	Operation   string          `json:"operation"`
	OK          int             `json:"ok"`
	Failed      []string        `json:"failed"`
	Unreachable []string        `json:"unreachable"`
	Skipped     []string        `json:"skipped"`
	Results     []remote.Result `json:"results"`
}

// Recap prints one line per host (status, duration, note or the error and
// the tail of its stderr) and returns the hosts that did not succeed.
func Recap(out io.Writer, title string, results []remote.Result, jsonOut bool) []string {
	s := Summary{Operation: title, Failed: []string{}, Unreachable: []string{}, Skipped: []string{}, Results: results}
	var bad []string
	for _, r := range results {
		switch r.Status {
		case remote.OK:
			s.OK++
		case remote.Failed:
			s.Failed = append(s.Failed, r.Host)
		case remote.Unreachable:
			s.Unreachable = append(s.Unreachable, r.Host)
		case remote.Skipped:
			s.Skipped = append(s.Skipped, r.Host)
		}
		if r.Status != remote.OK {
			bad = append(bad, r.Host)
		}
	}
	if jsonOut {
		b, _ := json.Marshal(s)
		fmt.Fprintf(out, "%s\n", b)
		return bad
	}
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "recap %s: %d ok, %d failed, %d unreachable, %d skipped\n", title, s.OK, len(s.Failed), len(s.Unreachable), len(s.Skipped))
	tw := tabwriter.NewWriter(&buf, 0, 4, 2, ' ', 0)
	for _, r := range results {
		msg := r.Note
		if r.Status != remote.OK {
			msg = firstLine(r.Error)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", r.Host, r.Status, r.Duration.Round(time.Millisecond), msg)
		if r.Status != remote.OK && r.Stderr != "" {
			for _, l := range strings.Split(r.Stderr, "\n") {
				fmt.Fprintf(tw, "  \t\t\t| %s\n", l)
			}
		}
	}
	tw.Flush()
	out.Write(buf.Bytes())
	return bad
}

// Prefixer writes whole lines to out, each prefixed, under a shared lock, so
// that the output of many hosts interleaves by line, never inside one.
type Prefixer struct {
	mu     *sync.Mutex
	out    io.Writer
	prefix string
	buf    []byte
}

// NewPrefixer returns a writer that prefixes each line with prefix.
func NewPrefixer(out io.Writer, mu *sync.Mutex, prefix string) *Prefixer {
	return &Prefixer{mu: mu, out: out, prefix: prefix}
}

func (w *Prefixer) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.mu.Lock()
		fmt.Fprintf(w.out, "%s%s\n", w.prefix, w.buf[:i])
		w.mu.Unlock()
		w.buf = w.buf[i+1:]
	}
	return len(p), nil
}

// Flush writes a last unterminated line.
func (w *Prefixer) Flush() {
	if len(w.buf) > 0 {
		w.mu.Lock()
		fmt.Fprintf(w.out, "%s%s\n", w.prefix, w.buf)
		w.mu.Unlock()
		w.buf = nil
	}
}

// HostOutput gives each host of an operation writers that prefix its
// lines with its name (padded to the longest), all sharing one lock.
type HostOutput struct {
	mu       sync.Mutex
	out, err io.Writer
	width    int
	ws       map[string][2]*Prefixer
}

// NewHostOutput returns the output of the named hosts on out and errw.
func NewHostOutput(out, errw io.Writer, names []string) *HostOutput {
	h := &HostOutput{out: out, err: errw, ws: map[string][2]*Prefixer{}}
	for _, n := range names {
		h.width = max(h.width, len(n))
	}
	return h
}

// Writers returns host's stdout and stderr.
func (h *HostOutput) Writers(host string) (io.Writer, io.Writer) {
	p := fmt.Sprintf("%-*s | ", h.width, host)
	o, e := NewPrefixer(h.out, &h.mu, p), NewPrefixer(h.err, &h.mu, p)
	h.mu.Lock()
	h.ws[host] = [2]*Prefixer{o, e}
	h.mu.Unlock()
	return o, e
}

// Flush writes host's last unterminated lines.
func (h *HostOutput) Flush(host string) {
	h.mu.Lock()
	ws, ok := h.ws[host]
	h.mu.Unlock()
	if ok {
		ws[0].Flush()
		ws[1].Flush()
	}
}

// HostCapture keeps each host's stdout and stderr (up to Limit bytes each;
// what comes after is dropped and counted) for output that is not shown
// line by line: JSON, one object per host.
type HostCapture struct {
	mu sync.Mutex
	ws map[string][2]*limitedBuffer
}

// CaptureLimit bounds what is kept of one stream of one host.
const CaptureLimit = 1 << 20

// NewHostCapture returns an empty capture.
func NewHostCapture() *HostCapture { return &HostCapture{ws: map[string][2]*limitedBuffer{}} }

// Writers returns host's stdout and stderr.
func (h *HostCapture) Writers(host string) (io.Writer, io.Writer) {
	o, e := &limitedBuffer{}, &limitedBuffer{}
	h.mu.Lock()
	h.ws[host] = [2]*limitedBuffer{o, e}
	h.mu.Unlock()
	return o, e
}

// Take returns and forgets what host wrote.
func (h *HostCapture) Take(host string) (stdout, stderr string) {
	h.mu.Lock()
	ws, ok := h.ws[host]
	delete(h.ws, host)
	h.mu.Unlock()
	if !ok {
		return "", ""
	}
	return ws[0].String(), ws[1].String()
}

type limitedBuffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	dropped int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(p) // all of it is taken: what is past the limit is dropped, not refused
	room := max(CaptureLimit-l.b.Len(), 0)
	if room < len(p) {
		l.dropped += len(p) - room
		p = p[:room]
	}
	l.b.Write(p)
	return n, nil
}

func (l *limitedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.dropped > 0 {
		return l.b.String() + fmt.Sprintf("\n[booted: %d more bytes dropped]\n", l.dropped)
	}
	return l.b.String()
}

// HostLine is one host of an operation as a JSON line: its result, with
// all it wrote to stdout and stderr.
type HostLine struct {
	remote.Result
	Stdout string `json:"stdout"`
	Stderr string `json:"stderr"`
}
