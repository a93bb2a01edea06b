package bridge

import (
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Each bridge raises the neighbour tables' thresholds by what its subnet's
// hosts need (3 entries an address), on top of the values found before
// the first; the last to go puts those back exactly. (The real settings
// are the machine's; TestLocal_ThousandHostsOnOneBridge boots hosts past
// the defaults.)
func TestSizeNeigh_RaisesAndRestores(t *testing.T) {
	dir := t.TempDir()
	tables := []string{filepath.Join(dir, "ipv4") + "/", filepath.Join(dir, "ipv6") + "/"}
	for _, tb := range tables {
		os.MkdirAll(tb, 0o755)
		os.WriteFile(tb+"gc_thresh2", []byte("512\n"), 0o644)
		os.WriteFile(tb+"gc_thresh3", []byte("1024\n"), 0o644)
	}
	oldTables, oldDir, oldExists := neighTables, neighDir, linkExists
	neighTables, neighDir = tables, filepath.Join(dir, "state")
	links := map[string]bool{}
	linkExists = func(n string) bool { return links[n] }
	t.Cleanup(func() { neighTables, neighDir, linkExists = oldTables, oldDir, oldExists })
	read := func(k string) int {
		b, _ := os.ReadFile(tables[0] + k)
		n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		return n
	}
	want := func(step string, t2, t3 int) {
		t.Helper()
		if g2, g3 := read("gc_thresh2"), read("gc_thresh3"); g2 != t2 || g3 != t3 {
			t.Errorf("%s: gc_thresh2 %d, gc_thresh3 %d; want %d, %d", step, g2, g3, t2, t3)
		}
	}
	if err := sizeNeigh("bt-a", netip.MustParsePrefix("10.1.0.0/24")); err != nil {
		t.Fatal(err)
	}
	links["bt-a"] = true
	want("a /24", 512+768, 1024+768)
	if err := sizeNeigh("bt-b", netip.MustParsePrefix("10.2.0.0/22")); err != nil {
		t.Fatal(err)
	}
	links["bt-b"] = true
	want("a /24 and b /22", 512+768+3072, 1024+768+3072)
	// a bridge that went without booted (a crash) no longer counts
	delete(links, "bt-a")
	if err := sizeNeigh("bt-c", netip.MustParsePrefix("10.3.0.0/28")); err != nil {
		t.Fatal(err)
	}
	links["bt-c"] = true
	want("b /22, c /28 (a gone)", 512+3072+48, 1024+3072+48)
	delete(links, "bt-b")
	if err := sizeNeigh("bt-b", netip.Prefix{}); err != nil {
		t.Fatal(err)
	}
	want("c", 512+48, 1024+48)
	delete(links, "bt-c")
	if err := sizeNeigh("bt-c", netip.Prefix{}); err != nil {
		t.Fatal(err)
	}
	want("none left", 512, 1024)
	if b, _ := os.ReadFile(tables[1] + "gc_thresh3"); strings.TrimSpace(string(b)) != "1024" {
		t.Errorf("IPv6's gc_thresh3 %q after the last bridge; want 1024 back", b)
	}
}
