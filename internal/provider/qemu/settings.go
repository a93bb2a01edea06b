package qemu

import (
	"net/netip"

	"booted/internal/config"
)

// Settings is the provider.qemu section of an env file: virtual machines
// run by qemu on this machine, booted from a Debian image booted builds
// with debootstrap. Zero values take the defaults shown.
type Settings struct {
	// Subnet of the environment's bridge, as for local hosts.
	Subnet string `yaml:"subnet"`
	// CPUs (default 1), MemoryMB (default 512) and DiskGB (default 2) of
	// each VM.
	CPUs     int `yaml:"cpus"`
	MemoryMB int `yaml:"memory_mb"`
	DiskGB   int `yaml:"disk_gb"`
	// Accel is auto (try KVM, fall back to TCG; the default), kvm or tcg.
	Accel string `yaml:"accel"`
	// Suite and Mirror of the Debian image (default bookworm from
	// deb.debian.org).
	Suite  string `yaml:"suite"`
	Mirror string `yaml:"mirror"`
	// ImageDir caches built images across environments and runs (default
	// /var/cache/booted/images).
	ImageDir string `yaml:"image_dir"`
}

// Decode decodes and validates the provider.qemu section of env.
func Decode(env *config.Env, d *config.Decoder) any {
	n := env.Provider.Section
	if n == nil {
		d.Add(0, "provider.qemu", "missing: the qemu provider needs `qemu: {subnet: 10.80.0.0/24}`")
		return nil
	}
	q := &Settings{}
	d.Decode(n, "provider.qemu", q)
	if d.Broken("provider.qemu") {
		return nil
	}
	q.applyDefaults()
	if pfx, err := netip.ParsePrefix(q.Subnet); err != nil || !pfx.Addr().Is4() || pfx.Bits() < 16 || pfx.Bits() > 28 {
		d.Add(0, "provider.qemu.subnet", "%q: use an IPv4 subnet from /16 to /28, such as 10.80.0.0/24", q.Subnet)
	}
	if a := q.Accel; a != "auto" && a != "kvm" && a != "tcg" {
		d.Add(0, "provider.qemu.accel", "%q: use auto, kvm or tcg", a)
	}
	if q.CPUs < 1 || q.MemoryMB < 128 || q.DiskGB < 1 {
		d.Add(0, "provider.qemu", "cpus must be at least 1, memory_mb at least 128 and disk_gb at least 1")
	}
	return q
}

func (q *Settings) applyDefaults() {
	orZero := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	orEmpty := func(v *string, d string) {
		if *v == "" {
			*v = d
		}
	}
	orZero(&q.CPUs, 1)
	orZero(&q.MemoryMB, 512)
	orZero(&q.DiskGB, 2)
	orEmpty(&q.Accel, "auto")
	orEmpty(&q.Suite, "bookworm")
	orEmpty(&q.Mirror, "http://deb.debian.org/debian")
	orEmpty(&q.ImageDir, "/var/cache/booted/images")
}

// Gateway returns the bridge's address (the first of the subnet).
func (q *Settings) Gateway() (netip.Prefix, error) { return config.GatewayOf(q.Subnet) }

// DefaultCallback: VMs phone home to the bridge's address.
func (q *Settings) DefaultCallback() (string, bool) {
	gw, err := q.Gateway()
	if err != nil {
		return "", true
	}
	return gw.Addr().String(), true
}
