package bridge_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"booted/internal/bridge"
	"booted/internal/testutil"
)

// The route to a bridge's hosts acknowledges at once: without it, the first
// command on each new SSH connection waited 40 ms for our delayed ACK
// (sshd keeps Nagle on for sessions without a terminal).
func TestEnsure_RouteQuickack(t *testing.T) {
	testutil.RequireRoot(t, "bridges need it", "ip")
	ctx := context.Background()
	name := bridge.ShortName("btt", "quickack", t.Name())
	gw := netip.MustParsePrefix("10.251.77.1/24")
	if err := bridge.Ensure(ctx, name, gw, "test.subnet"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bridge.Remove(context.Background(), name) })
	out, err := exec.Command("ip", "route", "show", "10.251.77.0/24", "dev", name).CombinedOutput()
	if err != nil {
		t.Fatalf("ip route: %v: %s", err, out)
	}
	if !strings.Contains(string(out), "quickack 1") || !strings.Contains(string(out), "src 10.251.77.1") {
		t.Errorf("route to %s's hosts: %q; want it with quickack 1 and src 10.251.77.1", name, out)
	}
}

// A bridge keeps its own link-layer address as ports come: one that took
// its ports' lowest changed it as hosts were added, and the hosts and
// conductors on it lost the controller (NATS, phone-home) until their ARP
// entry for the gateway went stale, 15 to 45 s later.
func TestEnsure_OwnAddressAsPortsCome(t *testing.T) {
	testutil.RequireRoot(t, "bridges need it", "ip")
	ctx := context.Background()
	name := bridge.ShortName("btt", "mac", t.Name())
	if err := bridge.Ensure(ctx, name, netip.MustParsePrefix("10.251.78.1/24"), "test.subnet"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bridge.Remove(context.Background(), name) })
	mac := func() string {
		b, _ := os.ReadFile("/sys/class/net/" + name + "/address")
		return strings.TrimSpace(string(b))
	}
	before := mac()
	for i, addr := range []string{"02:00:00:00:00:01", "00:00:00:00:00:02"} { // lower than any it had
		veth := bridge.ShortName("btv", t.Name(), strconv.Itoa(i))
		if err := bridge.IP(ctx, fmt.Sprintf("link add %[1]s address %[2]s type veth peer name %[1]sp\nlink set %[1]s master %[3]s up\n", veth, addr, name)); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { bridge.Remove(context.Background(), veth) })
		if got := mac(); got != before {
			t.Errorf("after port %s (%s) joined: the bridge's address %s, was %s", veth, addr, got, before)
		}
	}
}
