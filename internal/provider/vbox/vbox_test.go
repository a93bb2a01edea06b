package vbox

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"booted/internal/bootlog"
	"booted/internal/config"
	"booted/internal/kickstart"
	"booted/internal/provider"
	"booted/internal/provider/providertest"
	"booted/internal/testutil"
)

const envYAML = `version: 1
provider:
  type: vbox
  vbox:
    os_type: RedHat_64
    cpus: 2
    memory_mb: 2048
    disk_gb: 8
    iso: ISO
    kickstart: rhel9
    network: {mode: hostonly, name: vboxnet0, subnet: 192.168.56.0/24}
callback: {address: 192.168.56.1, port: 8077}
roles:
  workers: {hosts: [w1, w2], min: 1, max: 2}
`

type fixture struct {
	p    *Provider
	log  string
	root string
	ks   string
}

const authKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHVzZWQtaW4tdGVzdHMtb25seS0wMDAwMDAwMDAw booted@prod"

func newFixture(t *testing.T, kickstartName string) *fixture {
	root := t.TempDir()
	iso := filepath.Join(root, "rocky.iso")
	os.WriteFile(iso, []byte("iso"), 0o644)
	y := strings.Replace(envYAML, "ISO", iso, 1)
	y = strings.Replace(y, "kickstart: rhel9", "kickstart: "+kickstartName, 1)
	env, err := config.Parse(filepath.Join(root, "envs", "prod.yaml"), "prod", []byte(y), config.ProviderFunc(Decode))
	if err != nil {
		t.Fatal(err)
	}
	testdata, _ := filepath.Abs("testdata")
	t.Setenv("PATH", testdata+":"+os.Getenv("PATH"))
	f := &fixture{log: filepath.Join(root, "calls.log"), root: root, ks: filepath.Join(root, "ks")}
	t.Setenv("FAKE_VBOX_LOG", f.log)
	t.Setenv("FAKE_VBOX_DIR", filepath.Join(root, "vms"))
	os.MkdirAll(filepath.Join(root, "vms"), 0o755)
	repo := testutil.RepoRoot(t)
	render := func(s provider.Spec) error {
		ks, err := kickstart.Render(filepath.Join(repo, "kickstart"), kickstartName, kickstart.Data{Name: s.Name, Env: "prod",
			AuthorizedKey: authKey, PhoneHome: string(s.PhoneHome), Token: s.Token, IdentityURL: "http://192.168.56.1:8077/kickstart/identity/", FailedURL: "http://192.168.56.1:8077/booted/failed", ServicePort: 8080})
		if err != nil {
			return err
		}
		os.MkdirAll(f.ks, 0o755)
		return os.WriteFile(filepath.Join(f.ks, s.Name+".ks"), ks, 0o644)
	}
	f.p, err = New(env, filepath.Join(root, "inventory", "prod", "vbox"), "http://192.168.56.1:8077/kickstart/", render)
	if err != nil {
		t.Fatal(err)
	}
	f.p.TFTP = filepath.Join(root, "home", ".config", "VirtualBox", "TFTP")
	f.p.StopTimeout = time.Second
	fillTFTP(t, f.p.TFTP, "prod")
	return f
}

// fillTFTP puts stand-ins of the boot files into a TFTP tree.
func fillTFTP(t testing.TB, tftp, env string) {
	os.MkdirAll(filepath.Join(tftp, "booted", env), 0o755)
	for _, f := range []string{"pxelinux.0", "ldlinux.c32", "booted/" + env + "/vmlinuz", "booted/" + env + "/initrd.img"} {
		os.WriteFile(filepath.Join(tftp, f), []byte("stand-in"), 0o644)
	}
}

func phoneHome(t *testing.T, name string) []byte {
	b, err := bootlog.PhoneHome{URL: "http://192.168.56.1:8077/booted/", Env: "prod", Name: name, Retry: 2 * time.Minute}.Render(filepath.Join(testutil.RepoRoot(t), "kickstart", "phone-home.sh.tmpl"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (f *fixture) spec(t *testing.T, name string) provider.Spec {
	return provider.Spec{Name: name, Role: "workers", PhoneHome: phoneHome(t, name), AuthorizedKey: []byte(authKey + "\n"), Token: strings.Repeat("ab", 32)}
}

// golden compares got (with the test's temporary paths replaced) with testdata/name.
func (f *fixture) golden(t *testing.T, name string, got []byte) {
	t.Helper()
	got = bytes.ReplaceAll(got, []byte(f.root), []byte("$ROOT"))
	testutil.Golden(t, filepath.Join("testdata", name), got)
}

func (f *fixture) calls(t *testing.T) []byte {
	b, _ := os.ReadFile(f.log)
	os.Remove(f.log)
	return b
}

// Ensure build, start, stop, clone and del run exactly the recorded
// VBoxManage sequences, write the TFTP tree and the kickstart.
func TestVBox_Lifecycle(t *testing.T) {
	f := newFixture(t, "rhel9")
	ctx := context.Background()
	in, err := f.p.Build(ctx, f.spec(t, "w1"))
	if err != nil {
		t.Fatal(err)
	}
	if in.ID != "booted-prod-w1" || in.State != provider.Off || in.MAC == "" {
		t.Errorf("built %+v", in)
	}
	f.golden(t, "build.golden", f.calls(t))
	menu, err := os.ReadFile(filepath.Join(f.p.TFTP, "pxelinux.cfg", "01-"+dashed(in.MAC)))
	if err != nil {
		t.Fatalf("no PXE menu for %s under ~/.config/VirtualBox/TFTP: %v", in.MAC, err)
	}
	f.golden(t, "pxe-install.golden", menu)
	ks, _ := os.ReadFile(filepath.Join(f.ks, "w1.ks"))
	f.golden(t, "w1-rhel9.ks.golden", ks)
	// Building again touches nothing.
	if _, err := f.p.Build(ctx, f.spec(t, "w1")); err != nil {
		t.Fatal(err)
	}
	f.golden(t, "rebuild.golden", f.calls(t))

	if _, err := f.p.Start(ctx, f.spec(t, "w1")); err != nil {
		t.Fatal(err)
	}
	if err := f.p.Delete(ctx, "w1"); !errors.Is(err, ErrRunning) {
		t.Errorf("deleting a running VM: %v", err)
	}
	if err := f.p.Installed(ctx, "w1"); err != nil { // phoned home
		t.Fatal(err)
	}
	menu, _ = os.ReadFile(filepath.Join(f.p.TFTP, "pxelinux.cfg", "01-"+dashed(in.MAC)))
	if !strings.Contains(string(menu), "localboot 0") {
		t.Errorf("after the phone-home the PXE menu still installs:\n%s", menu)
	}
	if err := f.p.Stop(ctx, "w1"); err != nil {
		t.Fatal(err)
	}
	f.golden(t, "start-stop.golden", f.calls(t))

	c, err := f.p.Clone(ctx, "w1", f.spec(t, "w2"))
	if err != nil {
		t.Fatal(err)
	}
	if c.MAC == in.MAC || c.MAC == "" {
		t.Errorf("the clone has MAC %q (source %q)", c.MAC, in.MAC)
	}
	list, err := f.p.List(ctx)
	if err != nil || len(list) != 2 {
		t.Errorf("list: %v %+v", err, list)
	}
	if err := f.p.Delete(ctx, "w2"); err != nil {
		t.Fatal(err)
	}
	f.golden(t, "clone-del.golden", f.calls(t))
}

func TestVBox_Errors(t *testing.T) {
	ctx := context.Background()
	t.Run("NoVBoxManage", func(t *testing.T) {
		f := newFixture(t, "rhel9")
		t.Setenv("PATH", t.TempDir())
		_, err := f.p.Build(ctx, f.spec(t, "w1"))
		if !errors.Is(err, ErrNoVBoxManage) || strings.Count(err.Error(), "\n") > 0 {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("NameTaken", func(t *testing.T) {
		f := newFixture(t, "rhel9")
		vm := filepath.Join(f.root, "vms", "booted-prod-w1")
		os.MkdirAll(vm, 0o755)
		os.WriteFile(filepath.Join(vm, "description"), []byte("someone's VM\n"), 0o644)
		os.WriteFile(filepath.Join(vm, "VMState"), []byte("poweroff\n"), 0o644)
		_, err := f.p.Build(ctx, f.spec(t, "w1"))
		if err == nil || !strings.Contains(err.Error(), "booted did not make") {
			t.Errorf("err = %v", err)
		}
		if err := f.p.Delete(ctx, "w1"); err == nil {
			t.Error("deleted a VM booted did not make")
		}
	})
	t.Run("ISOMissing", func(t *testing.T) {
		f := newFixture(t, "rhel9")
		f.p.set.ISO = filepath.Join(f.root, "nope.iso")
		_, err := f.p.Build(ctx, f.spec(t, "w1"))
		if err == nil || !strings.Contains(err.Error(), "nope.iso not found") || !strings.Contains(err.Error(), "provider.vbox.iso") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("NoKernel", func(t *testing.T) {
		f := newFixture(t, "rhel9")
		os.Remove(filepath.Join(f.p.TFTP, "booted", "prod", "vmlinuz"))
		_, err := f.p.Build(ctx, f.spec(t, "w1"))
		if err == nil || !strings.Contains(err.Error(), "copy images/pxeboot/vmlinuz") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("TFTPNotWritable", func(t *testing.T) {
		f := newFixture(t, "rhel9")
		os.WriteFile(filepath.Join(f.root, "file"), nil, 0o644)
		f.p.TFTP = filepath.Join(f.root, "file", "TFTP")
		_, err := f.p.Build(ctx, f.spec(t, "w1"))
		if err == nil || !strings.Contains(err.Error(), "is not writable") {
			t.Errorf("err = %v", err)
		}
	})
}

// The conformance suite against the recorded fake VBoxManage: what the
// provider reports is checked; there is no guest to log in to.
func TestConformance(t *testing.T) {
	providertest.Run(t, func(t *testing.T) providertest.Subject {
		f := newFixture(t, "rhel9")
		return providertest.Subject{Provider: f.p, Spec: func(name string) provider.Spec { return f.spec(t, name) }}
	})
}

// An instance's size is the VM's CPUs, memory and disk (the env file's
// cpus and memory_mb are the default).
func TestVBox_InstanceSize(t *testing.T) {
	f := newFixture(t, "rhel9")
	s := f.spec(t, "w2")
	s.Size = provider.Size{CPUs: 2, MemoryMB: 4096, DiskGB: 16}
	if _, err := f.p.Build(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	calls := string(f.calls(t))
	for _, want := range []string{"--cpus 2 --memory 4096", "createmedium disk --filename", "--size 16384 --format VDI"} {
		if !strings.Contains(calls, want) {
			t.Errorf("VBoxManage calls lack %q:\n%s", want, calls)
		}
	}
}
