package local_test

import (
	"context"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"booted/internal/fanout"
	"booted/internal/testutil"
)

// 1,000 local hosts on one bridge come up and answer, on a machine with
// the kernel's default neighbour-table sizes: past about 500 the tables
// overflowed ("neighbor table overflow"; hosts answered "no route to
// host"), each host holding an entry on this machine's side and one for
// the gateway in its own namespace. The bridge raises them for its subnet
// (bridge.sizeNeigh). A test of the scale target (testScale): booting
// 1,000 hosts takes minutes.
func TestScale_ThousandHostsOnOneBridge(t *testing.T) {
	testutil.RequireLocalHosts(t)
	const n = 1000
	f := fixtureOn(t, testutil.NewWideProject(t, testutil.DefaultEnv))
	prov := f.prov
	ctx := context.Background()
	start := time.Now()
	addrs := make([]string, n)
	errs := make([]error, n)
	fanout.Each(ctx, n, 64, func(ctx context.Context, i int) {
		in, err := prov.Start(ctx, f.spec("n"+strconv.Itoa(i)))
		addrs[i], errs[i] = in.Addr, err
	}, nil)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("n%d: %v", i, err)
		}
	}
	booted := time.Since(start)
	start = time.Now()
	var failed atomic.Int32
	fanout.Each(ctx, n, 64, func(ctx context.Context, i int) {
		name := "n" + strconv.Itoa(i)
		var out string
		var err error
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			if out, err = f.run(name, addrs[i], "hostname"); err == nil {
				break
			}
		}
		if err != nil || strings.TrimSpace(out) != name {
			if failed.Add(1) <= 10 {
				t.Errorf("%s at %s: hostname = %q, %v", name, addrs[i], out, err)
			}
		}
	}, nil)
	if k := failed.Load(); k > 0 {
		t.Errorf("%d of %d hosts did not answer", k, n)
	}
	thresh := func(k string) string {
		b, _ := os.ReadFile("/proc/sys/net/ipv4/neigh/default/" + k)
		return strings.TrimSpace(string(b))
	}
	t.Logf("%d hosts booted in %v, all asked in %v; ARP table: gc_thresh2 %s, gc_thresh3 %s", n, booted.Round(time.Second), time.Since(start).Round(time.Second), thresh("gc_thresh2"), thresh("gc_thresh3"))
}
