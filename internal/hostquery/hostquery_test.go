package hostquery_test

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"booted/internal/hostquery"
	"booted/internal/inventory"
	"booted/internal/outcome"
	"booted/internal/provider"
	"booted/internal/provider/memory"
	"booted/internal/provider/registry"
)

// Four workers in two racks, w4 with too little memory for its role's
// class; nothing runs: the answers come from the env file and the
// inventory alone, without root, in milliseconds.
func newQ(t *testing.T) (*hostquery.Q, *bytes.Buffer) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "e.yaml"), []byte(`version: 1
provider:
  type: local
  local: {subnet: 10.77.0.0/24}
roles:
  workers: {prefix: w, count: 4, min: 1, max: 4, classes: [bigmem]}
classes:
  bigmem: memory_mb >= 2048
`), 0o644)
	env, err := registry.LoadEnv(dir, "e")
	if err != nil {
		t.Fatal(err)
	}
	st, err := inventory.Open(ctx, filepath.Join(dir, "booted.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	err = st.Update(ctx, func(tx *inventory.Tx) error {
		for i := 1; i <= 4; i++ {
			name := fmt.Sprintf("w%d", i)
			if err := tx.Modify("e", name, func(h *inventory.Host) error {
				h.Role, h.Provider, h.Addr = "workers", "local", fmt.Sprintf("10.77.0.%d", 10+i)
				return nil
			}); err != nil {
				return err
			}
			mem := "4096"
			if i == 4 {
				mem = "1024"
			}
			if err := tx.SetFacts("e", name, map[string][]string{"memory_mb": {mem}}); err != nil {
				return err
			}
			if err := tx.ChangeAttr("e", name, inventory.AttrOp("set"), "rack", []string{fmt.Sprintf("r%d", (i+1)/2)}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	mem := memory.New(netip.MustParseAddr("192.0.2.10"))
	var warn bytes.Buffer
	return &hostquery.Q{Env: env, Store: st, Provider: func(string) provider.Provider { return mem }, Warn: &warn}, &warn
}

func names(hs []inventory.Host) string {
	var out []string
	for _, h := range hs {
		out = append(out, h.Name)
	}
	return strings.Join(out, ",")
}

func TestHosts_Expressions(t *testing.T) {
	ctx := context.Background()
	q, _ := newQ(t)
	for expr, want := range map[string]string{
		"":                                  "w1,w2,w3,w4",
		"attr:rack=r1":                      "w1,w2",
		"role:workers and not class:bigmem": "w4",
		"class:bigmem and attr:rack=r2":     "w3",
		"attr:ip=10.77.0.12":                "w2",
	} {
		hs, err := q.Hosts(ctx, expr)
		if err != nil || names(hs) != want {
			t.Errorf("%q: %s %v, want %s", expr, names(hs), err, want)
		}
	}
	if _, err := q.Hosts(ctx, "role:workers and nto x"); err == nil {
		t.Error("a bad expression was answered")
	}
	if _, err := q.Selector("workers and"); err == nil || !strings.Contains(err.Error(), "e/workers and") {
		t.Errorf("a bad selector: %v, want it named with its environment", err)
	}
}

// A host its role's classes leave out is said once, however often asked.
func TestWithClasses_SaysOnce(t *testing.T) {
	ctx := context.Background()
	q, warn := newQ(t)
	all, _ := q.Hosts(ctx, "")
	for i := 0; i < 3; i++ {
		hs, err := q.WithClasses(ctx, all)
		if err != nil || names(hs) != "w1,w2,w3" {
			t.Fatalf("with classes: %s %v", names(hs), err)
		}
	}
	if got := warn.String(); strings.Count(got, "host w4: not used for role workers: not in class bigmem (memory_mb >= 2048)") != 1 || strings.Count(got, "\n") != 1 {
		t.Errorf("said:\n%s", got)
	}
}

// The operator's attributes: booted's own keys and bad words are refused
// (exit 2) before anything changes; an unknown host is named.
func TestChangeAttr_Refusals(t *testing.T) {
	ctx := context.Background()
	q, _ := newQ(t)
	for _, c := range [][]string{{"set", "ip", "1.2.3.4"}, {"add", "ec2.owner", "bob"}, {"add", "memory_mb", "1"}, {"add", "a=b", "c"}, {"add", "rack"}, {"frob", "rack", "r1"}} {
		if err := q.ChangeAttr(ctx, "w1", c[0], c[1], c[2:]); !outcome.Refused(err) {
			t.Errorf("%v: %v, want a refusal", c, err)
		}
	}
	if err := q.ChangeAttr(ctx, "w9", "add", "team", []string{"blue"}); err == nil || !strings.Contains(err.Error(), "host w9") {
		t.Errorf("an unknown host: %v", err)
	}
	if rows, _ := q.Attrs(ctx, "w1", "rack"); len(rows) != 1 || rows[0].Values[0] != "r1" {
		t.Errorf("w1's rack after the refusals: %+v", rows)
	}
	if err := q.ChangeAttr(ctx, "w1", "add", "team", []string{"blue"}); err != nil {
		t.Fatal(err)
	}
	if hs, _ := q.Hosts(ctx, "attr:team=blue"); names(hs) != "w1" {
		t.Errorf("attr:team=blue: %s", names(hs))
	}
}

// clusto's pick: n hosts, each with a different value of an attribute.
func TestPick_SpreadsOverRacks(t *testing.T) {
	ctx := context.Background()
	q, _ := newQ(t)
	hs, err := q.Pick(ctx, "role:workers", 2, "rack")
	if err != nil || names(hs) != "w1,w3" {
		t.Errorf("pick 2 by rack: %s %v", names(hs), err)
	}
	if _, err := q.Pick(ctx, "role:workers", 3, "rack"); err == nil || !strings.Contains(err.Error(), "4 hosts match \"role:workers\" with 2 distinct values of rack; 3 asked") {
		t.Errorf("pick 3 of 2 racks: %v", err)
	}
}

func TestPools(t *testing.T) {
	ctx := context.Background()
	q, _ := newQ(t)
	if err := q.ChangePool(ctx, "canary", true, []string{"w2", "w1"}); err != nil {
		t.Fatal(err)
	}
	if err := q.ChangePool(ctx, "bad pool", true, []string{"w1"}); !outcome.Refused(err) {
		t.Errorf("a bad pool name: %v", err)
	}
	if err := q.ChangePool(ctx, "canary", true, []string{"w9"}); err == nil || !strings.Contains(err.Error(), "w9") {
		t.Errorf("an unknown host into a pool: %v", err)
	}
	rows, err := q.Pools(ctx)
	if err != nil || len(rows) != 1 || rows[0].Pool != "canary" || strings.Join(rows[0].Hosts, ",") != "w1,w2" {
		t.Errorf("pools: %+v %v", rows, err)
	}
	if hs, _ := q.Hosts(ctx, "pool:canary"); names(hs) != "w1,w2" {
		t.Errorf("pool:canary: %s", names(hs))
	}
}
