package baremetal

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"booted/internal/atomicfile"
	"booted/internal/bootlog"
	"booted/internal/kickstart"
	"booted/internal/osimage"
	"booted/internal/provider"
	"booted/internal/provider/qemu"
)

// BuiltIn is the osimage booted builds itself (the qemu provider's Debian
// image, installed by booted's own installer).
const BuiltIn = "debian"

// OSImagesDir is where osimage:import puts the imported osimages
// (inventory/ENV/osimages).
func (p *Provider) OSImagesDir() string { return p.osimages }

// OSImageOf is what node name is installed from: node:deploy's choice, or
// the node's osimage in the env file, or the section's.
func (p *Provider) OSImageOf(name string) string {
	if b, err := os.ReadFile(p.of(name).state(name, "osimage")); err == nil && strings.TrimSpace(string(b)) != "" {
		return strings.TrimSpace(string(b))
	}
	if n, ok := p.set.node(name); ok && n.OSImage != "" {
		return n.OSImage
	}
	return p.set.OSImage
}

// SetOSImage makes node name install from osimage img at its next deploy
// (node:deploy): img must be the built-in image or an imported one.
func (p *Provider) SetOSImage(name, img string) error {
	if !p.Listed(name) {
		return fmt.Errorf("node %s is not listed in provider.baremetal.nodes of %s: %w", name, p.env.Path, provider.ErrNoInstance)
	}
	if _, err := p.imageInfo(img); err != nil {
		return err
	}
	q := p.of(name)
	if err := os.MkdirAll(filepath.Join(q.dir, "state"), 0o700); err != nil {
		return err
	}
	return os.WriteFile(q.state(name, "osimage"), []byte(img+"\n"), 0o600)
}

// UsedBy returns the nodes whose next or current install is from img.
func (p *Provider) UsedBy(img string) []string {
	var out []string
	for _, n := range p.set.Nodes {
		if p.OSImageOf(n.Name) == img {
			out = append(out, n.Name)
		}
	}
	return out
}

// imageInfo describes osimage img without building or linking it.
func (p *Provider) imageInfo(img string) (osimage.Info, error) {
	if img == BuiltIn {
		return osimage.Info{Name: BuiltIn, Distro: "debian", Product: "Debian GNU/Linux (built by booted)", Method: osimage.MethodImage,
			Kernel: "vmlinuz", Initrd: "installer.img"}, nil
	}
	in, err := osimage.Read(p.OSImagesDir(), img)
	if errors.Is(err, fs.ErrNotExist) {
		return in, fmt.Errorf("osimage %q: no such osimage (osimage:list %s shows them; osimage:import %s ISO imports one)", img, p.env.Name, p.env.Name)
	}
	return in, err
}

// ensureImage makes osimage img (building the built-in one if it is not
// yet) and serves it at /metal/images/IMG/.
func (p *Provider) ensureImage(ctx context.Context, img string) (osimage.Info, error) {
	in, err := p.imageInfo(img)
	if err != nil {
		return in, err
	}
	target := filepath.Join(p.OSImagesDir(), img)
	if img == BuiltIn {
		b, err := qemu.BuildImage(ctx, qemu.Settings{}, p.log)
		if err != nil {
			return in, err
		}
		m, err := osimage.FromQemu(ctx, b.Dir, b.Disk, b.Kernel, b.Initrd, p.log)
		if err != nil {
			return in, err
		}
		target = m.Dir
	}
	link := filepath.Join(p.dir, "images", img)
	if cur, err := os.Readlink(link); err == nil && cur == target {
		return in, nil
	}
	if err := os.MkdirAll(filepath.Dir(link), 0o700); err != nil {
		return in, err
	}
	os.Remove(link)
	return in, os.Symlink(target, link)
}

// installer returns the kernel, initrd and kernel arguments that install
// node n from img.
func (p *Provider) installer(n Node, img osimage.Info) (kernel, initrd, args string) {
	base := p.baseURL + "/metal/images/" + img.Name + "/"
	kernel, initrd = base+img.Kernel, base+img.Initrd
	ks := p.baseURL + "/metal/ks/" + n.Name + "/"
	switch img.Method {
	case osimage.MethodKickstart:
		args = fmt.Sprintf("inst.repo=%stree inst.ks=%sks.cfg inst.text ip=dhcp console=ttyS0,115200", base, ks)
	case osimage.MethodPreseed:
		args = fmt.Sprintf("auto=true priority=critical url=%spreseed.cfg interface=auto hostname=%s domain= console=ttyS0,115200", ks, n.Name)
	case osimage.MethodAutoinstall:
		args = fmt.Sprintf("ip=dhcp url=%sinstall.iso autoinstall ds=nocloud-net;s=%s console=ttyS0,115200", base, ks)
	default:
		args = fmt.Sprintf("console=ttyS0 booted.url=%s booted.name=%s booted.image=%s", p.baseURL, n.Name, img.Name)
	}
	return kernel, initrd, args
}

// writeInstallFiles renders node n's kickstart, preseed or autoinstall
// (with post.sh) for img, served to its address alone at /metal/ks/NODE/.
func (p *Provider) writeInstallFiles(n Node, s provider.Spec, img osimage.Info) error {
	dir := filepath.Join(p.dir, "ks", n.Name)
	os.RemoveAll(dir)
	if img.Method == osimage.MethodImage {
		return nil
	}
	u, err := url.Parse(p.baseURL)
	if err != nil {
		return err
	}
	tree := "/metal/images/" + img.Name + "/tree"
	files, err := kickstart.RenderMetal(filepath.Join(p.root, "kickstart"), img.Method, kickstart.Data{
		Name: n.Name, Env: p.env.Name, AuthorizedKey: strings.TrimSpace(string(s.AuthorizedKey)), PhoneHome: string(s.PhoneHome),
		Token: s.Token, FailedURL: p.failed, ServicePort: p.servicePort(), InstalledURL: p.baseURL + bootlog.InstalledPath,
		TreeURL: p.baseURL + tree, MirrorHost: u.Host, MirrorDir: tree, PostURL: p.baseURL + "/metal/ks/" + n.Name + "/post.sh",
		MAC: strings.ToLower(n.Primary().MAC),
	})
	if err != nil {
		return err
	}
	for name, b := range files {
		if err := atomicfile.Write(filepath.Join(dir, name), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// servicePort is the port a kickstart opens for the role's service.
func (p *Provider) servicePort() int {
	if len(p.ports) > 0 {
		return p.ports[0]
	}
	return 8080
}

// Unserve stops serving osimage img (osimage:del).
func (p *Provider) Unserve(img string) error {
	for _, part := range p.sites {
		if err := part.Unserve(img); err != nil {
			return err
		}
	}
	err := os.Remove(filepath.Join(p.dir, "images", img))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// Forget makes node name's next deploy install it again (node:deploy).
func (p *Provider) Forget(name string) error {
	err := os.Remove(p.of(name).state(name, "installed"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}
