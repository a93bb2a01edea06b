package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Error is one problem in an env file.
type Error struct {
	File  string
	Line  int // 0 when unknown
	Field string
	Msg   string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Load reads envs/NAME.yaml from dir.
func Load(dir, name string) (*Env, error) {
	if !nameRE.MatchString(name) {
		return nil, fmt.Errorf("environment name %q: use 1-32 lower-case letters, digits and '-'", name)
	}
	path := filepath.Join(dir, name+".yaml")
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("environment %q: %s does not exist (the environments are the files in %s)", name, path, dir)
	}
	if err != nil {
		return nil, err
	}
	return Parse(path, name, data)
}

// Parse decodes and validates the content of an env file.
func Parse(path, name string, data []byte) (*Env, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, yamlErrors(path, err)
	}
	lines := map[string]int{}
	if len(root.Content) > 0 {
		indexLines(root.Content[0], "", lines)
	}
	env := &Env{Name: name, Path: path}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var errs []error
	if err := dec.Decode(env); err != nil && !errors.Is(err, io.EOF) {
		errs = append(errs, yamlErrors(path, err))
	}
	env.Name, env.Path = name, path
	env.applyDefaults()
	for _, e := range env.validate() {
		e.File = path
		if e.Line == 0 {
			e.Line = lookupLine(lines, e.Field)
		}
		errs = append(errs, e)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return env, nil
}

var yamlLineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// yamlErrors rewrites the decoder's "line N: msg" errors as file:N: msg.
func yamlErrors(path string, err error) error {
	var msgs []string
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{err.Error()}
	}
	var out []error
	for _, m := range msgs {
		e := &Error{File: path, Msg: m}
		if sm := yamlLineRE.FindStringSubmatch(m); sm != nil {
			e.Line, _ = strconv.Atoi(sm[1])
			e.Msg = sm[2]
		}
		e.Msg = strings.Replace(e.Msg, " not found in type config.", " is not known in ", 1)
		out = append(out, e)
	}
	return errors.Join(out...)
}

// indexLines records the line of every mapping key and sequence item by
// its dotted path (roles.workers.min, roles.workers.hosts[1]).
func indexLines(n *yaml.Node, path string, lines map[string]int) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			lines[p] = k.Line
			indexLines(v, p, lines)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			lines[p] = c.Line
			indexLines(c, p, lines)
		}
	}
}

// lookupLine finds the line of field, or of its nearest parent in the file.
func lookupLine(lines map[string]int, field string) int {
	for field != "" {
		if l, ok := lines[field]; ok {
			return l
		}
		i := strings.LastIndexAny(field, ".[")
		if i < 0 {
			break
		}
		field = field[:i]
	}
	return 0
}

var (
	nameRE     = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)
	hostRE     = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	serviceRE  = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)
	knownTypes = []string{ProviderLocal, ProviderStatic, ProviderVBox, ProviderBaremetal, ProviderQemu}
)

func (e *Env) applyDefaults() {
	if e.Callback.Port == 0 {
		e.Callback.Port = 8077
	}
	if e.Callback.Retry == 0 {
		e.Callback.Retry = Duration(2 * time.Minute)
	}
	// Hosts on this machine's bridge phone home to the bridge's address.
	var bridged interface{ Gateway() (netip.Prefix, error) }
	switch {
	case e.Provider.Local != nil:
		bridged = e.Provider.Local
	case e.Provider.Qemu != nil:
		bridged = e.Provider.Qemu
	}
	if bridged != nil && e.Callback.Address == "" {
		if gw, err := bridged.Gateway(); err == nil {
			e.Callback.Address = gw.Addr().String()
		}
	}
	if e.Provider.Qemu != nil {
		e.Provider.Qemu.applyDefaults()
	}
	if e.SSH.User == "" {
		e.SSH.User = "root"
	}
	if e.SSH.Port == 0 {
		e.SSH.Port = 22
	}
	def := orDefault
	def(&e.Timeouts.Boot, 2*time.Minute)
	def(&e.Timeouts.SSH, 10*time.Second)
	def(&e.Timeouts.Ping, 2*time.Second)
	def(&e.Timeouts.Command, 5*time.Minute)
	e.Monitor.applyDefaults()
	for _, r := range e.Roles {
		if r == nil {
			continue
		}
		if r.Count == 0 {
			if len(r.Hosts) > 0 {
				r.Count = len(r.Hosts)
			} else {
				r.Count = r.Min
			}
		}
		if r.Max == 0 {
			if len(r.Hosts) > 0 {
				r.Max = len(r.Hosts)
			} else {
				r.Max = r.Count
			}
		}
	}
}

// validate returns every problem, each naming its field.
func (e *Env) validate() []*Error {
	var errs []*Error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &Error{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	if e.Version != Version {
		if e.Version == 0 {
			bad("version", "missing: add `version: %d` at the top of the file", Version)
		} else {
			bad("version", "this booted reads version %d files, not %d: upgrade booted or rewrite the file for version %d", Version, e.Version, Version)
		}
	}
	p := e.Provider
	switch p.Type {
	case "":
		bad("provider.type", "missing: one of %s", strings.Join(knownTypes, ", "))
	case ProviderLocal:
		if p.Local == nil {
			bad("provider.local", "missing: the local provider needs `local: {subnet: 10.77.0.0/24}`")
		} else if pfx, err := netip.ParsePrefix(p.Local.Subnet); err != nil || !pfx.Addr().Is4() {
			bad("provider.local.subnet", "%q is not an IPv4 subnet such as 10.77.0.0/24", p.Local.Subnet)
		} else if pfx.Bits() < 16 || pfx.Bits() > 28 {
			bad("provider.local.subnet", "prefix length /%d: use /16 to /28", pfx.Bits())
		}
	case ProviderStatic:
		if p.Static == nil || len(p.Static.Hosts) == 0 {
			bad("provider.static.hosts", "missing: the static provider needs its hosts listed with name and address")
		} else {
			for i, h := range p.Static.Hosts {
				f := fmt.Sprintf("provider.static.hosts[%d]", i)
				if !hostRE.MatchString(h.Name) {
					bad(f+".name", "%q is not a valid host name (lower-case letters, digits, '-')", h.Name)
				}
				if h.Address == "" {
					bad(f+".address", "missing: the address or DNS name to reach %s at", h.Name)
				}
				if h.Port < 0 || h.Port > 65535 {
					bad(f+".port", "%d is not a TCP port", h.Port)
				}
			}
		}
	case ProviderVBox:
		if p.VBox == nil {
			bad("provider.vbox", "missing: the vbox provider needs its VM settings")
		} else {
			v := p.VBox
			if v.CPUs < 1 {
				bad("provider.vbox.cpus", "must be at least 1")
			}
			if v.MemoryMB < 512 {
				bad("provider.vbox.memory_mb", "must be at least 512")
			}
			if v.DiskGB < 4 {
				bad("provider.vbox.disk_gb", "must be at least 4")
			}
			if v.Network.Mode != "hostonly" && v.Network.Mode != "bridged" {
				bad("provider.vbox.network.mode", "%q: use hostonly or bridged", v.Network.Mode)
			}
		}
	case ProviderQemu:
		if p.Qemu == nil {
			bad("provider.qemu", "missing: the qemu provider needs `qemu: {subnet: 10.80.0.0/24}`")
		} else if pfx, err := netip.ParsePrefix(p.Qemu.Subnet); err != nil || !pfx.Addr().Is4() || pfx.Bits() < 16 || pfx.Bits() > 28 {
			bad("provider.qemu.subnet", "%q: use an IPv4 subnet from /16 to /28, such as 10.80.0.0/24", p.Qemu.Subnet)
		} else if a := p.Qemu.Accel; a != "auto" && a != "kvm" && a != "tcg" {
			bad("provider.qemu.accel", "%q: use auto, kvm or tcg", a)
		}
	case ProviderBaremetal:
	default:
		bad("provider.type", "%q is not a provider: use one of %s", p.Type, strings.Join(knownTypes, ", "))
	}
	if p.Type != ProviderLocal && p.Type != ProviderStatic && p.Type != ProviderQemu && e.Callback.Address == "" {
		bad("callback.address", "missing: the address hosts reach the controller's nginx at")
	}
	if e.Callback.Port < 1 || e.Callback.Port > 65535 {
		bad("callback.port", "%d is not a TCP port", e.Callback.Port)
	}
	if e.SSH.Port < 1 || e.SSH.Port > 65535 {
		bad("ssh.port", "%d is not a TCP port", e.SSH.Port)
	}
	for _, t := range []struct {
		f string
		d Duration
	}{{"timeouts.boot", e.Timeouts.Boot}, {"timeouts.ssh", e.Timeouts.SSH}, {"timeouts.ping", e.Timeouts.Ping}, {"timeouts.command", e.Timeouts.Command}, {"callback.retry", e.Callback.Retry}} {
		if t.d < 0 {
			bad(t.f, "must be positive")
		}
	}
	e.Monitor.validate(bad)
	if len(e.Roles) == 0 {
		bad("roles", "missing: an environment needs at least the %s role", RoleWorkers)
	} else if _, ok := e.Roles[RoleWorkers]; !ok {
		bad("roles", "missing the %s role", RoleWorkers)
	}
	seen := map[string]string{}
	names := make([]string, 0, len(e.Roles))
	for n := range e.Roles {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, rn := range names {
		r := e.Roles[rn]
		f := "roles." + rn
		if !serviceRE.MatchString(rn) {
			bad(f, "%q is not a valid role name", rn)
		}
		if r == nil {
			bad(f, "empty role: give hosts or prefix and count")
			continue
		}
		if r.Min < 0 {
			bad(f+".min", "must not be negative")
		}
		if r.Max < r.Min {
			bad(f+".max", "%d is less than min (%d)", r.Max, r.Min)
		}
		if r.Count < r.Min || r.Count > r.Max {
			bad(f+".count", "%d is outside min..max (%d..%d)", r.Count, r.Min, r.Max)
		}
		if len(r.Hosts) > 0 {
			if r.Prefix != "" {
				bad(f+".prefix", "give either hosts or prefix, not both")
			}
			if r.Max > len(r.Hosts) {
				bad(f+".max", "%d is more than the %d hosts listed", r.Max, len(r.Hosts))
			}
		} else if r.Prefix == "" {
			bad(f, "give the hosts' names (hosts: [a, b]) or a prefix to number them from")
		}
		for i, h := range r.AllNames() {
			hf := f + ".prefix"
			if len(r.Hosts) > 0 {
				hf = fmt.Sprintf("%s.hosts[%d]", f, i)
			}
			if !hostRE.MatchString(h) {
				bad(hf, "%q is not a valid host name (lower-case letters, digits, '-')", h)
			} else if prev, dup := seen[h]; dup {
				bad(hf, "host %s is also in role %s", h, prev)
			}
			seen[h] = rn
		}
		if r.Service != "" {
			if !serviceRE.MatchString(r.Service) {
				bad(f+".service", "%q is not a valid service name", r.Service)
			}
			if r.Version == "" {
				bad(f+".version", "missing: the version (git tag or commit) of %s to deploy", r.Service)
			}
		}
	}
	return errs
}

func sortStrings(s []string) { sort.Strings(s) }
