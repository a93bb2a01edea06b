package transfer_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"booted/internal/conductor"
	"booted/internal/config"
	"booted/internal/files"
	"booted/internal/fleet"
	"booted/internal/inventory"
	"booted/internal/jobs"
	"booted/internal/remote"
	"booted/internal/transfer"
)

type conn struct {
	fleet.Conn
	h    inventory.Host
	put  int64
	note string
}

func (c *conn) Host() inventory.Host { return c.h }
func (c *conn) Note(m string)        { c.note = m }
func (c *conn) Put(_ context.Context, p files.PutSpec) (int64, files.Placed, error) {
	return c.put, files.Placed{SHA256: p.Src.SHA256}, nil
}

// Each host's note says what it got; the job a site's host would get
// carries the file's SHA-256 and mode.
func TestPut_NotesWhatEachGot(t *testing.T) {
	src := filepath.Join(t.TempDir(), "motd")
	os.WriteFile(src, []byte("hello\n"), 0o640)
	conns := []*conn{{h: inventory.Host{Name: "w1"}, put: 6}, {h: inventory.Host{Name: "w2"}}}
	var job *conductor.Job
	x := &transfer.Hosts{Env: &config.Env{Name: "e"}, Op: func(ctx context.Context, title string, hosts []inventory.Host, o jobs.Op, step jobs.Step) ([]remote.Result, error) {
		job = o.Job
		for _, c := range conns {
			if err := step(ctx, c); err != nil {
				return nil, err
			}
		}
		return nil, nil
	}}
	if err := x.Put(context.Background(), nil, src, "/tmp/motd"); err != nil {
		t.Fatal(err)
	}
	if conns[0].note != "copied 6 bytes to /tmp/motd" || conns[1].note != "unchanged: /tmp/motd has that content already" {
		t.Fatalf("notes %q, %q", conns[0].note, conns[1].note)
	}
	var a struct {
		SHA256 string      `json:"sha256"`
		Mode   os.FileMode `json:"mode"`
	}
	json.Unmarshal(job.Args, &a)
	if job.Kind != "put" || a.SHA256 != "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03" || a.Mode != 0o640 {
		t.Fatalf("job %s %s", job.Kind, job.Args)
	}
}

// A file a conductor read on a site's host is written to DIR/HOST/NAME
// with its mode, once: the same content again is "unchanged".
func TestGet_Conducted(t *testing.T) {
	dir := t.TempDir()
	x := &transfer.Hosts{Env: &config.Env{Name: "e"}, Op: func(ctx context.Context, title string, hosts []inventory.Host, o jobs.Op, step jobs.Step) ([]remote.Result, error) {
		var out []remote.Result
		for _, h := range hosts {
			data, _ := json.Marshal(map[string]any{"content": []byte("secret\n"), "mode": 0o600})
			r := remote.Result{Host: h.Name, Status: remote.OK}
			o.Conducted(ctx, h, conductor.Result{Host: h.Name, Conductor: "c1", Data: data}, &r)
			out = append(out, r)
		}
		return out, nil
	}}
	// each result's note, as the recap shows it
	var got []string
	op := x.Op
	x.Op = func(ctx context.Context, title string, hosts []inventory.Host, o jobs.Op, step jobs.Step) ([]remote.Result, error) {
		res, err := op(ctx, title, hosts, o, step)
		for _, r := range res {
			got = append(got, r.Note)
		}
		return res, err
	}
	for i := 0; i < 2; i++ {
		if err := x.Get(context.Background(), []inventory.Host{{Name: "s1"}}, "/root/notes", dir); err != nil {
			t.Fatal(err)
		}
	}
	dst := filepath.Join(dir, "s1", "notes")
	b, err := os.ReadFile(dst)
	st, _ := os.Stat(dst)
	if err != nil || string(b) != "secret\n" || st.Mode().Perm() != 0o600 {
		t.Fatalf("%s: %q %v %v", dst, b, st.Mode(), err)
	}
	if len(got) != 2 || got[0] != "copied 7 bytes to "+dst+" (conductor c1)" || !strings.HasPrefix(got[1], "unchanged: ") {
		t.Fatalf("notes %q", got)
	}
}

// A conductor that says a fetched file is set-uid gets its permission
// bits kept, not the set-uid bit: nothing a host says makes a set-id file
// on the controller.
func TestGet_ModeIsPermissionsOnly(t *testing.T) {
	dir := t.TempDir()
	x := &transfer.Hosts{Env: &config.Env{Name: "e"}, Op: func(ctx context.Context, title string, hosts []inventory.Host, o jobs.Op, step jobs.Step) ([]remote.Result, error) {
		data, _ := json.Marshal(map[string]any{"content": []byte("#!/bin/sh\n"), "mode": os.ModeSetuid | os.ModeSetgid | 0o755})
		r := remote.Result{Host: "s1", Status: remote.OK}
		o.Conducted(ctx, hosts[0], conductor.Result{Host: "s1", Conductor: "c1", Data: data}, &r)
		return []remote.Result{r}, nil
	}}
	if err := x.Get(context.Background(), []inventory.Host{{Name: "s1"}}, "/root/tool", dir); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, "s1", "tool"))
	if err != nil || st.Mode() != 0o755 {
		t.Fatalf("fetched file: %v %v, want -rwxr-xr-x", st.Mode(), err)
	}
}

// A put job whose checksum is not a SHA-256 is refused before anything
// is fetched.
func TestPutJob_RefusesBadSum(t *testing.T) {
	mk, ok := jobs.Lookup("put")
	if !ok {
		t.Fatal("no put job")
	}
	if _, err := mk(nil, context.Background(), nil, conductor.Job{Kind: "put", Args: json.RawMessage(`{"sha256":"../../etc"}`)}); err == nil || !strings.Contains(err.Error(), "not 64 hex digits") {
		t.Fatalf("put job with a bad sum: %v", err)
	}
}
