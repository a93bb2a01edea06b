package static

import (
	"fmt"
	"regexp"

	"booted/internal/config"
)

// Settings is the provider.static section of an env file: machines that
// already exist.
type Settings struct {
	// KnownHosts is the known_hosts file holding the hosts' keys; empty means
	// ~/.ssh/known_hosts. A relative path is relative to the project.
	KnownHosts string `yaml:"known_hosts"`
	Hosts      []Host `yaml:"hosts"`
}

// Host is one existing machine.
type Host struct {
	Name    string `yaml:"name"`
	Address string `yaml:"address"`
	// Port sshd listens on; zero means ssh.port of the env file.
	Port int `yaml:"port"`
}

var hostRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// Decode decodes and validates the provider.static section of env.
func Decode(env *config.Env, d *config.Decoder) any {
	s := &Settings{}
	if n := env.Provider.Section; n != nil {
		d.Decode(n, "provider.static", s)
	}
	if d.Broken("provider.static") {
		return nil
	}
	if len(s.Hosts) == 0 {
		d.Add(0, "provider.static.hosts", "missing: the static provider needs its hosts listed with name and address")
	}
	seen := map[string]bool{}
	for i, h := range s.Hosts {
		f := fmt.Sprintf("provider.static.hosts[%d]", i)
		if !hostRE.MatchString(h.Name) {
			d.Add(0, f+".name", "%q is not a valid host name (lower-case letters, digits, '-')", h.Name)
		} else if seen[h.Name] {
			d.Add(0, f+".name", "%s is listed twice", h.Name)
		}
		seen[h.Name] = true
		if h.Address == "" {
			d.Add(0, f+".address", "missing: the address or DNS name to reach %s at", h.Name)
		}
		if h.Port < 0 || h.Port > 65535 {
			d.Add(0, f+".port", "%d is not a TCP port", h.Port)
		}
	}
	return s
}

// DefaultCallback: static machines never phone home.
func (s *Settings) DefaultCallback() (string, bool) { return "", false }
