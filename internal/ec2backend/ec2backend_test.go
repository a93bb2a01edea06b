package ec2backend

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"booted/internal/config"
	"booted/internal/ec2api"
	"booted/internal/ec2host"
	"booted/internal/inventory"
	"booted/internal/provider"
	"booted/internal/provider/memory"
)

// fakeEnv is an environment of the backend's port: a real inventory
// (SQLite), memory hosts, and the lifecycle's acts recorded.
type fakeEnv struct {
	cfg   *config.Env
	st    *inventory.Store
	prov  *memory.Provider
	mu    sync.Mutex
	acts  []string
	locks []string
	// consoles, when set, is where the hosts' console logs are.
	consoles string
}

// withConsole is memory hosts with console logs (provider.Console).
type withConsole struct {
	*memory.Provider
	dir string
}

func (w withConsole) ConsoleLog(name string) string { return filepath.Join(w.dir, name+".log") }

func newFake(t *testing.T, providerType string) *fakeEnv {
	t.Helper()
	st, err := inventory.Open(context.Background(), filepath.Join(t.TempDir(), "booted.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &fakeEnv{cfg: &config.Env{Name: "e", Path: "envs/e.yaml", Provider: config.Provider{Type: providerType}}, st: st,
		prov: memory.New(netip.MustParseAddr("192.0.2.10"))}
}

func (f *fakeEnv) act(s string) { f.mu.Lock(); f.acts = append(f.acts, s); f.mu.Unlock() }

func (f *fakeEnv) Config() *config.Env { return f.cfg }
func (f *fakeEnv) Image() string {
	return map[string]string{"local": "ami-local", "qemu": "ami-debian12"}[f.cfg.Provider.Type]
}
func (f *fakeEnv) Store() *inventory.Store { return f.st }
func (f *fakeEnv) Nodes() Capacity         { return nil }
func (f *fakeEnv) Provider(name string) provider.Provider {
	if f.consoles != "" {
		return withConsole{f.prov, f.consoles}
	}
	return f.prov
}
func (f *fakeEnv) Stop(ctx context.Context, name string) error {
	f.act("stop " + name)
	return f.st.Update(ctx, func(tx *inventory.Tx) error { return tx.Advance(f.cfg.Name, name, inventory.Stopped, "") })
}
func (f *fakeEnv) Delete(ctx context.Context, name string, force bool) error {
	f.act("delete " + name)
	return nil
}
func (f *fakeEnv) Retire(ctx context.Context, name string, to inventory.State, why string) error {
	f.act("retire " + name + " " + string(to))
	return f.st.Update(ctx, func(tx *inventory.Tx) error { return tx.Advance(f.cfg.Name, name, to, why) })
}
func (f *fakeEnv) ForgetMetadata(addr string) { f.act("forget-metadata") }

func (f *fakeEnv) View(ctx context.Context, fn func(Env) error) error { return fn(f) }
func (f *fakeEnv) Change(ctx context.Context, what string, fn func(Env) error) error {
	f.mu.Lock()
	f.locks = append(f.locks, what)
	f.mu.Unlock()
	return fn(f)
}

func backend(f *fakeEnv) (*Backend, *[]string) {
	var launched []string
	return &Backend{Envs: f, Launch: func(names []string) { launched = append(launched, names...) }}, &launched
}

func code(err error) string {
	var e *ec2api.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// A tenant gets their instances and nothing more: another user's ID is
// not found, as an unknown one, local hosts included.
func TestTenantsAreApart(t *testing.T) {
	ctx := context.Background()
	f := newFake(t, "qemu")
	b, launched := backend(f)
	ins, err := b.Run(ctx, "gina", ec2api.RunRequest{ImageID: "ami-debian12", Count: 2})
	if err != nil || len(ins) != 2 || ins[0].State != "pending" || ins[0].Owner != "gina" || ins[0].Zone != "booted-e" {
		t.Fatalf("run: %+v %v", ins, err)
	}
	if len(*launched) != 2 {
		t.Errorf("launched %v, want both", *launched)
	}
	if _, err := b.Describe(ctx, "bob", []string{ins[0].ID}); code(err) != "InvalidInstanceID.NotFound" {
		t.Errorf("bob describing gina's instance: %v", err)
	}
	if mine, err := b.Describe(ctx, "bob", nil); err != nil || len(mine) != 0 {
		t.Errorf("bob's instances: %+v %v", mine, err)
	}
	if _, err := b.Terminate(ctx, "bob", []string{ins[0].ID}); code(err) != "InvalidInstanceID.NotFound" {
		t.Errorf("bob terminating gina's instance: %v", err)
	}
	if len(f.acts) != 0 {
		t.Errorf("bob's refused calls acted: %v", f.acts)
	}

	// A local host is a tenant's as any instance is (it is sandboxed: its
	// own user namespace, root and cgroup; before, only api.admins').
	local := newFake(t, "local")
	lb, _ := backend(local)
	mine, err := lb.Run(ctx, "mallory", ec2api.RunRequest{ImageID: "ami-local", Count: 1})
	if err != nil || len(mine) != 1 || mine[0].Owner != "mallory" {
		t.Errorf("a tenant running a local host: %+v %v", mine, err)
	}
	if err == nil {
		if _, err := lb.Describe(ctx, "ops", []string{mine[0].ID}); code(err) != "InvalidInstanceID.NotFound" {
			t.Errorf("another user describing mallory's local host: %v", err)
		}
	}
	imgs, err := lb.Images(ctx, "mallory")
	if err != nil || len(imgs) != 1 || strings.Contains(imgs[0].Description, "not for you") {
		t.Errorf("images for a tenant of a local environment: %+v %v", imgs, err)
	}
}

// Bad requests are refused before anything is recorded.
func TestRun_Refusals(t *testing.T) {
	ctx := context.Background()
	f := newFake(t, "qemu")
	b, launched := backend(f)
	for _, c := range []struct {
		req  ec2api.RunRequest
		code string
	}{
		{ec2api.RunRequest{ImageID: "ami-local", Count: 1}, "InvalidAMIID.NotFound"},
		{ec2api.RunRequest{ImageID: "ami-debian12", Type: "t9.huge", Count: 1}, "InvalidParameterValue"},
		{ec2api.RunRequest{ImageID: "ami-debian12", Count: 21}, "InstanceLimitExceeded"},
		{ec2api.RunRequest{ImageID: "ami-debian12", KeyName: "nope", Count: 1}, "InvalidKeyPair.NotFound"},
	} {
		if _, err := b.Run(ctx, "gina", c.req); code(err) != c.code {
			t.Errorf("run %+v: %v, want %s", c.req, err, c.code)
		}
	}
	if hs, _ := f.st.Hosts(ctx, "e"); len(hs) != 0 || len(*launched) != 0 {
		t.Errorf("refused runs left hosts %v or launches %v", hs, *launched)
	}
}

// A dry run makes every check and keeps nothing.
func TestDryRun_KeepsNothing(t *testing.T) {
	f := newFake(t, "qemu")
	b, launched := backend(f)
	ctx := context.Background()
	ins, err := b.Run(ctx, "gina", ec2api.RunRequest{ImageID: "ami-debian12", Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	dry := ec2api.WithDryRun(ctx)
	if _, err := b.Run(dry, "gina", ec2api.RunRequest{ImageID: "ami-debian12", Count: 3}); err != nil {
		t.Errorf("a dry run that would succeed: %v", err)
	}
	if _, err := b.Terminate(dry, "gina", []string{ins[0].ID}); err != nil {
		t.Errorf("a dry terminate: %v", err)
	}
	if err := b.CreateTags(dry, "gina", []string{ins[0].ID}, map[string]string{"k": "v"}); err != nil {
		t.Errorf("dry tags: %v", err)
	}
	if hs, _ := f.st.Hosts(ctx, "e"); len(hs) != 1 || len(*launched) != 1 || len(f.acts) != 0 {
		t.Errorf("after dry runs: hosts %d, launched %v, acts %v; want the first run's alone", len(hs), *launched, f.acts)
	}
	d, _ := b.Describe(ctx, "gina", nil)
	if len(d) != 1 || len(d[0].Tags) != 0 {
		t.Errorf("a dry run kept tags: %+v", d)
	}
	if _, err := b.Terminate(dry, "bob", []string{ins[0].ID}); code(err) != "InvalidInstanceID.NotFound" {
		t.Errorf("a dry run of another user's instance: %v (a dry run checks what the real one would)", err)
	}
}

// A client token is remembered for a day, then forgotten (the AWS CLI
// sends a new one with every run: they must not pile up); a retry within
// the day answers the first run's instances, and the token with other
// parameters is refused.
func TestClientTokens(t *testing.T) {
	f := newFake(t, "qemu")
	b, launched := backend(f)
	ctx := context.Background()
	first, err := b.Run(ctx, "gina", ec2api.RunRequest{ImageID: "ami-debian12", Count: 1, ClientToken: "t1"})
	if err != nil || len(first) != 1 {
		t.Fatalf("run: %v %v", first, err)
	}
	again, err := b.Run(ctx, "gina", ec2api.RunRequest{ImageID: "ami-debian12", Count: 1, ClientToken: "t1"})
	if err != nil || len(again) != 1 || again[0].ID != first[0].ID || len(*launched) != 1 {
		t.Errorf("a retry: %v %v (launched %v), want %s once", again, err, *launched, first[0].ID)
	}
	if _, err := b.Run(ctx, "gina", ec2api.RunRequest{ImageID: "ami-debian12", Count: 2, ClientToken: "t1"}); code(err) != "IdempotentParameterMismatch" {
		t.Errorf("t1 with other parameters: %v", err)
	}
	key := clientTokenKey("gina", "t1")
	if err := f.st.Update(ctx, func(tx *inventory.Tx) error { // t1 ran 25 hours ago
		var c clientRun
		if _, err := tx.Get("e", key, &c); err != nil {
			return err
		}
		c.At = c.At.Add(-25 * time.Hour)
		return tx.Put("e", key, c)
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Run(ctx, "gina", ec2api.RunRequest{ImageID: "ami-debian12", Count: 1, ClientToken: "t2"}); err != nil {
		t.Fatal(err)
	}
	var c clientRun
	if found, err := f.st.Get(ctx, "e", key, &c); err != nil || found {
		t.Errorf("t1, a day old, is still remembered (%v)", err)
	}
	if found, err := f.st.Get(ctx, "e", clientTokenKey("gina", "t2"), &c); err != nil || !found {
		t.Errorf("t2 is not remembered (%v)", err)
	}
}

// Terminate deletes, retires and forgets the metadata of each instance,
// under the environment's lock; a terminated one is not stopped again.
func TestTerminate_UnderTheLock(t *testing.T) {
	f := newFake(t, "qemu")
	b, _ := backend(f)
	ctx := context.Background()
	ins, err := b.Run(ctx, "gina", ec2api.RunRequest{ImageID: "ami-debian12", Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	ch, err := b.Terminate(ctx, "gina", []string{ins[0].ID})
	if err != nil || len(ch) != 1 || ch[0].Previous != "pending" || ch[0].Current != "terminated" {
		t.Fatalf("terminate: %+v %v", ch, err)
	}
	want := "delete " + ins[0].ID + ",retire " + ins[0].ID + " terminated,forget-metadata"
	if got := strings.Join(f.acts, ","); got != want {
		t.Errorf("acts: %s, want %s", got, want)
	}
	if strings.Join(f.locks, ",") != "instances:terminate" {
		t.Errorf("locks: %v", f.locks)
	}
	if _, err := b.Stop(ctx, "gina", []string{ins[0].ID}); code(err) != "IncorrectInstanceState" {
		t.Errorf("stopping a terminated instance: %v", err)
	}
	if h, _ := f.st.Host(ctx, "e", ins[0].ID); h.Role != ec2host.Role || h.State != inventory.Terminated {
		t.Errorf("the instance's host: %+v", h)
	}
}

// An instance run without tags takes tags later (create-tags on it
// panicked: its tags were kept as JSON null, read back as a nil map).
func TestCreateTags_OnAnInstanceRunWithout(t *testing.T) {
	f := newFake(t, "qemu")
	b, _ := backend(f)
	ctx := context.Background()
	ins, err := b.Run(ctx, "gina", ec2api.RunRequest{ImageID: "ami-debian12", Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	if ins[0].Tags == nil {
		t.Error("an instance without tags has nil tags (null in JSON), want an empty set")
	}
	// As kept by the code before: null.
	if err := f.st.Update(ctx, func(tx *inventory.Tx) error {
		return tx.Modify("e", ins[0].ID, func(h *inventory.Host) error { h.Attrs[ec2host.AttrTags] = "null"; return nil })
	}); err != nil {
		t.Fatal(err)
	}
	if err := b.CreateTags(ctx, "gina", []string{ins[0].ID}, map[string]string{"team": "blue"}); err != nil {
		t.Fatal(err)
	}
	d, err := b.Describe(ctx, "gina", nil)
	if err != nil || len(d) != 1 || d[0].Tags["team"] != "blue" {
		t.Errorf("after create-tags: %+v %v", d, err)
	}
}

// An environment whose provider makes no instances (static) says so.
func TestRun_NoImage(t *testing.T) {
	f := newFake(t, "static")
	b, _ := backend(f)
	if _, err := b.Run(context.Background(), "gina", ec2api.RunRequest{ImageID: "ami-local", Count: 1}); code(err) != "InvalidAMIID.NotFound" || !strings.Contains(err.Error(), "the static provider of this environment makes no instances") {
		t.Errorf("run on a static environment: %v", err)
	}
	if imgs, err := b.Images(context.Background(), "gina"); err != nil || len(imgs) != 0 {
		t.Errorf("images of a static environment: %+v %v", imgs, err)
	}
}

// GetConsoleOutput gives the last 64 KB of the console, reading no more,
// and never reads through a link: an instance whose console log was made a
// link to the controller's deploy key gets an error, not the key.
func TestConsoleOutput_TailAndNoLinks(t *testing.T) {
	ctx := context.Background()
	f := newFake(t, "qemu")
	f.consoles = t.TempDir()
	b, _ := backend(f)
	ins, err := b.Run(ctx, "gina", ec2api.RunRequest{ImageID: "ami-debian12", Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	id := ins[0].ID
	if out, err := b.ConsoleOutput(ctx, "gina", id); err != nil || len(out) != 0 {
		t.Fatalf("no console yet: %q %v, want empty", out, err)
	}
	log := filepath.Join(f.consoles, id+".log")
	os.WriteFile(log, append(bytes.Repeat([]byte("boot\n"), 40<<10), []byte("login:\n")...), 0o600)
	out, err := b.ConsoleOutput(ctx, "gina", id)
	if err != nil || len(out) != 64<<10 || !bytes.HasSuffix(out, []byte("login:\n")) {
		t.Fatalf("console: %d bytes, %v; want its last 64 KiB", len(out), err)
	}
	key := filepath.Join(t.TempDir(), "id_ed25519")
	os.WriteFile(key, []byte("-----BEGIN OPENSSH PRIVATE KEY-----\n"), 0o600)
	os.Remove(log)
	os.Symlink(key, log)
	out, err = b.ConsoleOutput(ctx, "gina", id)
	if err == nil || bytes.Contains(out, []byte("PRIVATE KEY")) {
		t.Fatalf("a console log linked to a key: %q %v, want an error", out, err)
	}
}

// A user's instances in use are bounded (api.quota, EC2's
// InstanceLimitExceeded and VcpuLimitExceeded), counted in the run's
// transaction, before anything is recorded; terminated ones do not count;
// each user has a quota of their own.
func TestRun_Quota(t *testing.T) {
	ctx := context.Background()
	f := newFake(t, "qemu")
	f.cfg.API.Quota = config.Quota{Instances: 3, VCPUs: 3}
	b, launched := backend(f)
	run := func(user, typ string, n int) ([]ec2api.Instance, error) {
		return b.Run(ctx, user, ec2api.RunRequest{ImageID: "ami-debian12", Type: typ, Count: n})
	}
	first, err := run("gina", "t2.micro", 2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := run("gina", "t2.micro", 2); code(err) != "InstanceLimitExceeded" || !strings.Contains(err.Error(), "limit of 3") {
		t.Fatalf("gina's 4th and 5th instances: %v", err)
	}
	if _, err := run("gina", "t2.medium", 1); code(err) != "VcpuLimitExceeded" {
		t.Fatalf("gina's 2 + 2 vCPUs over 3: %v", err)
	}
	if _, err := run("bob", "t2.micro", 3); err != nil { // bob's own quota
		t.Fatalf("bob: %v", err)
	}
	if n := len(*launched); n != 5 {
		t.Fatalf("%d launched, want gina's 2 and bob's 3 (nothing of the refused runs)", n)
	}
	if _, err := b.Terminate(ctx, "gina", []string{first[0].ID}); err != nil {
		t.Fatal(err)
	}
	if _, err := run("gina", "t2.micro", 2); err != nil {
		t.Fatalf("after a terminate, gina's 2 more: %v", err)
	}
}
