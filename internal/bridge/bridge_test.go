package bridge_test

import (
	"context"
	"net/netip"
	"os/exec"
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
