package metaladmin_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"booted/internal/ec2api"
	"booted/internal/ec2host"
	"booted/internal/inventory"
	"booted/internal/metaladmin"
	"booted/internal/osimage"
	"booted/internal/provider"
	"booted/internal/provider/registry"
	"booted/internal/testutil"
)

// An env of four nodes (n4 the role's), nothing started: what the admin
// decides from the env file and the inventory alone, without root.
const envYAML = `version: 1
provider:
  type: baremetal
  baremetal:
    networks:
      - {name: prov, bridge: bmtest0, subnet: 10.99.0.0/24}
    nodes:
      - {name: n1, cpus: 2, memory_mb: 2048, disk_gb: 10, nics: [{mac: "52:54:00:aa:00:01", ip: 10.99.0.11, network: prov}], bmc: {address: 127.0.0.1, port: 6231, user: admin}}
      - {name: n2, cpus: 2, memory_mb: 2048, disk_gb: 10, nics: [{mac: "52:54:00:aa:00:02", ip: 10.99.0.12, network: prov}], bmc: {address: 127.0.0.1, port: 6232, user: admin}}
      - {name: n3, cpus: 1, memory_mb: 512, disk_gb: 10, nics: [{mac: "52:54:00:aa:00:03", ip: 10.99.0.13, network: prov}], bmc: {address: 127.0.0.1, port: 6233, user: admin}}
      - {name: n4, cpus: 2, memory_mb: 2048, disk_gb: 10, nics: [{mac: "52:54:00:aa:00:04", ip: 10.99.0.14, network: prov}], bmc: {address: 127.0.0.1, port: 6234, user: admin}}
roles:
  workers: {hosts: [n4], min: 1, max: 1}
`

func open(t *testing.T, body string) (*metaladmin.Admin, map[string]provider.Provider) {
	t.Helper()
	ctx := context.Background()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "envs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "envs", "lab.yaml"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	env, err := registry.LoadEnv(filepath.Join(root, "envs"), "lab")
	if err != nil {
		t.Fatal(err)
	}
	p, err := registry.Open(ctx, env, provider.Options{Dir: filepath.Join(root, "inventory", "lab"), Root: root})
	if err != nil {
		t.Fatal(err)
	}
	store, err := inventory.Open(ctx, filepath.Join(root, "inventory", "booted.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	provs := map[string]provider.Provider{env.Provider.Type: p}
	a, err := metaladmin.Of(env, provs, store, "node:list")
	if err != nil {
		t.Fatal(err)
	}
	return a, provs
}

// bringUp records host as the lifecycle would bring it up, to state to.
func bringUp(t *testing.T, a *metaladmin.Admin, host string, to inventory.State) {
	t.Helper()
	err := a.Store.Update(context.Background(), func(tx *inventory.Tx) error {
		if err := tx.Modify(a.Env.Name, host, func(*inventory.Host) error { return nil }); err != nil {
			return err
		}
		for _, st := range []inventory.State{inventory.Provisioning, inventory.Booting, inventory.Booted, inventory.Ready, inventory.Serving} {
			if err := tx.Advance(a.Env.Name, host, st, ""); err != nil || st == to {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestOf_RefusesAnotherProvider(t *testing.T) {
	a, _ := open(t, envYAML)
	_, err := metaladmin.Of(a.Env, map[string]provider.Provider{}, a.Store, "net:list")
	if err == nil || !strings.Contains(err.Error(), "net:list lists bare-metal nodes") || !strings.Contains(err.Error(), a.Env.Path) {
		t.Fatalf("Of without a bare-metal provider: %v", err)
	}
	if !a.ForInstances() {
		t.Error("the environment's own provider is bare metal: instances run on its nodes")
	}
}

var small = ec2api.InstanceType{Name: "t.small", VCPUs: 1, MemoryMiB: 512, DiskGB: 5}

func free(t *testing.T, a *metaladmin.Admin, user string, n int, size ec2api.InstanceType) ([]string, error) {
	t.Helper()
	var out []string
	err := a.Store.View(context.Background(), func(tx *inventory.Tx) error {
		var err error
		out, err = a.Free(tx, user, n, size)
		return err
	})
	return out, err
}

// Capacity and reservations: a role's node is never free, a node smaller
// than the size is not, a user's reserved nodes come first and are no
// one else's; a reservation that cannot be made changes nothing.
func TestReservationsAndCapacity(t *testing.T) {
	ctx := context.Background()
	a, _ := open(t, envYAML)
	got, err := free(t, a, "ada", 3, small)
	if err != nil || !slices.Equal(got, []string{"n1", "n2", "n3"}) {
		t.Fatalf("free for ada: %v %v, want n1 n2 n3 (n4 is role workers's)", got, err)
	}
	big := ec2api.InstanceType{Name: "t.big", VCPUs: 2, MemoryMiB: 2048, DiskGB: 10}
	if _, err := free(t, a, "ada", 3, big); err == nil || !strings.Contains(err.Error(), "InsufficientInstanceCapacity") || !strings.Contains(err.Error(), "2 free bare-metal nodes of t.big") {
		t.Fatalf("3 big on 2 big nodes: %v", err)
	}

	if done, err := a.Reserve(ctx, []string{"n2"}, "ada"); err != nil || !slices.Equal(done, []string{"n2: reserved for ada"}) {
		t.Fatalf("reserve n2 for ada: %v %v", done, err)
	}
	if got, _ := free(t, a, "ada", 1, small); !slices.Equal(got, []string{"n2"}) {
		t.Errorf("ada's first free node: %v, want her reserved n2", got)
	}
	if got, _ := free(t, a, "bob", 2, small); !slices.Equal(got, []string{"n1", "n3"}) {
		t.Errorf("bob's free nodes: %v, want n1 n3 (n2 is ada's)", got)
	}
	// n3 is free but n2 is ada's: bob's reservation of both is refused whole.
	if _, err := a.Reserve(ctx, []string{"n3", "n2"}, "bob"); err == nil || !strings.Contains(err.Error(), "node n2 is reserved for ada") {
		t.Fatalf("bob reserving ada's node: %v", err)
	}
	if _, err := a.Reserve(ctx, []string{"n9"}, "bob"); err == nil || !strings.Contains(err.Error(), "node n9 is not listed in provider.baremetal.nodes of "+a.Env.Path) {
		t.Fatalf("reserving an unlisted node: %v", err)
	}
	// An instance of ada on n1: bob cannot reserve it, and it is not free.
	if err := a.Store.Update(ctx, func(tx *inventory.Tx) error {
		if err := tx.Modify(a.Env.Name, "n1", func(h *inventory.Host) error {
			h.Role, h.Attrs = ec2host.Role, map[string]string{ec2host.AttrOwner: "ada", ec2host.AttrID: "i-0123456789abcdef0"}
			return nil
		}); err != nil {
			return err
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	bringUp(t, a, "n1", inventory.Ready)
	if _, err := a.Reserve(ctx, []string{"n1"}, "bob"); err == nil || !strings.Contains(err.Error(), "node n1 runs instance i-0123456789abcdef0 of ada") {
		t.Fatalf("bob reserving the node of ada's instance: %v", err)
	}
	rows, err := a.Systems(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []metaladmin.SystemRow{
		{Node: "n1", State: "ready", Instance: "i-0123456789abcdef0", Owner: "ada"},
		{Node: "n2", Reserved: "ada", State: "free"},
		{Node: "n3", State: "free"},
		{Node: "n4", State: "role workers"},
	}
	if !slices.Equal(rows, want) {
		t.Errorf("systems:\n got %+v\nwant %+v", rows, want)
	}
	if done, err := a.Reserve(ctx, []string{"n2"}, ""); err != nil || !slices.Equal(done, []string{"n2: released"}) {
		t.Fatalf("release n2: %v %v", done, err)
	}
	if got, _ := free(t, a, "bob", 2, small); !slices.Equal(got, []string{"n2", "n3"}) {
		t.Errorf("bob's free nodes after the release: %v, want n2 n3", got)
	}
}

// A node in use is not given another osimage: the refusal leaves its
// choice as it was (it was changed before the refusal).
func TestChooseOSImage_RefusedLeavesTheChoice(t *testing.T) {
	ctx := context.Background()
	a, _ := open(t, envYAML)
	testutil.RequireCommands(t, "xorriso")
	if _, err := osimage.Import(ctx, testutil.MakeISO(t, "Rocky-9-3-x86_64-dvd", testutil.ISOLayouts["rocky"]), a.P.OSImagesDir(), ""); err != nil {
		t.Fatal(err)
	}
	bringUp(t, a, "n1", inventory.Ready)
	before := a.P.OSImageOf("n1")
	err := a.ChooseOSImage(ctx, "n1", "rocky-9.3-x86_64")
	if err == nil || !strings.Contains(err.Error(), "node n1 is ready: image:del lab n1 first") {
		t.Fatalf("node:deploy of a ready node: %v", err)
	}
	if got := a.P.OSImageOf("n1"); got != before {
		t.Errorf("after the refusal n1 installs from %q, want %q still", got, before)
	}
}

// A BMC password is one line of at most 20 characters, kept 0600 in the
// node's file; anything else is refused and nothing is written.
func TestSetBMCPassword(t *testing.T) {
	a, _ := open(t, envYAML)
	for _, bad := range []string{"", "\n", strings.Repeat("x", 21), "a\nb", `a"b`} {
		if _, err := a.SetBMCPassword("n1", strings.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "node:secret lab n1") {
			t.Errorf("password %q: %v", bad, err)
		}
	}
	if _, err := os.Stat(a.P.BMCPasswordFile("n1")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused password left a file: %v", err)
	}
	if _, err := a.SetBMCPassword("n9", strings.NewReader("pw")); err == nil || !strings.Contains(err.Error(), "node n9 is not listed") {
		t.Errorf("unlisted node: %v", err)
	}
	path, err := a.SetBMCPassword("n1", bytes.NewBufferString("s3cret\n"))
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s: %v %v, want 0600", path, fi, err)
	}
	if b, _ := os.ReadFile(path); string(b) != "s3cret" {
		t.Errorf("kept %q", b)
	}
}

// Networks, osimages: the rows a user sees, and the refusals.
func TestNetworksAndOSImages(t *testing.T) {
	ctx := context.Background()
	a, _ := open(t, envYAML)
	nets := a.Networks()
	if len(nets) != 1 || nets[0].Name != "prov" || nets[0].Nodes != 4 || nets[0].DHCP != "stopped" || nets[0].Gateway != "none handed out" {
		t.Fatalf("networks: %+v", nets)
	}
	bringUp(t, a, "n3", inventory.Serving)
	if err := a.DeleteNetwork(ctx, "prov"); err == nil || !strings.Contains(err.Error(), "nodes n3 (serving) are on it") {
		t.Fatalf("deleting a network a serving node is on: %v", err)
	}
	imgs, err := a.OSImages()
	if err != nil || len(imgs) != 1 || imgs[0].Name != "debian" || len(imgs[0].Nodes) != 4 {
		t.Fatalf("osimages: %+v %v", imgs, err)
	}
	if err := a.DeleteOSImage("debian"); err == nil || !strings.Contains(err.Error(), "is the one booted builds") {
		t.Errorf("deleting the built-in osimage: %v", err)
	}
	if c := imgs[0].Cells(); len(c) != len(metaladmin.OSImageHeader) || c[5] != "-" || c[7] != "n1,n2,n3,n4" {
		t.Errorf("osimage cells: %q", c)
	}
}
