package controller_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"booted/internal/bootlog"
	"booted/internal/controller"
	"booted/internal/testutil"
)

func TestRender_Golden(t *testing.T) {
	c := &controller.Controller{
		Env: "local", Listen: "10.77.0.1:8077", Dir: "/srv/inventory/local/nginx",
		BootLog: "/srv/inventory/local/booted.log", KickstartDir: "/srv/inventory/local/kickstart",
		Template: filepath.Join(testutil.RepoRoot(t), "nginx", "controller.conf.tmpl"),
	}
	got, err := c.Render()
	if err != nil {
		t.Fatal(err)
	}
	testutil.Golden(t, filepath.Join("testdata", "controller.conf.golden"), got)
}

func newController(t *testing.T) *controller.Controller {
	testutil.RequireLocalHosts(t)
	p := testutil.NewProject(t, testutil.DefaultEnv)
	c := p.Controller(t)
	c.Listen = testutil.FreePort(t) // loopback: this test needs no hosts
	t.Cleanup(func() { c.Stop(context.Background()) })
	return c
}

func get(t *testing.T, c *controller.Controller, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + c.Listen + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// logLines returns the lines of the log once it has at least want of them
// (nginx writes a line after it has answered), or after 3 s.
func logLines(t *testing.T, path string, want int) []string {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		l := readLines(t, path)
		if len(l) >= want || time.Now().After(deadline) {
			return l
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

// Ensure that whatever a client sends, each callback is one valid JSON line
// that keeps the arguments as sent, and that kickstart files are served.
func TestController_LogCannotBeBroken(t *testing.T) {
	c := newController(t)
	ctx := context.Background()
	if err := c.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	// A raw request line no HTTP library would send.
	conn, err := net.Dial("tcp", c.Listen)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "GET /booted/?name=\"},{\"x\\\"\x01&token=\xff HTTP/1.0\r\n\r\n")
	io.ReadAll(conn)
	conn.Close()
	nasty := []string{`a"b`, `c\d`, "e\nf", "g\x00h", "\xff\xfe", `{"time":"x"}`, strings.Repeat("z", 3000)}
	for _, n := range nasty {
		code, _ := get(t, c, "/booted/?name="+url.QueryEscape(n)+"&token=t")
		if code != 200 {
			t.Fatalf("callback answered %d", code)
		}
	}
	lines := logLines(t, c.BootLog, len(nasty))
	if len(lines) < len(nasty) {
		t.Fatalf("%d lines for %d callbacks:\n%s", len(lines), len(nasty), strings.Join(lines, "\n"))
	}
	for i, l := range lines {
		var rec map[string]string
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("line %d is not JSON: %v\n%s", i, err, l)
		}
		if j := i - (len(lines) - len(nasty)); j >= 0 {
			i := j
			q, _ := url.ParseQuery(rec["args"])
			if q.Get("name") != strings.ToValidUTF8(nasty[i], "\uFFFD") && q.Get("name") != nasty[i] {
				t.Errorf("line %d: name %q, sent %q", i, q.Get("name"), nasty[i])
			}
		}
		if _, err := bootlog.ParseLine([]byte(l)); err == nil {
			t.Errorf("line %d parsed as a callback without a key", i)
		}
	}
	os.WriteFile(filepath.Join(c.KickstartDir, "w1.ks"), []byte("text\n"), 0o644)
	if code, body := get(t, c, "/kickstart/w1.ks"); code != 200 || body != "text\n" {
		t.Errorf("kickstart: %d %q", code, body)
	}
	if code, _ := get(t, c, "/etc/passwd"); code != 404 {
		t.Errorf("other paths answer %d, want 404", code)
	}
}

// Ensure a restart keeps the old log under a timestamped name, starts a new
// one, and that a configuration failing nginx -t is never applied.
func TestController_RestartAndBadConfig(t *testing.T) {
	c := newController(t)
	ctx := context.Background()
	c.Now = func() time.Time { return time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC) }
	if _, err := c.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	pid := c.PID()
	get(t, c, "/booted/?name=before")
	logLines(t, c.BootLog, 1)
	old, err := c.Restart(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := c.BootLog + ".20261122T100000.000000000Z"; old != want {
		t.Errorf("rotated to %q, want %q", old, want)
	}
	get(t, c, "/booted/?name=after")
	if l := logLines(t, old, 1); len(l) != 1 || !strings.Contains(l[0], "before") {
		t.Errorf("old log holds %q", l)
	}
	if l := logLines(t, c.BootLog, 1); len(l) != 1 || !strings.Contains(l[0], "after") {
		t.Errorf("new log holds %q", l)
	}
	if c.PID() != pid {
		t.Errorf("restart replaced the master (pid %d → %d); callbacks would be refused meanwhile", pid, c.PID())
	}
	conf, _ := os.ReadFile(filepath.Join(c.Dir, "nginx.conf"))
	bad := filepath.Join(t.TempDir(), "bad.tmpl")
	src, _ := os.ReadFile(c.Template)
	os.WriteFile(bad, bytes.Replace(src, []byte("worker_connections 1024;"), []byte("worker_connections 1024; no_such_directive on;"), 1), 0o644)
	c.Template = bad
	if _, err := c.Restart(ctx); err == nil || !strings.Contains(err.Error(), "nginx -t") {
		t.Fatalf("bad configuration: err = %v", err)
	}
	now, _ := os.ReadFile(filepath.Join(c.Dir, "nginx.conf"))
	if !bytes.Equal(conf, now) {
		t.Error("a configuration that failed nginx -t replaced the good one")
	}
	if code, _ := get(t, c, "/booted/?name=still"); code != 200 {
		t.Errorf("nginx stopped serving after a refused configuration: %d", code)
	}
	if err := c.Stop(ctx); err != nil || c.PID() != 0 {
		t.Errorf("stop: %v, pid %d", err, c.PID())
	}
}

// Ensure the boot logs (the live one and those a restart keeps) stay
// root's and private, whoever nginx's workers are: another user can neither
// read a token in them nor append a forged line, before or after
// nginx:restart (nginx reopens its logs as the workers' user).
func TestController_LogsStayPrivate(t *testing.T) {
	c := newController(t)
	ctx := context.Background()
	if err := c.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	get(t, c, "/booted/?name=w1&token=secret")
	logLines(t, c.BootLog, 1)
	old, err := c.Restart(ctx)
	if err != nil {
		t.Fatal(err)
	}
	get(t, c, "/booted/?name=w2&token=secret")
	logLines(t, c.BootLog, 1)
	for _, p := range []string{c.BootLog, old, filepath.Dir(c.BootLog)} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		want := os.FileMode(0o600)
		if st.IsDir() {
			want = 0o700
		}
		if st.Mode().Perm() != want || st.Sys().(*syscall.Stat_t).Uid != 0 {
			t.Errorf("%s: mode %v uid %d, want %v and root", p, st.Mode().Perm(), st.Sys().(*syscall.Stat_t).Uid, want)
		}
		if st.IsDir() {
			continue
		}
		for _, sh := range []string{"cat " + p, "echo forged >> " + p} {
			if out, err := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c", sh).CombinedOutput(); err == nil {
				t.Errorf("user nobody ran %q: %s", sh, out)
			}
		}
	}
	// the workers write the log as root
	b, _ := os.ReadFile(c.BootLog)
	if strings.Contains(string(b), "forged") {
		t.Error("a forged line made it into the boot log")
	}
}

// A running nginx reads the bare-metal seeds' access list again when it
// changes (a node moved to another address must get its kickstart).
func TestController_ReloadsSeedAccess(t *testing.T) {
	c := newController(t)
	ctx := context.Background()
	if err := c.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	if code, _ := get(t, c, "/metal/probe"); code != http.StatusNotFound {
		t.Fatalf("/metal/probe before: %d", code)
	}
	seeds := filepath.Join(filepath.Dir(c.KickstartDir), "metal", "seeds.conf")
	if err := os.WriteFile(seeds, []byte("location = /metal/probe {\n\treturn 200 \"seeded\";\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pid := c.PID()
	if err := c.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second) // the reload is nginx's, asynchronous
	for {
		code, body := get(t, c, "/metal/probe")
		if code == 200 && body == "seeded" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metal/probe after the access list changed: %d %q", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if c.PID() != pid {
		t.Errorf("nginx was restarted (pid %d, was %d), not reloaded", c.PID(), pid)
	}
	// A broken list is refused; the running one is kept.
	os.WriteFile(seeds, []byte("location {\n"), 0o600)
	if err := c.Ensure(ctx); err == nil || !strings.Contains(err.Error(), "fails nginx -t") {
		t.Errorf("a broken access list: %v", err)
	}
	if code, body := get(t, c, "/metal/probe"); code != 200 || body != "seeded" {
		t.Errorf("after a refused list: %d %q", code, body)
	}
}

// A flood of callbacks from one address is bounded: past a burst of 50 and
// 5 a second, nginx answers 429 and writes nothing to the boot log (before,
// every request became a line); failure and install reports count with
// them. This machine itself (127.0.0.1) is not limited.
func TestController_CallbacksRateLimited(t *testing.T) {
	c := newController(t)
	if err := c.Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	from := func(src string) *http.Client {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
	}
	flood := func(cl *http.Client, n int) map[int]int {
		codes := map[int]int{}
		for i := range n {
			path := []string{"/booted/", "/booted/failed", "/booted/installed"}[i%3]
			resp, err := cl.Get(fmt.Sprintf("http://%s%s?name=flood%d&token=t", c.Listen, path, i))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 && string(b) != "ok\n" {
				t.Fatalf("a callback answered %q", b)
			}
			codes[resp.StatusCode]++
		}
		return codes
	}
	start := time.Now()
	codes := flood(from("127.0.0.2"), 300)
	allowed := 50 + 5*int(time.Since(start).Seconds()+1)
	if codes[200] > allowed || codes[429] < 300-allowed || codes[200]+codes[429] != 300 {
		t.Errorf("300 callbacks from 127.0.0.2 in %v: %v, want at most %d answered 200, the rest 429", time.Since(start), codes, allowed)
	}
	time.Sleep(200 * time.Millisecond)
	logged := 0
	for _, l := range readLines(t, c.BootLog) {
		if strings.Contains(l, `"remote":"127.0.0.2"`) {
			logged++
		}
	}
	if logged != codes[200] {
		t.Errorf("%d lines in the boot log from 127.0.0.2, want %d (the callbacks answered 200 alone)", logged, codes[200])
	}
	if codes := flood(from("127.0.0.1"), 150); codes[200] != 150 {
		t.Errorf("150 callbacks from 127.0.0.1: %v, want all answered", codes)
	}
}

// The osimages' trees are served through no link but the one booted makes
// to each image: a file is served, a link in the tree (to a file of it, or
// out of it) is refused (before, nginx, as root, followed any link there).
func TestController_ImagesThroughNoLink(t *testing.T) {
	c := newController(t)
	if err := c.Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	// images/deb is booted's link to the image's directory, as the
	// bare-metal provider makes it
	img := t.TempDir()
	tree := filepath.Join(img, "tree")
	os.MkdirAll(tree, 0o755)
	os.MkdirAll(filepath.Join(filepath.Dir(c.KickstartDir), "metal", "images"), 0o700)
	os.Symlink(img, filepath.Join(filepath.Dir(c.KickstartDir), "metal", "images", "deb"))
	os.WriteFile(filepath.Join(tree, "vmlinuz"), []byte("kernel"), 0o644)
	os.Symlink("vmlinuz", filepath.Join(tree, "linux"))
	secret := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secret, []byte("the controller's"), 0o600)
	os.Symlink(secret, filepath.Join(tree, "evil"))
	if code, body := get(t, c, "/metal/images/deb/tree/vmlinuz"); code != 200 || body != "kernel" {
		t.Errorf("a file of the tree: %d %q", code, body)
	}
	for _, p := range []string{"linux", "evil"} {
		if code, body := get(t, c, "/metal/images/deb/tree/"+p); code == 200 || strings.Contains(body, "the controller's") || strings.Contains(body, "kernel") {
			t.Errorf("the link %s: %d %q, want it refused", p, code, body)
		}
	}
}
