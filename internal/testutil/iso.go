package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// MakeISO writes an ISO 9660 image (Rock Ridge and Joliet, as distribution
// ISOs are) holding files, with xorriso, and returns its path. A body
// "symlink:TARGET" makes a symbolic link to TARGET (Rock Ridge keeps it).
func MakeISO(t testing.TB, volid string, files map[string]string) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "root")
	for p, body := range files {
		f := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			t.Fatal(err)
		}
		if target, ok := strings.CutPrefix(body, "symlink:"); ok {
			if err := os.Symlink(target, f); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(f, []byte(body), 0o444); err != nil {
			t.Fatal(err)
		}
	}
	iso := filepath.Join(t.TempDir(), strings.ToLower(volid)+".iso")
	if b, err := exec.Command("xorriso", "-as", "mkisofs", "-quiet", "-R", "-J", "-V", volid, "-o", iso, root).CombinedOutput(); err != nil {
		t.Fatalf("xorriso: %v: %s", err, b)
	}
	return iso
}

// ISOLayouts are the layouts of the distributions' installer ISOs, reduced
// to what booted reads (the .treeinfo formats are productmd's and the older
// one): rocky, centos7, alma (no .treeinfo), debian, ubuntu.
var ISOLayouts = map[string]map[string]string{
	"rocky": {
		".treeinfo": "[header]\ntype = productmd.treeinfo\nversion = 1.2\n\n[release]\nname = Rocky Linux\nshort = Rocky\nversion = 9.3\n\n" +
			"[tree]\narch = x86_64\nbuild_timestamp = 1699920000\nplatforms = x86_64,xen\n\n" +
			"[images-x86_64]\nefiboot.img = images/efiboot.img\ninitrd = images/pxeboot/initrd.img\nkernel = images/pxeboot/vmlinuz\n",
		"images/pxeboot/vmlinuz":     "rocky kernel\n",
		"images/pxeboot/initrd.img":  "rocky initrd\n",
		"BaseOS/repodata/repomd.xml": "<repomd/>\n",
	},
	"centos7": {
		".treeinfo":                 "[general]\nname = CentOS-7\nfamily = CentOS\nversion = 7\narch = x86_64\n\n[images-x86_64]\nkernel = images/pxeboot/vmlinuz\ninitrd = images/pxeboot/initrd.img\n",
		"images/pxeboot/vmlinuz":    "centos kernel\n",
		"images/pxeboot/initrd.img": "centos initrd\n",
	},
	"alma": { // no .treeinfo: the volume ID gives the version
		"images/pxeboot/vmlinuz":    "alma kernel\n",
		"images/pxeboot/initrd.img": "alma initrd\n",
	},
	"debian": {
		".disk/info":             `Debian GNU/Linux 12.5.0 "Bookworm" - Official amd64 NETINST with firmware 20240210-11:27`,
		"install.amd/vmlinuz":    "debian kernel\n",
		"install.amd/initrd.gz":  "debian initrd\n",
		"dists/bookworm/Release": "Suite: stable\n",
		"pool/main/b/base/x.deb": "deb\n",
	},
	"ubuntu": {
		".disk/info":     `Ubuntu-Server 22.04.3 LTS "Jammy Jellyfish" - Release amd64 (20230810)`,
		".disk/info.txt": "",
		"casper/vmlinuz": "ubuntu kernel\n",
		"casper/initrd":  "ubuntu initrd\n",
	},
}
