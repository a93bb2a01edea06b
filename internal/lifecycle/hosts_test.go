package lifecycle_test

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"booted/internal/config"
	"booted/internal/inventory"
	"booted/internal/lifecycle"
	"booted/internal/provider"
	"booted/internal/provider/memory"
)

// staticHosts are machines that already exist: their keys are known, and
// booted neither powers nor deletes them.
type staticHosts struct{ m *memory.Provider }

func (p staticHosts) Build(ctx context.Context, s provider.Spec) (provider.Instance, error) {
	return p.m.Build(ctx, s)
}
func (p staticHosts) Start(ctx context.Context, s provider.Spec) (provider.Instance, error) {
	return p.m.Start(ctx, s)
}
func (p staticHosts) List(ctx context.Context) ([]provider.Instance, error) { return p.m.List(ctx) }
func (p staticHosts) Known(ctx context.Context) ([]provider.Known, error)   { return p.m.Known(ctx) }
func (p staticHosts) KnownHostsFile() string                                { return p.m.KnownHostsFile() }

func hosts(t *testing.T) (*lifecycle.Hosts, *memory.Provider, *int, *bytes.Buffer) {
	t.Helper()
	st, err := inventory.Open(context.Background(), filepath.Join(t.TempDir(), "booted.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	env := &config.Env{Name: "e", Path: "envs/e.yaml", Provider: config.Provider{Type: "qemu"}, Roles: map[string]*config.Role{
		"workers": {Hosts: []string{"w1", "w2"}, Max: 2},
		"edge":    {Hosts: []string{"e1"}, Max: 1, Provider: "static"},
	}}
	mem := memory.New(netip.MustParseAddr("192.0.2.10"))
	drains := 0
	var log bytes.Buffer
	h := &lifecycle.Hosts{Env: env, Store: st, Log: &log,
		Provs: &lifecycle.Providers{Env: env, ByType: map[string]provider.Provider{"qemu": phoning{mem}, "static": staticHosts{memory.New(netip.MustParseAddr("198.51.100.10"))}}},
		Drain: func(context.Context) error { drains++; return nil }}
	return h, mem, &drains, &log
}

// up records host as running in state to, as the lifecycle brings it up.
func up(t *testing.T, h *lifecycle.Hosts, mem *memory.Provider, name string, to inventory.State) {
	t.Helper()
	ctx := context.Background()
	if _, err := mem.Start(ctx, provider.Spec{Name: name}); err != nil {
		t.Fatal(err)
	}
	err := h.Store.Update(ctx, func(tx *inventory.Tx) error {
		if err := tx.Modify("e", name, func(*inventory.Host) error { return nil }); err != nil {
			return err
		}
		for _, st := range []inventory.State{inventory.Provisioning, inventory.Booting, inventory.Booted, inventory.Ready, inventory.Serving} {
			if err := tx.Advance("e", name, st, ""); err != nil || st == to {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func state(t *testing.T, h *lifecycle.Hosts, name string) inventory.State {
	t.Helper()
	host, err := h.Store.Host(context.Background(), "e", name)
	if err != nil {
		t.Fatal(err)
	}
	return host.State
}

// Stopping a serving host powers it off, records it stopped and updates
// the load balancers; a ready one leaves them alone.
func TestStop_DrainsOnlyWhatServed(t *testing.T) {
	ctx := context.Background()
	h, mem, drains, _ := hosts(t)
	up(t, h, mem, "w1", inventory.Serving)
	up(t, h, mem, "w2", inventory.Ready)
	if err := h.Stop(ctx, "w1"); err != nil {
		t.Fatal(err)
	}
	if err := h.Stop(ctx, "w2"); err != nil {
		t.Fatal(err)
	}
	if state(t, h, "w1") != inventory.Stopped || state(t, h, "w2") != inventory.Stopped || *drains != 1 {
		t.Errorf("w1 %s, w2 %s, load balancers updated %d times; want both stopped, updated once", state(t, h, "w1"), state(t, h, "w2"), *drains)
	}
	if !strings.Contains(strings.Join(mem.Calls(), ","), "stop w1") {
		t.Errorf("w1 was not powered off: %v", mem.Calls())
	}
	if err := h.Stop(ctx, "w9"); err == nil || !strings.Contains(err.Error(), "host w9 of e: nothing to stop: it was never built") {
		t.Errorf("stopping a host never built: %v", err)
	}
}

// A provider that cannot power hosts leaves them as they are, saying so;
// one that does not own them cannot delete them.
func TestPowerlessAndOwnerless(t *testing.T) {
	ctx := context.Background()
	h, _, _, log := hosts(t)
	if powered, err := h.PowerOff(ctx, "e1"); powered || err != nil || !strings.Contains(log.String(), "host e1: the static provider does not power hosts: left as it is") {
		t.Errorf("power off e1: %v %v, said %q", powered, err, log)
	}
	if err := h.Delete(ctx, "e1", false); err == nil || !strings.Contains(err.Error(), "host e1: the static provider does not own its hosts and cannot delete them (remove it from envs/e.yaml instead)") {
		t.Errorf("delete e1: %v", err)
	}
}

// A running VM is not deleted unless forced, and the refusal says what to
// run; forced, it is powered off first, and its pinned key is revoked (the
// machine it was made on is gone); a refused delete revokes nothing.
func TestDelete_RunningNeedsForce(t *testing.T) {
	ctx := context.Background()
	h, mem, _, _ := hosts(t)
	up(t, h, mem, "w1", inventory.Ready)
	revoked := func() bool {
		t.Helper()
		var e inventory.Enrollment
		h.Store.Update(ctx, func(tx *inventory.Tx) error {
			var err error
			e, _, err = tx.Enrollment("e", "w1")
			return err
		})
		return e.Revoked
	}
	if err := h.Store.Update(ctx, func(tx *inventory.Tx) error {
		if err := tx.Issue("e", "w1", "h", time.Now().Add(time.Minute), ""); err != nil {
			return err
		}
		return tx.Pin("e", "w1", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl", "10.0.0.1", 0)
	}); err != nil {
		t.Fatal(err)
	}
	mem.FailOn("delete", "w1", provider.ErrRunning)
	err := h.Delete(ctx, "w1", false)
	if !errors.Is(err, provider.ErrRunning) || !strings.Contains(err.Error(), "(image:stop e w1)") {
		t.Errorf("deleting a running host: %v", err)
	}
	if revoked() {
		t.Error("a refused delete revoked w1's key")
	}
	mem.FailOn("delete", "w1", nil)
	if err := h.Delete(ctx, "w1", true); err != nil {
		t.Fatal(err)
	}
	if !revoked() {
		t.Error("w1 was deleted and its pinned key is not revoked")
	}
	calls := strings.Join(mem.Calls(), ",")
	if i, j := strings.LastIndex(calls, "stop w1"), strings.LastIndex(calls, "delete w1"); i < 0 || j < i {
		t.Errorf("forced delete: %s, want a stop before the delete", calls)
	}
	if err := h.Retire(ctx, "w1", inventory.Terminated, "deleted"); err != nil || state(t, h, "w1") != inventory.Terminated {
		t.Errorf("retire: %v %s", err, state(t, h, "w1"))
	}
	if err := h.Retire(ctx, "w9", inventory.Terminated, ""); err != nil {
		t.Errorf("retiring a host not recorded: %v", err)
	}
}

// consoled is phoning with console logs, in dir.
type consoled struct {
	phoning
	dir string
}

func (c consoled) ConsoleLog(name string) string { return filepath.Join(c.dir, name+".log") }

// CapConsoles keeps every host's console log under ConsoleMax, its newest
// half kept; a log under it, or a host without one, is left alone; a log a
// host made a link is not followed, and the error names the host.
func TestCapConsoles(t *testing.T) {
	ctx := context.Background()
	h, mem, _, _ := hosts(t)
	dir := t.TempDir()
	h.Provs.ByType["qemu"] = consoled{phoning{mem}, dir}
	for _, n := range []string{"w1", "w2"} {
		up(t, h, mem, n, inventory.Ready)
	}
	big := strings.Repeat("x", lifecycle.ConsoleMax-10) + strings.Repeat("y", 20)
	os.WriteFile(filepath.Join(dir, "w1.log"), []byte(big), 0o600)
	secret := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secret, []byte(big), 0o600)
	os.Symlink(secret, filepath.Join(dir, "w2.log"))
	err := h.CapConsoles(ctx)
	if err == nil || !strings.Contains(err.Error(), "host w2: console log") {
		t.Errorf("capping a console log that is a link: %v, want an error naming w2", err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "w1.log"))
	if len(b) > lifecycle.ConsoleMax/2+100 || !strings.HasSuffix(string(b), strings.Repeat("y", 20)) || !strings.HasPrefix(string(b), "[booted: ") {
		t.Errorf("w1's console log after the cap: %d bytes, %.60q…", len(b), b)
	}
	if st, _ := os.Stat(secret); st.Size() != int64(len(big)) {
		t.Errorf("the file behind w2's link is %d bytes now", st.Size())
	}
}
