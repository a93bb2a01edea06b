package config

import (
	"fmt"
	"maps"
	"net/netip"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"booted/internal/query"
)

// Version is the env file format this booted reads.
const Version = 1

// Role names every env file knows. Other role names are allowed too.
const (
	RoleLoadBalancers = "loadbalancers"
	RoleWorkers       = "workers"
)

// Env is one environment: the hosts of its roles, how they are provisioned
// and reached, and how long each stage may take.
type Env struct {
	// Version of the file format; must be Version.
	Version  int              `yaml:"version"`
	Provider Provider         `yaml:"provider"`
	Callback Callback         `yaml:"callback"`
	SSH      SSH              `yaml:"ssh"`
	Timeouts Timeouts         `yaml:"timeouts"`
	Roles    map[string]*Role `yaml:"roles"`
	// Monitor is the scaling policy of monitor:run; the workers role's min
	// and max bound it.
	Monitor Monitor `yaml:"monitor"`
	// Sizes are the instance types users may ask for (EC2's instance
	// types, PiNet's sizes), by name; none: booted's defaults.
	Sizes map[string]Size `yaml:"sizes"`
	// API is the REST API's policy.
	API API `yaml:"api"`
	// NATS is the cluster conductors and the controller meet on; Sites
	// say which hosts each site's conductors work on. Without them
	// everything runs in the process of the target, as it always did.
	NATS  NATS             `yaml:"nats"`
	Sites map[string]*Site `yaml:"sites"`
	// Classes are named conditions over hosts' attributes and facts
	// (clusto's and FAI's classes): bigmem: memory_mb >= 2048, or any
	// expression of package query. A role may require classes.
	Classes map[string]string `yaml:"classes"`
	// ClassExprs are Classes parsed.
	ClassExprs map[string]query.Expr `yaml:"-"`

	// Name is the environment's name: the file name without ".yaml".
	Name string `yaml:"-"`
	// Path is the file the environment was read from.
	Path string `yaml:"-"`
}

// Provider says how hosts are made: Type names the provider, and the
// section of that name (provider.local, provider.qemu, ...) is decoded and
// validated by the provider's own package, through Providers.
type Provider struct {
	Type string
	// Section is the node of provider.TYPE; nil when the file has none.
	Section *yaml.Node
	// Others are the sections not named by Type, by name (each an error).
	Others map[string]*yaml.Node
	// Settings is what the provider's package decoded from Section.
	Settings any
	// Roles are the settings of the providers roles name (a role's
	// provider: TYPE, with its section provider.TYPE beside the
	// environment's), by type.
	Roles map[string]any
}

// DecodeNode reads type and keeps the sections for the provider's package.
func (p *Provider) DecodeNode(d *Decoder, n *yaml.Node, field string) {
	if isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.fail(n, field, "want a mapping with type and the provider's section, found %s", kind(n))
		return
	}
	sections := map[string]*yaml.Node{}
	d.keys(n, field, func(k string, kn, vn *yaml.Node) {
		if k == "type" {
			d.decode(vn, field+".type", reflect.ValueOf(&p.Type).Elem())
			return
		}
		sections[k] = vn
	})
	if s, ok := sections[p.Type]; ok {
		p.Section = s
		delete(sections, p.Type)
	}
	if len(sections) > 0 {
		p.Others = sections
	}
}

// Providers decodes provider sections: the provider registry implements it.
type Providers interface {
	// Decode decodes and validates env.Provider.Section for
	// env.Provider.Type, reporting every problem to d with its field path
	// (provider.TYPE.FIELD), and returns the provider's settings.
	Decode(env *Env, d *Decoder) any
}

// all returns the settings of the environment's provider, then of its
// roles' providers by type.
func (p *Provider) all() []any {
	out := []any{p.Settings}
	for _, t := range slices.Sorted(maps.Keys(p.Roles)) {
		out = append(out, p.Roles[t])
	}
	return out
}

// PhonesHome says whether some host of the environment phones home: one
// of its providers (the environment's or a role's) has hosts whose keys it
// does not know beforehand (the one rule: a provider whose settings say
// otherwise through CallbackDefaults, static's, pins known keys instead).
func (p *Provider) PhonesHome() bool {
	for _, st := range p.all() {
		if cd, ok := st.(CallbackDefaults); ok {
			if _, phones := cd.DefaultCallback(); !phones {
				continue
			}
		}
		return true
	}
	return false
}

// CallbackDefaults is implemented by provider settings that know where
// their hosts phone home when callback.address is not given (the address
// of this machine's bridge the hosts sit on), or that their hosts never
// phone home (machines that already exist).
type CallbackDefaults interface {
	DefaultCallback() (addr string, phoneHome bool)
}

// Bridged is implemented by provider settings whose hosts sit on a bridge
// of this machine.
type Bridged interface {
	// Gateway returns the bridge's address with the subnet's length.
	Gateway() (netip.Prefix, error)
}

// GatewayOf returns the first address of subnet, with its length: the
// address of the bridge the hosts of that subnet sit on.
func GatewayOf(subnet string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(subnet)
	if err != nil {
		return netip.Prefix{}, err
	}
	p = p.Masked()
	return netip.PrefixFrom(p.Addr().Next(), p.Bits()), nil
}

// Callback is where hosts phone home: the controller's nginx.
type Callback struct {
	// Address nginx listens on. Empty means the local bridge's address.
	Address string `yaml:"address"`
	// Port nginx listens on. Zero means 8077.
	Port int `yaml:"port"`
	// Retry is how long a host keeps retrying its phone-home. Zero means 2m.
	Retry Duration `yaml:"retry"`
}

// SSH says how booted logs in to hosts.
type SSH struct {
	// User to log in as. Empty means root.
	User string `yaml:"user"`
	// Key is the private deploy key. Empty means inventory/ENV/id_ed25519,
	// generated on first use.
	Key string `yaml:"key"`
	// Port sshd listens on. Zero means 22.
	Port int `yaml:"port"`
}

// Timeouts bound each stage. Zero values take the defaults shown.
type Timeouts struct {
	// Boot: from start to phone-home (default 2m); past it a host is failed.
	Boot Duration `yaml:"boot"`
	// SSH: to connect and handshake with one host (default 10s).
	SSH Duration `yaml:"ssh"`
	// Ping: to wait for an ICMP echo reply (default 2s).
	Ping Duration `yaml:"ping"`
	// Command: for one command on one host (default 5m).
	Command Duration `yaml:"command"`
}

// Role is a group of hosts that run the same service.
type Role struct {
	// Hosts names the role's hosts. When empty, names are Prefix1..PrefixN.
	Hosts  []string `yaml:"hosts"`
	Prefix string   `yaml:"prefix"`
	// Count is how many hosts env:startAll brings up. Zero means
	// len(Hosts), or Min when Hosts is empty.
	Count int `yaml:"count"`
	Min   int `yaml:"min"`
	Max   int `yaml:"max"`
	// Service and Version run on the role's hosts.
	Service string `yaml:"service"`
	Version string `yaml:"version"`
	// Classes are the classes (Env.Classes) a host must be in to be used
	// for the role; one that is not is left out, and env:status says why.
	Classes []string `yaml:"classes"`
	// Provider makes the role's hosts when it is not the environment's
	// (a local-host load balancer beside bare-metal workers); its section
	// provider.TYPE sits beside the environment's.
	Provider string `yaml:"provider"`
}

// NATS is how to reach the NATS cluster.
type NATS struct {
	URLs []string `yaml:"urls"`
	// Credentials is the controller's credentials file (a user JWT and
	// its nkey seed, nsc's .creds, or an nkey seed file); empty: the seed
	// nats:config made (inventory/ENV/nats/controller.nk), if any.
	Credentials string `yaml:"credentials"`
	// CA is the certificate authority the servers' TLS certificates are
	// checked against; empty: the one nats:config made, if any.
	CA string `yaml:"ca"`
	// Routes are the servers' cluster URLs for nats:config, one per URL
	// in the same order; empty: each client port + 2000.
	Routes []string `yaml:"routes"`
	// AckWait is how long a conductor may go without saying it still
	// works on a job before JetStream hands the job to another (it says
	// so three times per AckWait); default 10s.
	AckWait Duration `yaml:"ack_wait"`
}

// Site is the hosts one site's conductors work on: those named (globs)
// and those of the roles listed.
type Site struct {
	Hosts []string `yaml:"hosts"`
	Roles []string `yaml:"roles"`
	// Credentials are the site's conductors' (as nats.credentials);
	// empty: the seed nats:config made for the site, if any.
	Credentials string `yaml:"credentials"`
	// Subnet gives the site's local hosts a bridge of their own on this
	// subnet (as provider.local.subnet: the bridge takes the first
	// address), its conductors' network; booted routes between its
	// environment's bridges and nowhere else. Empty: the environment's
	// bridge.
	Subnet string `yaml:"subnet"`
}

// SiteOf returns the site of host (in role), or "" when it has none (the
// controller works on it itself).
func (e *Env) SiteOf(host, role string) string {
	for _, name := range sortedKeys(e.Sites) {
		st := e.Sites[name]
		for _, r := range st.Roles {
			if r == role {
				return name
			}
		}
		for _, g := range st.Hosts {
			if ok, _ := path.Match(g, host); ok {
				return name
			}
		}
	}
	return ""
}

// SiteGateway is site's gateway (its router's address on its network) if
// the site has a network of its own and conductors (NATS): the one rule
// for whether a site's hosts are made by its conductors, served and
// phoned home to on its router.
func (e *Env) SiteGateway(site string) (netip.Addr, bool) {
	st := e.Sites[site]
	if len(e.NATS.URLs) == 0 || st == nil || st.Subnet == "" {
		return netip.Addr{}, false
	}
	gw, err := GatewayOf(st.Subnet)
	if err != nil {
		return netip.Addr{}, false
	}
	return gw.Addr(), true
}

// SiteURL is the base URL of site's nginx (on its router, the callback
// port), if it has one (SiteGateway).
func (e *Env) SiteURL(site string) (string, bool) {
	gw, ok := e.SiteGateway(site)
	if !ok {
		return "", false
	}
	return "http://" + netip.AddrPortFrom(gw, uint16(e.Callback.Port)).String(), true
}

// API is who may do what through api:serve's REST API.
type API struct {
	// Admins are the users (of creds:create) who may read and change the
	// inventory; every user has their own instances.
	Admins []string `yaml:"admins"`
	// Quota bounds what each user's instances hold at once.
	Quota Quota `yaml:"quota"`
	// TLS is the certificate api:serve answers with; empty, booted makes
	// one, signed by a CA of the environment's own that creds:create hands
	// to the users.
	TLS APITLS `yaml:"tls"`
}

// APITLS names a certificate and its key (PEM files, relative to the
// project), and the CA file clients are to trust (empty: the system's).
type APITLS struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	CA   string `yaml:"ca"`
}

// ProjectPath is path of the env file's project: as it is when absolute,
// else relative to the directory holding envs/.
func (e *Env) ProjectPath(path string) string {
	if path == "" || filepath.IsAbs(path) {
		return path
	}
	return filepath.Join(filepath.Dir(filepath.Dir(e.Path)), path)
}

// Quota is a user's limit, as EC2's: instances in use and their vCPUs
// (defaults 20 and 64).
type Quota struct {
	Instances int `yaml:"instances"`
	VCPUs     int `yaml:"vcpus"`
}

// Size is an instance type: what a VM is given, what a bare-metal node
// must have.
type Size struct {
	CPUs     int `yaml:"cpus" json:"cpus"`
	MemoryMB int `yaml:"memory_mb" json:"memoryMb"`
	DiskGB   int `yaml:"disk_gb" json:"diskGb"`
}

// ProviderOf returns the provider type of the named host: its role's, or
// the environment's.
func (e *Env) ProviderOf(host string) string {
	if role, ok := e.RoleOf(host); ok && e.Roles[role] != nil && e.Roles[role].Provider != "" {
		return e.Roles[role].Provider
	}
	return e.Provider.Type
}

// Duration is a time.Duration written as "90s" or "2m" in YAML.
type Duration time.Duration

// UnmarshalYAML reads a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (write e.g. 90s or 2m)", n.Line, s)
	}
	*d = Duration(v)
	return nil
}

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// HostNames returns the names of the first n hosts of the role.
func (r *Role) HostNames(n int) []string {
	if len(r.Hosts) > 0 {
		if n > len(r.Hosts) {
			n = len(r.Hosts)
		}
		return append([]string(nil), r.Hosts[:n]...)
	}
	out := make([]string, 0, n)
	for i := 1; i <= n; i++ {
		out = append(out, fmt.Sprintf("%s%d", r.Prefix, i))
	}
	return out
}

// AllNames returns every host name the role may ever have (up to Max).
func (r *Role) AllNames() []string {
	if len(r.Hosts) > 0 {
		return append([]string(nil), r.Hosts...)
	}
	return r.HostNames(r.Max)
}

// RoleOf returns the role of the named host and whether the env declares it.
// A numbered role is asked by reading the name (prefix, then 1 to max),
// not by naming every host it may have: listing 10,000 hosts of a role of
// max 10,000 asked 10^8 names (114 s).
func (e *Env) RoleOf(host string) (string, bool) {
	for name, r := range e.Roles {
		if r.Has(host) {
			return name, true
		}
	}
	return "", false
}

// Has reports whether host is one of the names the role may ever have.
func (r *Role) Has(host string) bool {
	if len(r.Hosts) > 0 {
		return slices.Contains(r.Hosts, host)
	}
	num, ok := strings.CutPrefix(host, r.Prefix)
	if !ok || num == "" || num[0] == '0' || len(num) > 9 {
		return false
	}
	n, err := strconv.Atoi(num)
	return err == nil && n >= 1 && n <= r.Max && strconv.Itoa(n) == num
}

// RoleNames returns role names in the order hosts are brought up: workers
// first, load balancers last, others in between in name order.
func (e *Env) RoleNames() []string {
	var mid []string
	for name := range e.Roles {
		if name != RoleWorkers && name != RoleLoadBalancers {
			mid = append(mid, name)
		}
	}
	sortStrings(mid)
	var out []string
	if _, ok := e.Roles[RoleWorkers]; ok {
		out = append(out, RoleWorkers)
	}
	out = append(out, mid...)
	if _, ok := e.Roles[RoleLoadBalancers]; ok {
		out = append(out, RoleLoadBalancers)
	}
	return out
}

// CallbackAddr returns the host:port hosts phone home to.
func (e *Env) CallbackAddr() string {
	return fmt.Sprintf("%s:%d", e.Callback.Address, e.Callback.Port)
}

// CallbackURL returns the URL hosts phone home to.
func (e *Env) CallbackURL() string {
	return "http://" + e.CallbackAddr() + "/booted/"
}

// Monitor is the monitor daemon's policy. Zero values take the defaults shown.
type Monitor struct {
	// Interval between measurements (default 5s).
	Interval Duration `yaml:"interval"`
	// SLA the service must hold, measured through the load balancer.
	SLA SLA `yaml:"sla"`
	// BreachIntervals: how many intervals in a row a breach must last
	// before a worker is added (default 2).
	BreachIntervals int `yaml:"breach_intervals"`
	// CalmIntervals: how many intervals in a row p95 must stay under
	// LowWater × SLA before a worker is removed (default 3).
	CalmIntervals int     `yaml:"calm_intervals"`
	LowWater      float64 `yaml:"low_water"`
	// CooldownUp and CooldownDown: the least time after a scaling action
	// before the next one up (default 15s) or down (default 30s).
	CooldownUp   Duration `yaml:"cooldown_up"`
	CooldownDown Duration `yaml:"cooldown_down"`
	// Warmup: a new worker's first moments, during which measurements do
	// not count (default 5s).
	Warmup Duration `yaml:"warmup"`
	// UnhealthyIntervals: a worker failing its health check this many
	// intervals in a row is replaced (default 2).
	UnhealthyIntervals int `yaml:"unhealthy_intervals"`
	// ProbeRate: the monitor's own requests per second (default 10).
	ProbeRate float64 `yaml:"probe_rate"`
	// ProbePath is what the probes request (default /).
	ProbePath string `yaml:"probe_path"`
	// Listen is where /metrics and the status page are served (default
	// 127.0.0.1:9177).
	Listen string `yaml:"listen"`
}

// SLA is what the service must hold.
type SLA struct {
	// P95 latency (default 200ms).
	P95 Duration `yaml:"p95"`
	// ErrorRate: the largest share of failed requests (default 0.01).
	ErrorRate float64 `yaml:"error_rate"`
}

// orDefault sets *d to v when it is zero.
func orDefault(d *Duration, v time.Duration) {
	if *d == 0 {
		*d = Duration(v)
	}
}

func (m *Monitor) applyDefaults() {
	def := orDefault
	def(&m.Interval, 5*time.Second)
	def(&m.SLA.P95, 200*time.Millisecond)
	def(&m.CooldownUp, 15*time.Second)
	def(&m.CooldownDown, 30*time.Second)
	def(&m.Warmup, 5*time.Second)
	if m.SLA.ErrorRate == 0 {
		m.SLA.ErrorRate = 0.01
	}
	if m.BreachIntervals == 0 {
		m.BreachIntervals = 2
	}
	if m.CalmIntervals == 0 {
		m.CalmIntervals = 3
	}
	if m.LowWater == 0 {
		m.LowWater = 0.5
	}
	if m.UnhealthyIntervals == 0 {
		m.UnhealthyIntervals = 2
	}
	if m.ProbeRate == 0 {
		m.ProbeRate = 10
	}
	if m.ProbePath == "" {
		m.ProbePath = "/"
	}
	if m.Listen == "" {
		m.Listen = "127.0.0.1:9177"
	}
}

func (m *Monitor) validate(bad func(field, format string, args ...any)) {
	if m.Interval.D() < 500*time.Millisecond {
		bad("monitor.interval", "%v is too short: use 500ms or more", m.Interval.D())
	}
	if m.SLA.ErrorRate < 0 || m.SLA.ErrorRate >= 1 {
		bad("monitor.sla.error_rate", "%v: use a share between 0 and 1, e.g. 0.01", m.SLA.ErrorRate)
	}
	if m.LowWater <= 0 || m.LowWater >= 1 {
		bad("monitor.low_water", "%v: use a share between 0 and 1, e.g. 0.5", m.LowWater)
	}
	if m.BreachIntervals < 1 || m.CalmIntervals < 1 || m.UnhealthyIntervals < 1 {
		bad("monitor", "breach_intervals, calm_intervals and unhealthy_intervals must be at least 1")
	}
	if m.ProbeRate < 0 || m.ProbeRate > 1000 {
		bad("monitor.probe_rate", "%v: use 0 to 1000 requests a second", m.ProbeRate)
	}
	if !strings.HasPrefix(m.ProbePath, "/") {
		bad("monitor.probe_path", "%q must start with /", m.ProbePath)
	}
}

// ProviderFunc makes a func a Providers (one provider's Decode, in tests).
type ProviderFunc func(env *Env, d *Decoder) any

// Decode calls f.
func (f ProviderFunc) Decode(env *Env, d *Decoder) any { return f(env, d) }

// SplitSelector splits a target's "ENV/ROLE" (or "ENV") argument.
func SplitSelector(sel string) (env, role string) {
	env, role, _ = strings.Cut(sel, "/")
	return env, role
}

// HostList splits a target's "NAME1,NAME2" argument into host names,
// refusing a name that is not one.
func HostList(arg string) ([]string, error) {
	var out []string
	for _, n := range strings.Split(arg, ",") {
		if n = strings.TrimSpace(n); n == "" {
			continue
		}
		if !hostRE.MatchString(n) {
			return nil, fmt.Errorf("%q is not a host name (lower-case letters, digits and '-')", n)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no host name given")
	}
	return out, nil
}
