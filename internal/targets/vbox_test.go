package targets

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"booted/internal/testutil"
)

func vboxProject(t *testing.T) *fixture {
	root := t.TempDir()
	repo := testutil.RepoRoot(t)
	for _, d := range []string{"envs", "kickstart", "nginx", "services"} {
		os.Symlink(filepath.Join(repo, d), filepath.Join(root, d))
	}
	out := &testutil.SyncBuffer{}
	return &fixture{proj: &testutil.Project{Root: root, Inventory: filepath.Join(root, "inventory"), Env: "prod"}, out: out,
		r: newRunner(root, filepath.Join(root, "inventory"), out, testWriter{t})}
}

// Where VBoxManage is missing, the vbox targets give one clear error.
func TestTargets_VBoxWithoutVBoxManage(t *testing.T) {
	f := vboxProject(t)
	t.Setenv("PATH", t.TempDir())
	for name, run := range map[string]func() error{
		"image:build": func() error { return f.r.ImageBuild(context.Background(), "prod", "pw1") },
		"image:list":  func() error { return f.r.ImageList(context.Background(), "prod") },
		"image:stop":  func() error { return f.r.ImageStop(context.Background(), "prod", "pw1") },
	} {
		err := run()
		if err == nil || !strings.Contains(err.Error(), "VBoxManage not found on PATH: install VirtualBox") || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}

// The vbox targets with the fake VBoxManage: build, list, clone with an
// identity the clone fetches by MAC, delete.
func TestTargets_VBoxImages(t *testing.T) {
	f := vboxProject(t)
	testdata, _ := filepath.Abs("../provider/vbox/testdata")
	f.r.VBoxManage = filepath.Join(testdata, "VBoxManage")
	tftp := filepath.Join(t.TempDir(), "TFTP")
	f.r.VBoxTFTP = tftp
	for _, p := range []string{"pxelinux.0", "ldlinux.c32", "booted/prod/vmlinuz", "booted/prod/initrd.img"} {
		os.MkdirAll(filepath.Dir(filepath.Join(tftp, p)), 0o755)
		os.WriteFile(filepath.Join(tftp, p), []byte("stand-in"), 0o644)
	}
	t.Setenv("FAKE_VBOX_LOG", filepath.Join(t.TempDir(), "log"))
	t.Setenv("FAKE_VBOX_DIR", t.TempDir())
	// prod.yaml names an ISO under iso/: give it one.
	os.MkdirAll(filepath.Join(f.proj.Root, "iso"), 0o755)
	os.WriteFile(filepath.Join(f.proj.Root, "iso", "Rocky-9-x86_64-minimal.iso"), []byte("iso"), 0o644)
	ctx := context.Background()
	f.must(t, f.r.ImageBuild(ctx, "prod", "pw1"))
	ks, err := os.ReadFile(filepath.Join(f.proj.Inventory, "prod", "kickstart", "pw1.ks"))
	if err != nil || !strings.Contains(string(ks), "network --bootproto=dhcp --device=link --activate --hostname=pw1") {
		t.Fatalf("kickstart: %v\n%s", err, ks)
	}
	f.must(t, f.r.ImageClone(ctx, "prod", "pw1", "pw2"))
	ids, _ := filepath.Glob(filepath.Join(f.proj.Inventory, "prod", "kickstart", "identity", "*"))
	if len(ids) != 1 {
		t.Fatalf("identity files: %v", ids)
	}
	id, _ := os.ReadFile(ids[0])
	if !strings.HasPrefix(string(id), "name=pw2\ntoken=") {
		t.Errorf("identity %q", id)
	}
	h := f.hosts(t)
	if h["pw1"].State != "stopped" || h["pw2"].State != "stopped" {
		t.Errorf("hosts %+v", h)
	}
	f.must(t, f.r.ImageDel(ctx, "prod", "pw2"))
	if h := f.hosts(t); h["pw2"].State != "terminated" {
		t.Errorf("after image:del: %+v", h["pw2"])
	}
}
