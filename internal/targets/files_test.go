package targets

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"booted/internal/report"
	"booted/internal/testutil"
)

// hosts:put and hosts:get, as Fabric's put and get, over SFTP on real
// hosts: the file lands on each host with its content and mode, hashed
// once; a second put or get copies nothing ("unchanged"), a second put
// reading neither the local file nor the hosts' (one stat per host), unless
// a host's file changed or BOOTED_VERIFY=1; get writes DIR/HOST/NAME; a
// source that does not exist is refused before any host is touched.
func TestTargets_PutGet(t *testing.T) {
	f := newFixture(t, testutil.DefaultEnv)
	ctx := context.Background()
	env := f.proj.Env
	f.must(t, f.r.ImageStart(ctx, env, "w1,w2"))
	f.must(t, f.r.HostsLogged(ctx, env))
	src := filepath.Join(t.TempDir(), "app.conf")
	os.WriteFile(src, []byte("port = 8080\n"), 0o640)

	notes := func() map[string]string {
		t.Helper()
		m := map[string]string{}
		for _, l := range strings.Split(strings.TrimSpace(f.out.String()), "\n") {
			var hl report.HostLine
			if json.Unmarshal([]byte(l), &hl) == nil && hl.Host != "" {
				m[hl.Host] = string(hl.Status) + ": " + hl.Note
			}
		}
		return m
	}
	f.r.JSON = true
	defer func() { f.r.JSON = false }()
	f.out.Reset()
	srcOpens := testutil.Opens(t, src)
	f.must(t, f.r.HostsPut(ctx, env, src, "/opt/app.conf"))
	if n := notes(); !strings.HasPrefix(n["w1"], "ok: copied 12 bytes") || !strings.HasPrefix(n["w2"], "ok: copied 12 bytes") {
		t.Errorf("the first put: %v", n)
	}
	// hashed once for both hosts, then read once per copy (the old code
	// hashed it once more per host: 5 opens)
	if n := srcOpens(); n != 3 {
		t.Errorf("the first put to 2 hosts opened %s %d times; want 3 (one hash, two copies)", src, n)
	}
	onHost := map[string]string{}
	for _, w := range []string{"w1", "w2"} {
		p := filepath.Join(f.proj.Inventory, env, "hosts", w, "fs", "opt", "app.conf")
		onHost[w] = p
		if b, err := os.ReadFile(p); err != nil || string(b) != "port = 8080\n" {
			t.Errorf("%s: /opt/app.conf = %q %v", w, b, err)
		} else if st, _ := os.Stat(p); st.Mode().Perm() != 0o640 {
			t.Errorf("%s: /opt/app.conf mode %v, want 0640", w, st.Mode().Perm())
		}
	}
	// The same put again: neither the local file nor the hosts' files
	// are read (one stat each against what booted recorded putting there).
	w1Opens, w2Opens := testutil.Opens(t, onHost["w1"]), testutil.Opens(t, onHost["w2"])
	f.out.Reset()
	f.must(t, f.r.HostsPut(ctx, env, src, "/opt/app.conf"))
	if n := notes(); !strings.HasPrefix(n["w1"], "ok: unchanged") || !strings.HasPrefix(n["w2"], "ok: unchanged") {
		t.Errorf("the second put: %v", n)
	}
	if a, b, c := srcOpens(), w1Opens(), w2Opens(); a+b+c != 0 {
		t.Errorf("an unchanged put opened the local file %d times, w1's %d, w2's %d; want none read", a, b, c)
	}
	// Changed behind booted's back (same size, its time set back): one
	// stat sees it, and that host alone gets the file again.
	if err := os.WriteFile(onHost["w1"], []byte("port = 9090\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(onHost["w2"]); err == nil {
		os.Chtimes(onHost["w1"], st.ModTime(), st.ModTime())
	}
	f.out.Reset()
	f.must(t, f.r.HostsPut(ctx, env, src, "/opt/app.conf"))
	if n := notes(); !strings.HasPrefix(n["w1"], "ok: copied 12 bytes") || !strings.HasPrefix(n["w2"], "ok: unchanged") {
		t.Errorf("the put after w1's file changed behind booted's back: %v", n)
	}
	if b, _ := os.ReadFile(onHost["w1"]); string(b) != "port = 8080\n" {
		t.Errorf("w1: /opt/app.conf = %q after the put", b)
	}
	// BOOTED_VERIFY=1: each host's file is read to be sure.
	f.r.Verify = true
	w1Opens, w2Opens = testutil.Opens(t, onHost["w1"]), testutil.Opens(t, onHost["w2"])
	f.out.Reset()
	f.must(t, f.r.HostsPut(ctx, env, src, "/opt/app.conf"))
	f.r.Verify = false
	if n := notes(); !strings.HasPrefix(n["w1"], "ok: unchanged") || !strings.HasPrefix(n["w2"], "ok: unchanged") {
		t.Errorf("the put with BOOTED_VERIFY=1: %v", n)
	}
	if a, b := w1Opens(), w2Opens(); a != 1 || b != 1 {
		t.Errorf("BOOTED_VERIFY=1 read w1's file %d times, w2's %d; want once each", a, b)
	}

	dir := t.TempDir()
	f.out.Reset()
	key := "/etc/ssh/ssh_host_ed25519_key.pub" // each host's own
	f.must(t, f.r.HostsGet(ctx, env, key, dir))
	for _, w := range []string{"w1", "w2"} {
		if b, err := os.ReadFile(filepath.Join(dir, w, "ssh_host_ed25519_key.pub")); err != nil || !strings.HasSuffix(string(b), " root@"+w+"\n") {
			t.Errorf("get: %s/ssh_host_ed25519_key.pub = %q %v", w, b, err)
		}
	}
	f.out.Reset()
	f.must(t, f.r.HostsGet(ctx, env, key, dir))
	if n := notes(); !strings.HasPrefix(n["w1"], "ok: unchanged") {
		t.Errorf("the second get: %v", n)
	}
	f.out.Reset()
	if err := f.r.HostsGet(ctx, env, "/nonexistent", dir); err == nil || !strings.Contains(f.out.String(), "no such file on the host") {
		t.Errorf("get of a file no host has: %v %s", err, f.out)
	}
	if err := f.r.HostsPut(ctx, env, filepath.Join(dir, "missing"), "/opt/x"); err == nil || !strings.Contains(err.Error(), "missing: no such file") {
		t.Errorf("put of a missing file: %v", err)
	}
}

// service:logs prints each host's service log, prefixed by host; with
// BOOTED_FOLLOW=1 a line written meanwhile shows up, and Ctrl-C (the
// context ending) ends it cleanly.
func TestTargets_ServiceLogs(t *testing.T) {
	f := newFixture(t, testutil.ServiceEnv)
	f.proj.GitInit(t, "v1")
	ctx := context.Background()
	env := f.proj.Env
	f.must(t, f.r.EnvStartAll(ctx, env))
	f.out.Reset()
	f.must(t, f.r.ServiceLogs(ctx, env, "hello"))
	for _, w := range []string{"w1", "w2"} {
		if !regexp.MustCompile(`(?m)^` + w + ` \| .*hello v1 listening on`).MatchString(f.out.String()) {
			t.Errorf("no log line of %s:\n%s", w, f.out)
		}
	}
	f.followLog(t, env+"/workers", "w2", 10*time.Second)
}

// followLog runs service:logs with BOOTED_FOLLOW=1 on sel until host's
// lines show, writes a line to host's log, waits up to wait for it to be
// shown, then ends it as Ctrl-C does: it must end cleanly within 15 s.
func (f *fixture) followLog(t *testing.T, sel, host string, wait time.Duration) {
	t.Helper()
	f.r.Follow = true
	defer func() { f.r.Follow = false }()
	f.out.Reset()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, 1)
	go func() { done <- f.r.ServiceLogs(ctx, sel, "hello") }()
	f.waitFor(t, "the logs shown", wait, func() bool { return strings.Contains(f.out.String(), host+" | ") })
	logFile := filepath.Join(f.proj.Inventory, f.proj.Env, "hosts", host, "fs", "var-log", "booted", "hello.log")
	lf, err := os.OpenFile(logFile, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	lf.WriteString("a line written while following\n")
	lf.Close()
	f.waitFor(t, "the new line followed", wait, func() bool { return strings.Contains(f.out.String(), host+" | a line written while following") })
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("service:logs ended by Ctrl-C: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("service:logs did not end after Ctrl-C")
	}
}
