package config

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"booted/internal/creds"
	"booted/internal/query"
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

// Load reads envs/NAME.yaml from dir; providers decodes its provider
// section.
func Load(dir, name string, providers Providers) (*Env, error) {
	if !nameRE.MatchString(name) {
		return nil, fmt.Errorf("environment name %q: use 1-32 lower-case letters, digits and '-'", name)
	}
	path := filepath.Join(dir, name+".yaml")
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("environment %q: %s does not exist (the environments are the files in %s%s)", name, path, dir, List(dir))
	}
	if err != nil {
		return nil, err
	}
	return Parse(path, name, data, providers)
}

// List returns ": a, b, c", the environments of dir, for messages.
func List(dir string) string {
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		if n, ok := strings.CutSuffix(e.Name(), ".yaml"); ok && !e.IsDir() {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return ""
	}
	return ": " + strings.Join(names, ", ")
}

// Parse decodes and validates the content of an env file. Every problem is
// reported at once, each as file:line: field: what to do; a field that
// cannot be decoded adds no follow-on errors.
func Parse(path, name string, data []byte, providers Providers) (*Env, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, yamlErrors(path, err)
	}
	lines := map[string]int{}
	if len(root.Content) > 0 {
		indexLines(root.Content[0], "", lines)
	}
	env := &Env{Name: name, Path: path}
	d := &Decoder{}
	if len(root.Content) > 0 {
		d.Decode(&root, "", env)
	}
	env.Name, env.Path = name, path
	if !d.Broken("provider") {
		if providers == nil {
			d.Add(0, "provider", "no provider registry given (a bug in booted)")
		} else {
			env.Provider.Settings = providers.Decode(env, d)
		}
	}
	env.applyDefaults()
	errs := d.Errors()
	for _, e := range env.validate() {
		if !d.Broken(e.Field) {
			errs = append(errs, e)
		}
	}
	var out []error
	for _, e := range errs {
		e.File = path
		if e.Line == 0 {
			e.Line = lookupLine(lines, e.Field)
		}
		out = append(out, e)
	}
	if len(out) > 0 {
		return nil, errors.Join(out...)
	}
	return env, nil
}

var yamlLineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// yamlErrors rewrites a YAML syntax error "line N: msg" as file:N: msg.
func yamlErrors(path string, err error) error {
	e := &Error{File: path, Msg: err.Error()}
	if sm := yamlLineRE.FindStringSubmatch(e.Msg); sm != nil {
		e.Line, _ = strconv.Atoi(sm[1])
		e.Msg = sm[2]
	}
	e.Msg += " (a YAML syntax error: check the indentation and the quotes)"
	return e
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
	nameRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)
	sizeRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{0,31}$`)
	hostRE    = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	serviceRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)
)

func (e *Env) applyDefaults() {
	if e.Callback.Port == 0 {
		e.Callback.Port = 8077
	}
	if e.Callback.Retry == 0 {
		e.Callback.Retry = Duration(2 * time.Minute)
	}
	// Hosts on this machine's bridge phone home to the bridge's address
	// (the environment's provider's bridge, else the first role's that has one).
	if e.Callback.Address == "" {
		for _, st := range e.Provider.all() {
			if cd, ok := st.(CallbackDefaults); ok {
				if addr, _ := cd.DefaultCallback(); addr != "" {
					e.Callback.Address = addr
					break
				}
			}
		}
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
	if e.API.Quota.Instances == 0 {
		e.API.Quota.Instances = 20
	}
	if e.API.Quota.VCPUs == 0 {
		e.API.Quota.VCPUs = 64
	}
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
	for _, name := range sortedKeys(e.Sizes) {
		sz, f := e.Sizes[name], "sizes."+name
		if !sizeRE.MatchString(name) {
			bad(f, "%q: name sizes with lower-case letters, digits, '.' and '-' (such as m1.small)", name)
		}
		if sz.CPUs < 1 || sz.CPUs > 256 {
			bad(f+".cpus", "%d: use 1 to 256", sz.CPUs)
		}
		if sz.MemoryMB < 128 {
			bad(f+".memory_mb", "%d: use 128 or more", sz.MemoryMB)
		}
		if sz.DiskGB < 1 {
			bad(f+".disk_gb", "%d: use 1 or more", sz.DiskGB)
		}
	}
	if e.Version != Version {
		if e.Version == 0 {
			bad("version", "missing: add `version: %d` at the top of the file", Version)
		} else {
			bad("version", "this booted reads version %d files, not %d: upgrade booted or rewrite the file for version %d", Version, e.Version, Version)
		}
	}
	if e.Provider.PhonesHome() && e.Provider.Settings != nil && e.Callback.Address == "" {
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
	if e.API.Quota.Instances < 0 || e.API.Quota.VCPUs < 0 {
		bad("api.quota", "instances %d, vcpus %d: a limit is at least 1 (leave it out for 20 instances and 64 vCPUs)", e.API.Quota.Instances, e.API.Quota.VCPUs)
	}
	if t := e.API.TLS; (t.Cert == "") != (t.Key == "") || (t.CA != "" && t.Cert == "") {
		bad("api.tls", "give cert and key together (and ca, the file clients trust, only with them), or none for a certificate booted makes")
	}
	for i, u := range e.API.Admins {
		if err := creds.CheckUser(u); err != nil {
			bad(fmt.Sprintf("api.admins[%d]", i), "%v", err)
		}
	}
	if len(e.Sites) > 0 && len(e.NATS.URLs) == 0 {
		bad("nats.urls", "missing: sites need the NATS cluster their conductors take jobs from (nats: {urls: [tls://HOST:4222]})")
	}
	for i, u := range e.NATS.URLs {
		switch {
		case strings.HasPrefix(u, "nats://"): // jobs carry enrollment tokens and files
			bad(fmt.Sprintf("nats.urls[%d]", i), "%q: plain NATS would carry the sites' jobs (enrollment tokens, files) in clear; use tls://%s (nats:config makes the CA and the servers' certificate)", u, strings.TrimPrefix(u, "nats://"))
		case !strings.HasPrefix(u, "tls://"):
			bad(fmt.Sprintf("nats.urls[%d]", i), "%q: a tls:// URL (tls://HOST:4222)", u)
		}
	}
	if e.NATS.AckWait != 0 && e.NATS.AckWait.D() < time.Second {
		bad("nats.ack_wait", "%v: at least 1s (a conductor says it still works three times per ack wait)", e.NATS.AckWait.D())
	}
	if len(e.NATS.Routes) > 0 && len(e.NATS.Routes) != len(e.NATS.URLs) {
		bad("nats.routes", "%d routes for %d servers (nats.urls): one per server, in the same order", len(e.NATS.Routes), len(e.NATS.URLs))
	}
	for i, u := range e.NATS.Routes {
		if !strings.HasPrefix(u, "nats-route://") {
			bad(fmt.Sprintf("nats.routes[%d]", i), "%q: a nats-route://HOST:PORT URL", u)
		}
	}
	for _, name := range sortedKeys(e.Sites) {
		st := e.Sites[name]
		if !serviceRE.MatchString(name) {
			bad("sites."+name, "%q is not a valid site name (lower-case letters, digits, '-')", name)
		}
		if st == nil || len(st.Hosts)+len(st.Roles) == 0 {
			bad("sites."+name, "empty: give the site's hosts (globs) or roles")
			continue
		}
		for i, g := range st.Hosts {
			if _, err := path.Match(g, ""); err != nil {
				bad(fmt.Sprintf("sites.%s.hosts[%d]", name, i), "%q: %v", g, err)
			}
		}
		for i, r := range st.Roles {
			if _, ok := e.Roles[r]; !ok {
				bad(fmt.Sprintf("sites.%s.roles[%d]", name, i), "%q is not a role of this file", r)
			}
		}
		if st.Subnet != "" {
			if pfx, err := netip.ParsePrefix(st.Subnet); err != nil || !pfx.Addr().Is4() {
				bad("sites."+name+".subnet", "%q is not an IPv4 subnet such as 10.78.0.0/24", st.Subnet)
			} else if pfx.Bits() < 16 || pfx.Bits() > 28 {
				bad("sites."+name+".subnet", "prefix length /%d: use /16 to /28", pfx.Bits())
			} else {
				for _, other := range sortedKeys(e.Sites) {
					if o := e.Sites[other]; other < name && o != nil && o.Subnet != "" {
						if op, err := netip.ParsePrefix(o.Subnet); err == nil && op.Masked().Overlaps(pfx.Masked()) {
							bad("sites."+name+".subnet", "%s overlaps site %s's %s: each site's bridge needs a subnet of its own", st.Subnet, other, o.Subnet)
						}
					}
				}
			}
		}
	}
	e.ClassExprs = map[string]query.Expr{}
	for _, c := range sortedKeys(e.Classes) {
		if !serviceRE.MatchString(c) {
			bad("classes."+c, "%q is not a valid class name (lower-case letters, digits, '-')", c)
			continue
		}
		x, err := query.ParseCondition(e.Classes[c])
		if err != nil {
			bad("classes."+c, "%v", err)
			continue
		}
		e.ClassExprs[c] = x
	}
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
		for i, c := range r.Classes {
			if _, ok := e.Classes[c]; !ok {
				bad(fmt.Sprintf("%s.classes[%d]", f, i), "class %q is not defined: add it under classes: (e.g. %s: memory_mb >= 2048)", c, c)
			}
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

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
