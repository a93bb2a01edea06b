package restbackend_test

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"booted/internal/hostquery"
	"booted/internal/inventory"
	"booted/internal/metaladmin"
	"booted/internal/outcome"
	"booted/internal/provider"
	"booted/internal/provider/memory"
	"booted/internal/provider/registry"
	"booted/internal/restapi"
	"booted/internal/restbackend"
)

type env struct {
	q     *hostquery.Q
	locks []string
}

func (e *env) Name() string            { return e.q.Env.Name }
func (e *env) Store() *inventory.Store { return e.q.Store }
func (e *env) Query() *hostquery.Q     { return e.q }
func (e *env) Metal(target string) (*metaladmin.Admin, error) {
	return nil, errors.New(target + ": no bare metal")
}
func (e *env) View(ctx context.Context, fn func(restbackend.Env) error) error { return fn(e) }
func (e *env) Change(ctx context.Context, what string, fn func(restbackend.Env) error) error {
	e.locks = append(e.locks, what)
	return fn(e)
}

func newBackend(t *testing.T) (*restbackend.Backend, *env, *[]string) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "e.yaml"), []byte("version: 1\nprovider:\n  type: local\n  local: {subnet: 10.77.0.0/24}\nroles:\n  workers: {prefix: w, count: 2, min: 1, max: 2}\n"), 0o644)
	cfg, err := registry.LoadEnv(dir, "e")
	if err != nil {
		t.Fatal(err)
	}
	st, err := inventory.Open(ctx, filepath.Join(dir, "booted.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Update(ctx, func(tx *inventory.Tx) error {
		return tx.Modify("e", "w1", func(h *inventory.Host) error { h.Role, h.Addr = "workers", "10.77.0.11"; return nil })
	}); err != nil {
		t.Fatal(err)
	}
	mem := memory.New(netip.MustParseAddr("192.0.2.10"))
	e := &env{q: &hostquery.Q{Env: cfg, Store: st, Provider: func(string) provider.Provider { return mem }}}
	var did []string
	b := &restbackend.Backend{Envs: e, Do: func(ctx context.Context, what, name, arg string) (string, error) {
		did = append(did, what+" "+name+" "+arg)
		if name == "bad" {
			return "", outcome.Refuse("node %s: refused", name)
		}
		return what + " done\n", nil
	}}
	return b, e, &did
}

func apiCode(err error) string {
	var e *restapi.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// Refusals are the API's 400s; an unknown change is refused before
// anything runs; changes of the inventory take the environment's lock.
func TestBackend_RefusalsAndLocks(t *testing.T) {
	ctx := context.Background()
	b, e, did := newBackend(t)
	if _, err := b.Change(ctx, "node.format", "n1", ""); apiCode(err) != "InvalidRequest" || len(*did) != 0 {
		t.Errorf("an unknown change: %v (did %v)", err, *did)
	}
	if _, err := b.Change(ctx, "node.create", "bad", ""); apiCode(err) != "InvalidParameterValue" {
		t.Errorf("a refused change: %v, want InvalidParameterValue", err)
	}
	if out, err := b.Change(ctx, "host.power", "w1", "cycle"); err != nil || out != "host.power done\n" {
		t.Errorf("a change: %q %v", out, err)
	}
	if err := b.ChangeAttr(ctx, "w1", restapi.AttrChange{Op: "set", Key: "ip", Values: []string{"1.2.3.4"}}); apiCode(err) != "InvalidParameterValue" {
		t.Errorf("setting booted's own attribute: %v", err)
	}
	if err := b.ChangeAttr(ctx, "w1", restapi.AttrChange{Op: "add", Key: "rack", Values: []string{"r1"}}); err != nil {
		t.Fatal(err)
	}
	if err := b.ChangePool(ctx, "bad pool", "w1", true); apiCode(err) != "InvalidParameterValue" {
		t.Errorf("a bad pool name: %v", err)
	}
	if err := b.ChangePool(ctx, "canary", "w1", true); err != nil {
		t.Fatal(err)
	}
	hs, err := b.Hosts(ctx, "attr:rack=r1 and pool:canary")
	if err != nil || len(hs) != 1 || hs[0].Name != "w1" || hs[0].IP != "10.77.0.11" || hs[0].Attrs["rack"][0] != "r1" || hs[0].Pools[0] != "canary" {
		t.Errorf("hosts: %+v %v", hs, err)
	}
	if len(e.locks) != 3 || e.locks[0] != "api: attr w1" || e.locks[2] != "api: pool canary" {
		t.Errorf("locks taken: %q", e.locks)
	}
	if rows, err := b.Listing(ctx, "nodes"); err != nil || rows != nil {
		t.Errorf("nodes of an environment without bare metal: %v %v", rows, err)
	}
	if _, err := b.Listing(ctx, "racks"); apiCode(err) != "NotFound" {
		t.Errorf("an unknown listing: %v", err)
	}
}
