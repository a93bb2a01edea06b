package session_test

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"booted/internal/config"
	"booted/internal/provider"
	"booted/internal/provider/memory"
	"booted/internal/session"
	"booted/internal/settings"
)

// options opens a project with env "e" (roles on the memory provider) in
// a temporary root.
func options(t *testing.T) (session.Options, *bytes.Buffer) {
	t.Helper()
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "envs"), 0o755)
	y := "version: 1\nprovider:\n  type: local\n  local: {subnet: 192.0.2.0/24}\nroles:\n  workers:\n    prefix: w\n    count: 1\n    min: 1\n    max: 2\n"
	if err := os.WriteFile(filepath.Join(root, "envs", "e.yaml"), []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	var errw bytes.Buffer
	prov := memory.New(netip.MustParseAddr("192.0.2.10"))
	return session.Options{Settings: settings.Settings{Root: root, Inventory: filepath.Join(root, "inventory"), Parallel: 4, LockWait: 200 * time.Millisecond},
		Out: &bytes.Buffer{}, Err: &errw,
		OpenProvider: func(context.Context, *config.Env, provider.Options) (provider.Provider, error) { return prov, nil }}, &errw
}

// Opening an environment keeps its inventory and deploy key root's only.
func TestOpen_InventoryIsPrivate(t *testing.T) {
	o, _ := options(t)
	err := session.View(context.Background(), o, "e", func(s *session.Session) error {
		if s.Env.Name != "e" || s.Store == nil || s.Provs == nil || s.Signer == nil {
			t.Errorf("session %+v: want the env, the inventory, the providers and the deploy key", s)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{o.Inventory: 0o700, filepath.Join(o.Inventory, "e"): 0o700, filepath.Join(o.Inventory, "e", "id_ed25519"): 0o600} {
		st, err := os.Stat(p)
		if err != nil || st.Mode().Perm() != want {
			t.Errorf("%s: %v %v, want %v", p, st.Mode().Perm(), err, want)
		}
	}
	if err := session.View(context.Background(), o, "nope", func(*session.Session) error { return nil }); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("a missing env file: %v, want it named", err)
	}
}

// Two changes of one environment never interleave: the second waits up to
// BOOTED_LOCK_WAIT for the first, saying who holds it, then gives up.
func TestChange_OneAtATime(t *testing.T) {
	o, errw := options(t)
	ctx := context.Background()
	err := session.Change(ctx, o, "e", "hosts:filter e", func(*session.Session) error {
		return session.Change(ctx, o, "e", "env:stop e", func(*session.Session) error {
			t.Error("the second change ran while the first held the lock")
			return nil
		})
	})
	if err == nil {
		t.Fatal("the second change did not fail")
	}
	if !strings.Contains(errw.String(), "hosts:filter e") {
		t.Errorf("the waiting change did not say who holds the lock: %q", errw.String())
	}
}

// Under BOOTED_DRY_RUN=1 a change without a plan is refused before it
// opens anything; one with a plan runs.
func TestChange_DryRun(t *testing.T) {
	o, _ := options(t)
	o.DryRun = true
	ran := false
	err := session.Change(context.Background(), o, "e", "hosts:filter e", func(*session.Session) error { ran = true; return nil })
	if err == nil || ran || !strings.HasPrefix(err.Error(), "hosts:filter: BOOTED_DRY_RUN=1") {
		t.Fatalf("hosts:filter under a dry run: %v (ran %v)", err, ran)
	}
	if _, err := os.Stat(o.Inventory); !os.IsNotExist(err) {
		t.Errorf("the refused dry run made the inventory: %v", err)
	}
	if err := session.Change(context.Background(), o, "e", "env:stop e", func(*session.Session) error { ran = true; return nil }); err != nil || !ran {
		t.Fatalf("env:stop under a dry run: %v (ran %v)", err, ran)
	}
}
