package osimage

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"booted/internal/testutil"
)

var (
	rocky   = testutil.ISOLayouts["rocky"]
	centos7 = testutil.ISOLayouts["centos7"]
	alma    = testutil.ISOLayouts["alma"]
	debian  = testutil.ISOLayouts["debian"]
	ubuntu  = testutil.ISOLayouts["ubuntu"]
	makeISO = testutil.MakeISO
)

func TestInspect_Layouts(t *testing.T) {
	testutil.RequireCommands(t, "xorriso")
	ctx := context.Background()
	for _, c := range []struct {
		name, volid string
		files       map[string]string
		want        Info
		defaultName string
	}{
		{"rocky", "Rocky-9-3-x86_64-dvd", rocky, Info{Distro: "rhel", Product: "Rocky Linux", Version: "9.3", Arch: "x86_64", Method: MethodKickstart,
			Kernel: "images/pxeboot/vmlinuz", Initrd: "images/pxeboot/initrd.img"}, "rocky-9.3-x86_64"},
		{"centos7", "CentOS 7 x86_64", centos7, Info{Distro: "rhel", Product: "CentOS", Version: "7", Arch: "x86_64", Method: MethodKickstart,
			Kernel: "images/pxeboot/vmlinuz", Initrd: "images/pxeboot/initrd.img"}, "centos-7-x86_64"},
		{"alma", "AlmaLinux-9.4-x86_64-dvd", alma, Info{Distro: "rhel", Product: "AlmaLinux", Version: "9.4", Arch: "x86_64", Method: MethodKickstart,
			Kernel: "images/pxeboot/vmlinuz", Initrd: "images/pxeboot/initrd.img"}, "alma-9.4-x86_64"},
		{"debian", "Debian 12.5.0 amd64 n", debian, Info{Distro: "debian", Product: "Debian GNU/Linux", Version: "12.5.0", Arch: "amd64", Method: MethodPreseed,
			Kernel: "install.amd/vmlinuz", Initrd: "install.amd/initrd.gz"}, "debian-12.5.0-amd64"},
		{"ubuntu", "Ubuntu-Server 22.04.3 LTS amd64", ubuntu, Info{Distro: "ubuntu", Product: "Ubuntu", Version: "22.04.3", Arch: "amd64", Method: MethodAutoinstall,
			Kernel: "casper/vmlinuz", Initrd: "casper/initrd"}, "ubuntu-22.04.3-amd64"},
	} {
		t.Run(c.name, func(t *testing.T) {
			iso := makeISO(t, c.volid, c.files)
			got, err := Inspect(ctx, iso)
			if err != nil {
				t.Fatal(err)
			}
			c.want.ISO = filepath.Base(iso)
			if got != c.want {
				t.Errorf("Inspect:\n got %+v\nwant %+v", got, c.want)
			}
			if n := got.DefaultName(); n != c.defaultName {
				t.Errorf("DefaultName = %q, want %q", n, c.defaultName)
			}
		})
	}
}

// An ISO that is no installer booted knows, or no ISO at all, is refused
// with what was looked for; nothing is imported.
func TestInspect_Refuses(t *testing.T) {
	testutil.RequireCommands(t, "xorriso")
	ctx := context.Background()
	dir := t.TempDir()
	random := makeISO(t, "PHOTOS_2024", map[string]string{"DCIM/img001.jpg": "jpeg", "README.txt": "holiday"})
	_, err := Import(ctx, random, dir, "")
	for _, want := range []string{random, "not an installer booted knows", ".treeinfo", "casper/vmlinuz", ".disk/info", "install.amd/vmlinuz", "top level has: DCIM, README.txt"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("random ISO: error %v, want it to say %q", err, want)
		}
	}
	noInstaller := makeISO(t, "Debian 12 amd64 1", map[string]string{".disk/info": "Debian GNU/Linux 12.5.0 amd64 DVD", "pool/x.deb": "x"})
	if _, err := Import(ctx, noInstaller, dir, ""); err == nil || !strings.Contains(err.Error(), "not an installer booted knows") {
		t.Errorf("Debian ISO without install.amd/: %v", err)
	}
	brokenTree := makeISO(t, "Rocky", map[string]string{".treeinfo": "[release]\nname = Rocky Linux\nversion = 9.3\n[tree]\narch = x86_64\n"})
	if _, err := Import(ctx, brokenTree, dir, ""); err == nil || !strings.Contains(err.Error(), "images/pxeboot/vmlinuz") {
		t.Errorf("RHEL tree without its installer: %v", err)
	}
	notISO := filepath.Join(t.TempDir(), "disk.iso")
	os.WriteFile(notISO, []byte(strings.Repeat("not an iso\n", 1000)), 0o644)
	if _, err := Import(ctx, notISO, dir, ""); err == nil || !strings.Contains(err.Error(), "not a readable ISO 9660 image") || !strings.Contains(err.Error(), notISO) {
		t.Errorf("not an ISO: %v", err)
	}
	if _, err := Import(ctx, filepath.Join(dir, "missing.iso"), dir, ""); err == nil || !strings.Contains(err.Error(), "missing.iso") {
		t.Errorf("missing file: %v", err)
	}
	if l, err := List(dir); err != nil || len(l) != 0 {
		t.Errorf("after refused imports: List = %v, %v; want nothing", l, err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("refused imports left %v behind", ents)
	}
}

// Import copies the installer and the tree, records the osimage, refuses a
// second import under the same name and a bad name; Delete removes it.
func TestImport_ListDelete(t *testing.T) {
	testutil.RequireCommands(t, "xorriso")
	ctx := context.Background()
	dir := t.TempDir()
	before := time.Now().Add(-time.Second)
	in, err := Import(ctx, makeISO(t, "Rocky-9-3-x86_64-dvd", rocky), dir, "")
	if err != nil {
		t.Fatal(err)
	}
	if in.Name != "rocky-9.3-x86_64" || in.Kernel != "tree/images/pxeboot/vmlinuz" || in.Imported.Before(before) || in.Bytes == 0 {
		t.Errorf("imported %+v", in)
	}
	for p, body := range rocky {
		got, err := os.ReadFile(filepath.Join(dir, in.Name, "tree", p))
		if err != nil || string(got) != body {
			t.Errorf("tree/%s = %q, %v; want the ISO's %q", p, got, err, body)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, in.Name, in.Kernel)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("kernel: %v %v, want mode 0600 (the tree is root's)", fi.Mode(), err)
	}
	if _, err := Import(ctx, makeISO(t, "Ubuntu", ubuntu), dir, "Bad/Name"); err == nil || !strings.Contains(err.Error(), `"Bad/Name"`) {
		t.Errorf("bad name: %v", err)
	}
	ub, err := Import(ctx, makeISO(t, "Ubuntu", ubuntu), dir, "jammy")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "jammy", "install.iso")); err != nil {
		t.Errorf("ubuntu osimage keeps its ISO for the installer's url=: %v", err)
	}
	if _, err := Import(ctx, makeISO(t, "Rocky", rocky), dir, ""); err == nil || !strings.Contains(err.Error(), "already imported") {
		t.Errorf("second import under one name: %v", err)
	}
	l, err := List(dir)
	if err != nil || len(l) != 2 || l[0].Name != "jammy" || l[1].Name != in.Name || l[0] != ub {
		t.Errorf("List = %+v, %v", l, err)
	}
	if err := Delete(dir, "jammy"); err != nil {
		t.Fatal(err)
	}
	if err := Delete(dir, "jammy"); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "jammy") {
		t.Errorf("deleting it again: %v", err)
	}
	if l, _ := List(dir); len(l) != 1 || l[0].Name != in.Name {
		t.Errorf("after delete: %+v", l)
	}
}

// An ISO's links that leave its tree are not kept, and nothing outside
// the tree is changed through one (the import chmods what it extracted):
// a link to a file of the controller's keeps that file as it was.
func TestImport_LinksStayInTheTree(t *testing.T) {
	testutil.RequireCommands(t, "xorriso")
	outside := filepath.Join(t.TempDir(), "authorized_keys")
	os.WriteFile(outside, []byte("ssh-ed25519 AAAA operator\n"), 0o644)
	files := map[string]string{
		"dists/stable": "symlink:bookworm", // a distribution's own: kept
		"evil":         "symlink:" + outside,
		"up":           "symlink:../../../../../..",
		"deep/hop":     "symlink:../up", // through a link that leaves
	}
	for p, b := range debian {
		files[p] = b
	}
	dir := t.TempDir()
	in, err := Import(context.Background(), makeISO(t, "Debian 12.5.0 amd64 n", files), dir, "deb")
	if err != nil {
		t.Fatal(err)
	}
	tree := filepath.Join(dir, in.Name, "tree")
	if target, err := os.Readlink(filepath.Join(tree, "dists", "stable")); err != nil || target != "bookworm" {
		t.Errorf("dists/stable: %q %v, want the link to bookworm kept", target, err)
	}
	for _, p := range []string{"evil", "up", "deep/hop"} {
		if _, err := os.Lstat(filepath.Join(tree, p)); err == nil {
			t.Errorf("%s: a link out of the tree was kept", p)
		}
	}
	if st, err := os.Stat(outside); err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("the file a link pointed at: %v %v, want it left 0644", st.Mode(), err)
	}
}
