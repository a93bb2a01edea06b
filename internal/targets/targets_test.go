package targets

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	sess "booted/internal/session"

	"golang.org/x/crypto/ssh"

	"booted/internal/bootlog"
	"booted/internal/settings"
	"booted/internal/testutil"
)

type fixture struct {
	proj *testutil.Project
	r    *Runner
	out  *testutil.SyncBuffer
}

func newFixture(t *testing.T, body testutil.EnvFile) *fixture {
	t.Helper()
	testutil.RequireLocalHosts(t)
	proj := testutil.NewProject(t, body)
	out := &testutil.SyncBuffer{}
	return &fixture{proj: proj, out: out, r: newRunner(proj.Root, proj.Inventory, out, testWriter{t})}
}

// newRunner is a Runner with the default settings, on a project root.
func newRunner(root, inventory string, out, errw io.Writer) *Runner {
	s, err := settings.From(func(string) string { return "" })
	if err != nil {
		panic(err)
	}
	s.Root, s.Inventory = root, inventory
	return &Runner{sess.Options{Settings: s, Out: out, Err: errw}}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func (f *fixture) hosts(t *testing.T) map[string]hostRow {
	t.Helper()
	return f.hostsOf(t, f.proj.Env)
}

// hostsOf returns the inventory of an environment by host name.
func (f *fixture) hostsOf(t *testing.T, env string) map[string]hostRow {
	t.Helper()
	// A runner of its own: a monitor daemon may be running on f.r at the same
	// time, printing to f.out and reading f.r's settings.
	r := *f.r
	var out testutil.SyncBuffer
	r.JSON, r.Out = true, &out
	if err := r.HostsList(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	var rows []hostRow
	if err := unmarshalRows(out.Bytes(), &rows); err != nil {
		t.Fatalf("hosts:list JSON: %v\n%s", err, &out)
	}
	m := map[string]hostRow{}
	for _, r := range rows {
		m[r.Name] = r
	}
	return m
}

func (f *fixture) must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%v\noutput:\n%s", err, f.out)
	}
}

// The first check: start three hosts, hosts:reset lists them ready
// with their addresses, and plain ssh works with strict host key checking
// against inventory/ENV/known_hosts.
func TestTargets_StartResetSSH(t *testing.T) {
	f := newFixture(t, testutil.DefaultEnv)
	ctx := context.Background()
	f.must(t, f.r.ImageStart(ctx, f.proj.Env, "w1"))
	f.must(t, f.r.ImageStart(ctx, f.proj.Env, "w2,lb1"))
	f.must(t, f.r.HostsReset(ctx, f.proj.Env))
	hosts := f.hosts(t)
	if len(hosts) != 3 {
		t.Fatalf("hosts: %+v", hosts)
	}
	for _, n := range []string{"w1", "w2", "lb1"} {
		h := hosts[n]
		if h.State != "ready" || h.IP == "" || !strings.HasPrefix(h.HostKey, "ssh-ed25519 ") {
			t.Errorf("%s: %+v", n, h)
		}
	}
	if hosts["lb1"].Role != "loadbalancers" || hosts["w1"].Role != "workers" {
		t.Errorf("roles: %+v", hosts)
	}
	dir := filepath.Join(f.proj.Inventory, f.proj.Env)
	out, err := exec.Command("ssh", "-o", "UserKnownHostsFile="+filepath.Join(dir, "known_hosts"), "-o", "StrictHostKeyChecking=yes",
		"-o", "BatchMode=yes", "-o", "GlobalKnownHostsFile=/dev/null", "-i", filepath.Join(dir, "id_ed25519"),
		"root@"+hosts["w2"].IP, "hostname").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "w2" {
		t.Fatalf("ssh: %v: %s", err, out)
	}
	for _, p := range []string{"id_ed25519"} {
		if st, err := os.Stat(filepath.Join(dir, p)); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v %v", p, st.Mode().Perm(), err)
		}
	}

	// A callback with a wrong token, sent from inside a host, makes no host.
	ns := "booted-" + f.proj.Env + "-w1"
	forged := bootlog.Query("w3", strings.Repeat("ab", 32), mustKey(t, hosts["w1"].HostKey))
	if out, err := exec.Command("ip", "netns", "exec", ns, "curl", "-fsS", "http://"+f.proj.Gateway+":8077/booted/?"+forged).CombinedOutput(); err != nil {
		t.Fatalf("curl from w1: %v: %s", err, out)
	}
	f.out.Reset()
	f.must(t, f.r.HostsLogged(ctx, f.proj.Env))
	// (By the inventory: the table's host keys are random text, "w3" in
	// one of them failed a run once.)
	if h, ok := f.hosts(t)["w3"]; ok {
		t.Errorf("forged callback made a host: %+v\n%s", h, f.out)
	}
	if !strings.Contains(f.out.String(), "rejected callbacks: 1 (forged 1,") {
		t.Errorf("rejected count not shown:\n%s", f.out)
	}

	// Stop, start again, delete.
	f.must(t, f.r.ImageStop(ctx, f.proj.Env, "w1"))
	if h := f.hosts(t)["w1"]; h.State != "stopped" {
		t.Errorf("after image:stop: %+v", h)
	}
	f.must(t, f.r.HostsFilter(ctx, f.proj.Env))
	if h := f.hosts(t)["w1"]; h.State != "stopped" {
		t.Errorf("hosts:filter touched a stopped host: %+v", h)
	}
	// nginx:restart starts a new boot log and keeps the old one; the next
	// boot's phone-home lands in the new log and is found there.
	f.out.Reset()
	f.must(t, f.r.NginxRestart(ctx, f.proj.Env))
	rotated, _ := filepath.Glob(filepath.Join(dir, "booted.log.*"))
	if len(rotated) != 1 || !strings.Contains(f.out.String(), "previous boot log kept as "+rotated[0]) {
		t.Errorf("nginx:restart: rotated logs %v, output:\n%s", rotated, f.out)
	}
	f.must(t, f.r.ImageStart(ctx, f.proj.Env, "w1"))
	f.must(t, f.r.HostsLogged(ctx, f.proj.Env))
	f.must(t, f.r.HostsFilter(ctx, f.proj.Env))
	if h := f.hosts(t)["w1"]; h.State != "ready" {
		t.Errorf("after a second boot: %+v", h)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "booted.log")); !strings.Contains(string(b), "name=w1") {
		t.Errorf("w1's second phone-home is not in the new boot log:\n%s", b)
	}
	f.must(t, f.r.ImageDel(ctx, f.proj.Env, "w1"))
	if h := f.hosts(t)["w1"]; h.State != "terminated" {
		t.Errorf("after image:del: %+v", h)
	}
	if _, err := os.Stat("/run/netns/" + ns); err == nil {
		t.Error("namespace left after image:del")
	}
	f.r.JSON = true
	f.out.Reset()
	f.must(t, f.r.ImageList(ctx, f.proj.Env))
	var imgs []imageRow
	if err := unmarshalRows(f.out.Bytes(), &imgs); err != nil || len(imgs) != 2 {
		t.Errorf("image:list after del: %v %s", err, f.out)
	}
}

// A host that never phones home becomes failed after the boot timeout.
func TestTargets_BootTimeout(t *testing.T) {
	f := newFixture(t, testutil.EnvFile(strings.Replace(string(testutil.DefaultEnv), "boot: 20s", "boot: 1s", 1)))
	os.WriteFile(filepath.Join(f.proj.Root, "kickstart", "phone-home.sh.tmpl"), []byte("#!/bin/sh\n# broken image: never calls\nexit 0\n"), 0o644)
	ctx := context.Background()
	f.must(t, f.r.ImageStart(ctx, f.proj.Env, "w1"))
	f.must(t, f.r.HostsLogged(ctx, f.proj.Env))
	h := f.hosts(t)["w1"]
	if h.State != "failed" || !strings.Contains(h.Reason, "no phone-home within 1s") {
		t.Errorf("w1: %+v", h)
	}
}

func TestTargets_BadEnvIsExplained(t *testing.T) {
	f := newFixture(t, testutil.DefaultEnv)
	err := f.r.HostsList(context.Background(), "nope")
	if err == nil || !strings.Contains(err.Error(), "nope.yaml does not exist") {
		t.Errorf("err = %v", err)
	}
	os.WriteFile(filepath.Join(f.proj.Root, "envs", "bad.yaml"), []byte("version: 1\nprovider: {type: vbox}\nroles: {}\n"), 0o644)
	err = f.r.ImageStart(context.Background(), "bad", "w1")
	if err == nil || !strings.Contains(err.Error(), "bad.yaml:2: provider.vbox: missing") {
		t.Errorf("err = %v", err)
	}
}

func mustKey(t *testing.T, authorized string) ssh.PublicKey {
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(authorized))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// A host the env file moves to another role, started again, is recorded
// in its new role (the inventory kept the old one).
func TestTargets_RoleFollowsEnvFile(t *testing.T) {
	f := newFixture(t, testutil.DefaultEnv)
	ctx := context.Background()
	f.must(t, f.r.ImageStart(ctx, f.proj.Env, "w2"))
	f.must(t, f.r.HostsLogged(ctx, f.proj.Env))
	f.must(t, f.r.ImageDel(ctx, f.proj.Env, "w2"))
	f.proj.WriteEnv(t, "timeouts: {boot: 20s, ssh: 5s, ping: 1s}\nroles:\n  loadbalancers: {hosts: [lb1], min: 1, max: 1}\n  workers: {hosts: [w1], min: 1, max: 1}\n  batch: {hosts: [w2], min: 1, max: 1}\n")
	f.must(t, f.r.ImageStart(ctx, f.proj.Env, "w2"))
	if h := f.hosts(t)["w2"]; h.Role != "batch" {
		t.Errorf("w2 after the env file moved it to role batch: %+v", h)
	}
}

// unmarshalRows decodes a listing's BOOTED_OUTPUT=json (JSON lines: one
// row per line) into the slice v points to; a line that is not one whole
// JSON value is an error.
func unmarshalRows(data []byte, v any) error {
	sv := reflect.ValueOf(v).Elem()
	sv.Set(reflect.MakeSlice(sv.Type(), 0, 0))
	for i, l := range strings.Split(string(data), "\n") {
		if strings.TrimSpace(l) == "" {
			continue
		}
		x := reflect.New(sv.Type().Elem())
		if err := json.Unmarshal([]byte(l), x.Interface()); err != nil {
			return fmt.Errorf("line %d %q: %w", i+1, l, err)
		}
		sv.Set(reflect.Append(sv, x.Elem()))
	}
	return nil
}

// hostRow is a line of hosts:list's JSON.
type hostRow = sess.HostRow

// imageRow is a line of image:list's JSON.
type imageRow = sess.ImageRow
