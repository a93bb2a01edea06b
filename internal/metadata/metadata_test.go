package metadata

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Write lays out what an instance reads at /latest/ (from the directory of
// its address): each file, and each directory's listing as EC2 gives it.
func TestWrite(t *testing.T) {
	dir := t.TempDir()
	in := Instance{ID: "i-0abc", Hostname: "i-0abc", Addr: "10.77.0.10", Type: "t2.micro", Image: "ami-local", Zone: "booted-local",
		Reservation: "r-1", KeyName: "k1", PublicKey: "ssh-ed25519 AAAA k1", UserData: []byte("#!/bin/sh\necho hi\n")}
	if err := Write(dir, in); err != nil {
		t.Fatal(err)
	}
	for f, want := range map[string]string{
		"latest/meta-data/instance-id":                 "i-0abc",
		"latest/meta-data/local-ipv4":                  "10.77.0.10",
		"latest/meta-data/placement/availability-zone": "booted-local",
		"latest/meta-data/public-keys/0/openssh-key":   "ssh-ed25519 AAAA k1\n",
		"latest/meta-data/public-keys/_index":          "0=k1",
		"latest/user-data":                             "#!/bin/sh\necho hi\n",
		"latest/_index":                                "meta-data/\nuser-data",
		"latest/meta-data/_index":                      "ami-id\nhostname\ninstance-id\ninstance-type\nlocal-hostname\nlocal-ipv4\nplacement/\npublic-keys/\nreservation-id",
		// cloud-init's EC2 datasource reads the 2009-04-04 version.
		"2009-04-04/meta-data/instance-id": "i-0abc",
		"2009-04-04/user-data":             "#!/bin/sh\necho hi\n",
	} {
		got, err := os.ReadFile(filepath.Join(dir, "10.77.0.10", f))
		if err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want %q", f, got, err, want)
		}
	}
	// Written again without user data: the old one is gone.
	in.UserData = nil
	if err := Write(dir, in); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "10.77.0.10", "latest", "user-data")); !os.IsNotExist(err) {
		t.Errorf("user-data left after a write without it: %v", err)
	}
	if err := Write(dir, Instance{ID: "i-x", Addr: "../../etc"}); err == nil {
		t.Error("an address that is no address was taken")
	}
	Remove(dir, "10.77.0.10")
	if _, err := os.Stat(filepath.Join(dir, "10.77.0.10")); !os.IsNotExist(err) {
		t.Errorf("Remove left %v", err)
	}
}

// An environment whose hosts are on two bridges (roles on two providers)
// has the DNAT on both: one Route does not replace the other bridge's.
func TestRoute_EveryBridge(t *testing.T) {
	if _, err := exec.LookPath("nft"); err != nil || os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("CI runs as root with nft (go run mage.go test installs nftables)")
		}
		t.Skip("skipped: needs root and nft (apt-get install nftables)")
	}
	const env = "tmdroute"
	ctx := context.Background()
	t.Cleanup(func() { Unroute(ctx, env) })
	if err := Route(ctx, env, []string{"bt-a", "bq-b"}, "10.9.8.1:8077"); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("nft", "list", "table", "ip", table(env)).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, br := range []string{"bt-a", "bq-b"} {
		if !strings.Contains(string(out), `iifname "`+br+`" ip daddr 169.254.169.254 tcp dport 80 dnat to 10.9.8.1:8077`) {
			t.Errorf("no DNAT on %s:\n%s", br, out)
		}
	}
	in, err := exec.Command("nft", "list", "table", "inet", inTable(env)).Output()
	if err != nil || !strings.Contains(string(in), `iifname { "bt-a", "bq-b" } jump from_hosts`) || !strings.Contains(string(in), "tcp dport 8077 accept") {
		t.Errorf("the hosts' filter: %v\n%s", err, in)
	}
	if err := Unroute(ctx, env); err != nil {
		t.Fatal(err)
	}
	if err := exec.Command("nft", "list", "table", "ip", table(env)).Run(); err == nil {
		t.Error("Unroute left the table")
	}
	if err := exec.Command("nft", "list", "table", "inet", inTable(env)).Run(); err == nil {
		t.Error("Unroute left the hosts' filter")
	}
}
