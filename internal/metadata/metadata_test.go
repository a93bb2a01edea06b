package metadata

import (
	"os"
	"path/filepath"
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
