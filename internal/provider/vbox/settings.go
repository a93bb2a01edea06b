package vbox

import (
	"booted/internal/config"
)

// Settings is the provider.vbox section of an env file: VirtualBox VMs
// built with kickstart.
type Settings struct {
	OSType   string `yaml:"os_type"`
	CPUs     int    `yaml:"cpus"`
	MemoryMB int    `yaml:"memory_mb"`
	DiskGB   int    `yaml:"disk_gb"`
	// ISO is the installer's ISO, relative to the project or absolute.
	ISO string `yaml:"iso"`
	// Kickstart names kickstart/NAME.ks.tmpl (rhel9, centos7).
	Kickstart string  `yaml:"kickstart"`
	Network   Network `yaml:"network"`
}

// Network is the VM's second NIC, the one the hosts are reached on.
type Network struct {
	// Mode is "hostonly" or "bridged".
	Mode string `yaml:"mode"`
	// Name is the host-only network or the host interface to bridge to.
	Name string `yaml:"name"`
	// Subnet the VMs' addresses come from.
	Subnet string `yaml:"subnet"`
}

// Decode decodes and validates the provider.vbox section of env.
func Decode(env *config.Env, d *config.Decoder) any {
	n := env.Provider.Section
	if n == nil {
		d.Add(0, "provider.vbox", "missing: the vbox provider needs its VM settings")
		return nil
	}
	v := &Settings{}
	d.Decode(n, "provider.vbox", v)
	if d.Broken("provider.vbox") {
		return nil
	}
	if v.CPUs < 1 {
		d.Add(0, "provider.vbox.cpus", "must be at least 1")
	}
	if v.MemoryMB < 512 {
		d.Add(0, "provider.vbox.memory_mb", "must be at least 512")
	}
	if v.DiskGB < 4 {
		d.Add(0, "provider.vbox.disk_gb", "must be at least 4")
	}
	if v.Network.Mode != "hostonly" && v.Network.Mode != "bridged" {
		d.Add(0, "provider.vbox.network.mode", "%q: use hostonly or bridged", v.Network.Mode)
	}
	return v
}
