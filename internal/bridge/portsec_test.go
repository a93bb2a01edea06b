package bridge_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"booted/internal/bridge"
	"booted/internal/testutil"
)

// Two hosts on a bridge, each on a guarded port: h2 (a tenant, root on its
// host) answers ARP for the gateway, takes the address of h1 once h1 has
// stopped, changes its MAC; none of it gets through (before, each did),
// while each host's own traffic does. Unguarded, h2's port passes anything
// again.
func TestGuard_NoSpoofing(t *testing.T) {
	testutil.RequireRoot(t, "bridges and namespaces need it", "ip", "nft", "curl")
	ctx := context.Background()
	env := "pstest"
	br := bridge.ShortName("btt", "ps", t.Name())
	if err := bridge.Ensure(ctx, br, netip.MustParsePrefix("10.251.79.1/24"), "test.subnet"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		bridge.Remove(context.Background(), br)
		bridge.Unguarded(context.Background(), "", env)
	})
	type host struct{ ns, veth, mac, addr string }
	hosts := map[string]host{}
	for i, name := range []string{"h1", "h2"} {
		h := host{ns: bridge.ShortName("btn", t.Name(), name), veth: bridge.ShortName("btv", t.Name(), name),
			mac: fmt.Sprintf("02:b0:00:00:79:%02x", 11+i), addr: fmt.Sprintf("10.251.79.%d", 11+i)}
		hosts[name] = h
		if err := bridge.IP(ctx, "", "netns", "add", h.ns); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { bridge.IP(context.Background(), "", "netns", "del", h.ns) })
		if err := bridge.IP(ctx, fmt.Sprintf("link add %[1]s type veth peer name %[1]sp netns %[2]s\nlink set %[1]s master %[3]s up\n", h.veth, h.ns, br)); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { bridge.Remove(context.Background(), h.veth) })
		if err := bridge.IP(ctx, fmt.Sprintf("link set %sp name eth0\nlink set eth0 address %s\naddr add %s/24 dev eth0\nlink set lo up\nlink set eth0 up\n", h.veth, h.mac, h.addr), "-n", h.ns); err != nil {
			t.Fatal(err)
		}
		if err := bridge.Guard(ctx, "", env, h.veth, h.mac, netip.MustParseAddr(h.addr)); err != nil {
			t.Fatal(err)
		}
	}
	h1, h2 := hosts["h1"], hosts["h2"]
	// The controller's side: a server on the gateway that says who called.
	ln, err := net.Listen("tcp", "10.251.79.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		fmt.Fprint(w, host)
	}))
	call := func(h host, args ...string) (string, error) {
		out, err := exec.Command("ip", append([]string{"netns", "exec", h.ns, "curl", "-sS", "-m", "3"}, append(args, "http://"+ln.Addr().String()+"/")...)...).CombinedOutput()
		return string(out), err
	}
	for _, h := range []host{h1, h2} {
		if got, err := call(h); err != nil || got != h.addr {
			t.Fatalf("%s calling the gateway from its own address: %q %v", h.ns, got, err)
		}
	}
	// h2 tells h1 that the gateway is at h2's MAC (an ARP reply h1 takes
	// for the entry it has), as a tenant who wants h1's callbacks would.
	if got, err := call(h1); err != nil || got != h1.addr {
		t.Fatalf("h1: %q %v", got, err)
	}
	time.Sleep(1200 * time.Millisecond) // past the entry's locktime (1 s)
	testutil.SendARPReply(t, h2.ns, h2.mac, "10.251.79.1", h1.mac, h1.addr)
	time.Sleep(200 * time.Millisecond)
	neigh, _ := exec.Command("ip", "-n", h1.ns, "neigh", "show", "10.251.79.1").Output()
	if strings.Contains(string(neigh), h2.mac) || !strings.Contains(string(neigh), strings.ToLower(ownMAC(t, br))) {
		t.Errorf("h1's entry for the gateway after h2's ARP reply: %q, want the gateway's %s", neigh, ownMAC(t, br))
	}
	// h1 stops (its link down) and h2 takes h1's address, as a tenant who
	// wants a stopped instance's metadata would.
	if err := bridge.IP(ctx, "", "-n", h1.ns, "link", "set", "eth0", "down"); err != nil {
		t.Fatal(err)
	}
	if err := bridge.IP(ctx, "", "-n", h2.ns, "addr", "add", h1.addr+"/32", "dev", "eth0"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1200 * time.Millisecond)                                            // past the gateway's locktime for h1's entry
	testutil.SendARPReply(t, h2.ns, h2.mac, h1.addr, ownMAC(t, br), "10.251.79.1") // "h1's address is at my MAC"
	time.Sleep(200 * time.Millisecond)
	if got, err := call(h2, "--interface", h1.addr); err == nil {
		t.Errorf("h2 called the gateway as h1 (%s): the gateway saw %q", h1.addr, got)
	}
	// h2 takes another MAC: nothing it sends gets through.
	if err := bridge.IP(ctx, "", "-n", h2.ns, "link", "set", "eth0", "address", "02:b0:00:00:79:99"); err != nil {
		t.Fatal(err)
	}
	if got, err := call(h2); err == nil {
		t.Errorf("h2 with another MAC called the gateway: %q", got)
	}
	// Unguarded, h2's port passes what it sends again.
	if err := bridge.Unguard(ctx, "", env, h2.veth); err != nil {
		t.Fatal(err)
	}
	if err := bridge.Unguard(ctx, "", env, h2.veth); err != nil {
		t.Errorf("unguarding twice: %v", err)
	}
	bridge.IP(ctx, "", "neigh", "flush", "dev", br)          // the gateway learns h2's new MAC
	bridge.IP(ctx, "", "-n", h2.ns, "neigh", "flush", "all") // and h2 the gateway's (its tries failed)
	if got, err := call(h2); err != nil || got != h2.addr {
		t.Errorf("h2 (another MAC) on an unguarded port: %q %v", got, err)
		rules, _ := exec.Command("nft", "list", "table", "bridge", bridge.GuardTable(env)).CombinedOutput()
		neigh, _ := exec.Command("ip", "neigh", "show", "dev", br).CombinedOutput()
		n2, _ := exec.Command("ip", "-n", h2.ns, "neigh").CombinedOutput()
		a2, _ := exec.Command("ip", "-n", h2.ns, "addr").CombinedOutput()
		t.Logf("%s\n%s\n%s\n%s", rules, neigh, n2, a2)
	}
}

func ownMAC(t *testing.T, br string) string {
	b, err := os.ReadFile("/sys/class/net/" + br + "/address")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}
