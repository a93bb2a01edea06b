package facts

import (
	"os/exec"
	"reflect"
	"strconv"
	"testing"
)

func TestParse(t *testing.T) {
	out := "cpus 2\nmemory_mb 1987\nkernel 6.1.0-18-amd64\narch x86_64\ndistribution debian\ndistribution_version 12\ndisks vda:20\ndisks vdb:100\nbogus 1\nkernel \n"
	want := map[string][]string{"cpus": {"2"}, "memory_mb": {"1987"}, "kernel": {"6.1.0-18-amd64"}, "arch": {"x86_64"},
		"distribution": {"debian"}, "distribution_version": {"12"}, "disks": {"vda:20", "vdb:100"}}
	if got := Parse(out); !reflect.DeepEqual(got, want) {
		t.Errorf("Parse:\n got %v\nwant %v", got, want)
	}
}

// The script, run by this machine's sh, gives every fact a Debian host has.
func TestScript_HereAndNow(t *testing.T) {
	out, err := exec.Command("sh", "-c", Script).Output()
	if err != nil {
		t.Fatalf("sh -c Script: %v", err)
	}
	f := Parse(string(out))
	for _, k := range []string{"cpus", "memory_mb", "kernel", "arch", "distribution"} {
		if len(f[k]) != 1 {
			t.Errorf("fact %s: %v\n%s", k, f[k], out)
		}
	}
	if n, err := strconv.Atoi(f["cpus"][0]); err != nil || n < 1 {
		t.Errorf("cpus %v", f["cpus"])
	}
	if n, err := strconv.Atoi(f["memory_mb"][0]); err != nil || n < 64 {
		t.Errorf("memory_mb %v", f["memory_mb"])
	}
}
