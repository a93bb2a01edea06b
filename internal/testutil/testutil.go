// Package testutil holds helpers for booted's tests: a throw-away project
// root with its own environment (unique name, free subnet) whose hosts,
// bridge and nginx are removed when the test ends.
package testutil

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"booted/internal/config"
	"booted/internal/controller"
	"booted/internal/metadata"
	"booted/internal/provider/local"
	"booted/internal/testres"
)

// InCI reports whether the tests run in CI, where nothing may be skipped.
func InCI() bool { return os.Getenv("CI") != "" }

// RequireLocalHosts skips the test on a developer machine that cannot run
// local hosts (not root, or sshd, nginx, ip, curl or unshare missing), and
// fails it in CI, where it must run.
func RequireLocalHosts(t testing.TB) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (network namespaces and raw ICMP need it)")
	}
	for _, c := range []string{"/usr/sbin/sshd", "/usr/sbin/nginx", "ip", "curl", "unshare", "ssh-keygen"} {
		if _, err := exec.LookPath(c); err != nil {
			missing = append(missing, c)
		}
	}
	require(t, missing)
}

// RequireRoot skips the test when not run as root (fails it in CI), and
// when one of the commands is missing; why says what needs root.
func RequireRoot(t testing.TB, why string, cmds ...string) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root ("+why+")")
	}
	for _, c := range cmds {
		if _, err := exec.LookPath(c); err != nil {
			missing = append(missing, c)
		}
	}
	require(t, missing)
}

// RequireCommands skips the test on a developer machine that lacks one of
// the commands (fails it in CI).
func RequireCommands(t testing.TB, cmds ...string) {
	t.Helper()
	var missing []string
	for _, c := range cmds {
		if _, err := exec.LookPath(c); err != nil {
			missing = append(missing, c)
		}
	}
	require(t, missing)
}

// require fails the test in CI, and skips it elsewhere, saying what is missing.
func require(t testing.TB, missing []string) {
	t.Helper()
	if len(missing) == 0 {
		return
	}
	msg := fmt.Sprintf("needs %s; `go run mage.go test` as root installs the packages", strings.Join(missing, ", "))
	if InCI() {
		t.Fatalf("CI must run this test, but it %s", msg)
	}
	t.Skip("skipped: this machine lacks what it " + msg)
}

// RepoRoot returns the directory holding go.mod.
func RepoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Dir(file)
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found")
		}
		dir = parent
	}
}

// Project is a throw-away project root with one environment.
type Project struct {
	Root      string // envs/, kickstart/, nginx/
	Inventory string
	Env       string
	Subnet    string
	// Gateway is the bridge's address.
	Gateway string
}

// EnvFile is the body of the env file after its provider section; the
// provider section (local, with a free subnet) is written by NewProject.
type EnvFile string

// Workers is an env body with one load balancer (lb1) and workers w1..wMAX,
// count of them to start (min 1); the workers' section is last, so a
// body may go on with more of its keys.
func Workers(count, max int) EnvFile {
	return EnvFile(fmt.Sprintf(`timeouts:
  boot: 20s
  ssh: 5s
  ping: 1s
roles:
  loadbalancers:
    hosts: [lb1]
    min: 1
    max: 1
  workers:
    prefix: w
    count: %d
    min: 1
    max: %d
`, count, max))
}

// DefaultEnv has one load balancer and workers w1..w4 (count 2).
var DefaultEnv = Workers(2, 4)

// Hello is the workers' keys that make them run hello v1.
const Hello EnvFile = `    service: hello
    version: v1
`

// NewProject makes a project root in a temporary directory with a copy of
// the repository's kickstart/ and nginx/ templates, and an environment with
// a unique name on a free subnet. Hosts, bridge and nginx go when t ends.
func NewProject(t testing.TB, body EnvFile) *Project {
	t.Helper()
	return newProject(t, body, false)
}

// NewWideProject is NewProject on a /22 subnet (1,013 hosts).
func NewWideProject(t testing.TB, body EnvFile) *Project {
	t.Helper()
	return newProject(t, body, true)
}

func newProject(t testing.TB, body EnvFile, wide bool) *Project {
	t.Helper()
	repo := RepoRoot(t)
	root := t.TempDir()
	// nginx workers run unprivileged and must reach served files.
	os.Chmod(root, 0o711)
	os.Chmod(filepath.Dir(root), 0o711)
	for _, d := range []string{"kickstart", "nginx", "services"} {
		if _, err := os.Stat(filepath.Join(repo, d)); err != nil {
			continue
		}
		if out, err := exec.Command("cp", "-r", filepath.Join(repo, d), filepath.Join(root, d)).CombinedOutput(); err != nil {
			t.Fatalf("copy %s: %v: %s", d, err, out)
		}
	}
	os.MkdirAll(filepath.Join(root, "envs"), 0o755)
	b := make([]byte, 3)
	rand.Read(b)
	p := &Project{Root: root, Inventory: filepath.Join(root, "inventory"), Env: "t" + hex.EncodeToString(b)}
	// Claimed first, released last: a sweep by another run leaves it alone.
	release, err := testres.Claim(p.Env)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(release)
	h := fnv.New32a()
	h.Write([]byte(t.Name() + p.Env))
	seed := int(h.Sum32())
	ctx := context.Background()
	var lastErr error
	for i := 0; i < 40; i++ {
		n := (seed + i*7919) % 4000
		p.Subnet = fmt.Sprintf("10.%d.%d.0/24", 200+n/250, n%250)
		p.Gateway = fmt.Sprintf("10.%d.%d.1", 200+n/250, n%250)
		if wide { // 10.216.0.0 to 10.219.255.255, beside the /24s
			n %= 256
			p.Subnet = fmt.Sprintf("10.%d.%d.0/22", 216+n/64, n%64*4)
			p.Gateway = fmt.Sprintf("10.%d.%d.1", 216+n/64, n%64*4)
		}
		p.WriteEnv(t, body)
		env := p.Config(t)
		prov, err := local.New(env, filepath.Join(p.Inventory, p.Env, "hosts"))
		if err != nil {
			t.Fatal(err)
		}
		if lastErr = prov.Prepare(ctx); lastErr == nil {
			ctl := p.Controller(t)
			limit := 30 * time.Second
			if wide { // 1,000 hosts take minutes to tear down (namespaces)
				limit = 15 * time.Minute
			}
			t.Cleanup(func() { teardown(t, ctl, prov, limit) })
			return p
		}
	}
	t.Fatalf("no free subnet for the test environment: %v", lastErr)
	return nil
}

// WriteEnv (re)writes the env file with the given body.
func (p *Project) WriteEnv(t testing.TB, body EnvFile) {
	t.Helper()
	head := fmt.Sprintf("version: 1\nprovider:\n  type: local\n  local:\n    subnet: %s\ncallback:\n  retry: 30s\n", p.Subnet)
	if err := os.WriteFile(filepath.Join(p.Root, "envs", p.Env+".yaml"), []byte(head+string(body)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Config loads the environment.
func (p *Project) Config(t testing.TB) *config.Env {
	t.Helper()
	env, err := config.Load(filepath.Join(p.Root, "envs"), p.Env, config.ProviderFunc(local.Decode))
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// Controller returns the environment's controller nginx, as booted sets it up.
func (p *Project) Controller(t testing.TB) *controller.Controller {
	env := p.Config(t)
	dir := filepath.Join(p.Inventory, p.Env)
	return &controller.Controller{
		Env: p.Env, Listen: env.CallbackAddr(), Dir: filepath.Join(dir, "nginx"),
		BootLog: filepath.Join(dir, "booted.log"), KickstartDir: filepath.Join(dir, "kickstart"),
		Template: filepath.Join(p.Root, "nginx", "controller.conf.tmpl"),
	}
}

func teardown(t testing.TB, ctl *controller.Controller, prov *local.Provider, limit time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	if err := ctl.Stop(ctx); err != nil {
		t.Errorf("cleanup: stop nginx: %v", err)
	}
	if err := prov.Teardown(ctx); err != nil {
		t.Errorf("cleanup: %v", err)
	}
	if err := metadata.Unroute(ctx, ctl.Env); err != nil { // instances' metadata DNAT, if any
		t.Errorf("cleanup: %v", err)
	}
}

// ServiceEnv is DefaultEnv with the workers running hello v1.
var ServiceEnv = DefaultEnv + Hello

// GitInit makes the project root a git repository holding services/ with
// the given tags, each on its own commit (the service's versions).
func (p *Project) GitInit(t testing.TB, tags ...string) {
	t.Helper()
	git := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", p.Root, "-c", "user.name=booted-test", "-c", "user.email=test@booted.invalid", "-c", "commit.gpgsign=false"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v: %s", args, err, out)
		}
	}
	git("init", "-q", "-b", "main")
	for i, tag := range tags {
		f := filepath.Join(p.Root, "services", "hello", "RELEASE")
		os.WriteFile(f, []byte(tag+"\n"), 0o644)
		git("add", "services")
		git("commit", "-q", "-m", fmt.Sprintf("release %d", i))
		git("tag", tag)
	}
}

// RequireQemu is RequireLocalHosts plus what the qemu provider needs
// (qemu-system-x86_64, qemu-img, debootstrap, mkfs.ext4).
func RequireQemu(t testing.TB) {
	t.Helper()
	RequireLocalHosts(t)
	var missing []string
	for _, c := range []string{"qemu-system-x86_64", "qemu-img", "debootstrap", "mkfs.ext4"} {
		if _, err := exec.LookPath(c); err != nil {
			missing = append(missing, c)
		}
	}
	require(t, missing)
}

// ExclusiveCPU keeps the test from running while another test (of any
// package or run on this machine) that loads the CPU for long or measures
// latency runs: qemu VMs under TCG, the monitor's SLA tests.
func ExclusiveCPU(t testing.TB) {
	t.Helper()
	start := time.Now()
	release, err := testres.Exclusive("cpu", t.Name())
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Logf("waited %v for the machine's CPU lock", d.Round(time.Second))
	}
	t.Cleanup(release)
}
