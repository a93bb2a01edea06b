package config_test

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	. "booted/internal/config"
	"booted/internal/provider/qemu"
	"booted/internal/provider/registry"
)

var providers = registry.Registry{}

const good = `version: 1
provider:
  type: local
  local:
    subnet: 10.77.0.0/24
roles:
  loadbalancers:
    hosts: [lb1]
    min: 1
    max: 1
  workers:
    prefix: w
    count: 2
    min: 2
    max: 6
    service: hello
    version: v1
`

// Ensure the shipped env files all load.
func TestLoad_ShippedEnvs(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(file), "..", "..", "envs")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		name := strings.TrimSuffix(e.Name(), ".yaml")
		if _, err := Load(dir, name, providers); err != nil {
			t.Errorf("%s: %v", e.Name(), err)
		}
	}
	env, err := Load(dir, "local", providers)
	if err != nil {
		t.Fatal(err)
	}
	w := env.Roles[RoleWorkers]
	if w.Min != 2 || w.Max != 6 || len(env.Roles[RoleLoadBalancers].Hosts) != 1 {
		t.Errorf("local.yaml: want 1 load balancer and workers min 2 max 6, got %+v", w)
	}
	vm, err := Load(dir, "vm", providers)
	if err != nil {
		t.Fatal(err)
	}
	if q := vm.Provider.Settings.(*qemu.Settings); vm.CallbackAddr() != "10.81.0.1:8077" || q.Accel != "auto" || q.Suite != "bookworm" || q.ImageDir != "/var/cache/booted/images" {
		t.Errorf("vm.yaml defaults: callback %s, %+v", vm.CallbackAddr(), q)
	}
}

func TestParse_Defaults(t *testing.T) {
	env, err := Parse("x.yaml", "x", []byte(good), providers)
	if err != nil {
		t.Fatal(err)
	}
	if env.Callback.Address != "10.77.0.1" || env.Callback.Port != 8077 {
		t.Errorf("callback = %s, want 10.77.0.1:8077", env.CallbackAddr())
	}
	if env.SSH.User != "root" || env.SSH.Port != 22 || env.Timeouts.Boot.D() != 2*time.Minute {
		t.Errorf("defaults not applied: %+v %+v", env.SSH, env.Timeouts)
	}
	if got := env.Roles[RoleWorkers].HostNames(2); strings.Join(got, ",") != "w1,w2" {
		t.Errorf("HostNames(2) = %v", got)
	}
	if got := env.Roles[RoleWorkers].AllNames(); len(got) != 6 || got[5] != "w6" {
		t.Errorf("AllNames = %v", got)
	}
	if r, ok := env.RoleOf("w5"); !ok || r != RoleWorkers {
		t.Errorf("RoleOf(w5) = %q %v", r, ok)
	}
	if got := env.RoleNames(); strings.Join(got, ",") != "workers,loadbalancers" {
		t.Errorf("RoleNames = %v", got)
	}
	classy, err := Parse("x.yaml", "x", []byte(strings.Replace(good, "    min: 2\n", "    min: 2\n    classes: [bigmem]\n", 1)+"classes:\n  bigmem: memory_mb >= 2048\n"), providers)
	if err != nil {
		t.Fatal(err)
	}
	if x := classy.ClassExprs["bigmem"]; x == nil || x.String() != "attr:memory_mb>=2048" || classy.Roles[RoleWorkers].Classes[0] != "bigmem" {
		t.Errorf("classes: %v, workers need %v", classy.ClassExprs, classy.Roles[RoleWorkers].Classes)
	}
}

func TestParse_Errors(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(string) string
		want []string // every one must appear in the error
		not  []string // none may appear (no follow-on errors)
	}{
		{"UnknownField", func(s string) string { return strings.Replace(s, "    min: 2\n", "    min: 2\n    mni: 3\n", 1) },
			[]string{"x.yaml:15: field mni is not known"}, nil},
		{"MissingVersion", func(s string) string { return strings.Replace(s, "version: 1\n", "", 1) },
			[]string{"version: missing"}, nil},
		{"NewerVersion", func(s string) string { return strings.Replace(s, "version: 1", "version: 2", 1) },
			[]string{"x.yaml:1: version: this booted reads version 1 files, not 2"}, nil},
		{"BadSubnet", func(s string) string { return strings.Replace(s, "10.77.0.0/24", "10.77.0.0/33", 1) },
			[]string{"x.yaml:5: provider.local.subnet"}, nil},
		{"UnknownProvider", func(s string) string { return strings.Replace(s, "type: local", "type: ec2", 1) },
			[]string{`x.yaml:3: provider.type: "ec2" is not a provider`}, nil},
		{"MaxBelowMin", func(s string) string { return strings.Replace(s, "max: 6", "max: 1", 1) },
			[]string{"x.yaml:15: roles.workers.max: 1 is less than min (2)", "roles.workers.count: 2 is outside min..max"}, nil},
		{"ManyAtOnce", func(s string) string {
			s = strings.Replace(s, "max: 6", "max: 1", 1)
			s = strings.Replace(s, "version: v1", "version: \"\"", 1)
			return strings.Replace(s, "hosts: [lb1]", "hosts: [LB_1]", 1)
		}, []string{"roles.workers.max", "roles.workers.version: missing", `x.yaml:8: roles.loadbalancers.hosts[0]: "LB_1" is not a valid host name`}, nil},
		{"DuplicateHost", func(s string) string { return strings.Replace(s, "hosts: [lb1]", "hosts: [w1]", 1) },
			[]string{"host w1 is also in role"}, nil},
		{"NoWorkers", func(s string) string { return strings.Replace(s, "  workers:", "  others:", 1) },
			[]string{"roles: missing the workers role"}, nil},
		{"BadDuration", func(s string) string { return s + "timeouts:\n  boot: soon\n" },
			[]string{`x.yaml:19: timeouts.boot: "soon" is not a duration`}, []string{"roles:"}},
		{"WrongType", func(s string) string { return strings.Replace(s, "min: 2", "min: two", 1) },
			[]string{`x.yaml:14: roles.workers.min: "two" is not a whole number`}, []string{"roles:", "count", "max"}},
		{"DuplicateKey", func(s string) string { return strings.Replace(s, "    min: 2\n", "    min: 2\n    min: 3\n", 1) },
			[]string{"x.yaml:15: roles.workers.min: given twice (lines 14 and 15)"}, []string{"roles: missing", "workers role"}},
		{"DuplicateRole", func(s string) string { return s + "  workers:\n    prefix: v\n" },
			[]string{"roles.workers: given twice"}, []string{"roles: missing"}},
		{"ListForNumber", func(s string) string { return strings.Replace(s, "max: 6", "max: [6]", 1) },
			[]string{`x.yaml:15: roles.workers.max: want a whole number, found a list`}, []string{"less than min", "outside min..max"}},
		{"Baremetal", func(s string) string { return strings.Replace(s, "type: local", "type: baremetal", 1) },
			[]string{`provider.baremetal: missing: the baremetal provider needs its networks and nodes`}, nil},
		{"OtherSection", func(s string) string { return strings.Replace(s, "  local:", "  qemu: {}\n  local:", 1) },
			[]string{"x.yaml:4: provider.qemu: the provider is local and no role names qemu: remove this section"}, nil},
		{"BadSize", func(s string) string { return s + "sizes:\n  Big: {cpus: 0, memory_mb: 64, disk_gb: 0}\n" },
			[]string{`sizes.Big: "Big": name sizes`, "sizes.Big.cpus: 0: use 1 to 256", "sizes.Big.memory_mb: 64: use 128 or more", "sizes.Big.disk_gb: 0: use 1 or more"}, nil},
		{"RoleProviderUnknown", func(s string) string { return strings.Replace(s, "    max: 1\n", "    max: 1\n    provider: ec2\n", 1) },
			[]string{`roles.loadbalancers.provider: "ec2" is not a provider`}, nil},
		{"RoleProviderWithoutSection", func(s string) string {
			return strings.Replace(s, "    max: 1\n", "    max: 1\n    provider: static\n", 1)
		},
			[]string{"provider.static.hosts: missing"}, nil},
		{"RoleProviderBadSection", func(s string) string {
			s = strings.Replace(s, "    max: 1\n", "    max: 1\n    provider: qemu\n", 1)
			return strings.Replace(s, "  local:", "  qemu: {memory_mb: lots}\n  local:", 1)
		}, []string{"provider.qemu.memory_mb"}, nil},
		{"BadAdmin", func(s string) string { return s + "api:\n  admins: [Ops]\n" },
			[]string{`x.yaml:19: api.admins[0]: user "Ops": use lower-case letters`}, nil},
		{"ClassBadCondition", func(s string) string { return s + "classes:\n  bigmem: memory_mb >= lots\n" },
			[]string{`x.yaml:19: classes.bigmem: query: expected a number after >=, got "lots" at position 14:`, "\n  memory_mb >= lots\n               ^"}, nil},
		{"RoleClassUndefined", func(s string) string {
			return strings.Replace(s, "    min: 2\n", "    min: 2\n    classes: [bigmem]\n", 1)
		}, []string{`x.yaml:15: roles.workers.classes[0]: class "bigmem" is not defined`}, nil},
		{"SiteSubnets", func(s string) string {
			return s + "nats:\n  urls: [tls://127.0.0.1:4222]\nsites:\n  a:\n    roles: [workers]\n    subnet: 10.78.0.0/33\n  b:\n    hosts: [lb1]\n    subnet: 10.79.0.0/24\n  c:\n    hosts: [x*]\n    subnet: 10.79.0.128/25\n"
		}, []string{`sites.a.subnet: "10.78.0.0/33" is not an IPv4 subnet`, "sites.c.subnet: 10.79.0.128/25 overlaps site b's 10.79.0.0/24: each site's bridge needs a subnet of its own"}, nil},
		{"NegativeQuota", func(s string) string { return s + "api:\n  quota: {instances: -1}\n" },
			[]string{`x.yaml:19: api.quota: instances -1, vcpus 64: a limit is at least 1`}, nil},
		{"TLSKeyWithoutCert", func(s string) string { return s + "api:\n  tls: {key: api.key}\n" },
			[]string{`x.yaml:19: api.tls: give cert and key together`}, nil},
		{"NATSInClear", func(s string) string {
			return s + "nats:\n  urls: [nats://10.0.0.5:4222, tls://10.0.0.6:4222, http://10.0.0.7]\n"
		}, []string{`x.yaml:19: nats.urls[0]: "nats://10.0.0.5:4222": plain NATS would carry the sites' jobs (enrollment tokens, files) in clear; use tls://10.0.0.5:4222`, `nats.urls[2]: "http://10.0.0.7": a tls:// URL`}, nil},
		{"StaticWithoutHosts", func(s string) string {
			return strings.Replace(strings.Replace(s, "type: local", "type: static", 1), "  local:\n    subnet: 10.77.0.0/24\n", "", 1)
		}, []string{"provider.static.hosts: missing"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("x.yaml", "x", []byte(tc.edit(good)), providers)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
			for _, w := range tc.not {
				if strings.Contains(err.Error(), w) {
					t.Errorf("error contains the follow-on %q:\n%v", w, err)
				}
			}
		})
	}
}

// A role may have a provider of its own, with its section beside the
// environment's: the host knows which.
func TestParse_RoleProvider(t *testing.T) {
	body := strings.Replace(good, "    max: 1\n", "    max: 1\n    provider: static\n", 1)
	body = strings.Replace(body, "  local:", "  static:\n    hosts: [{name: lb1, address: 10.77.0.5}]\n  local:", 1)
	env, err := Parse("x.yaml", "x", []byte(body), providers)
	if err != nil {
		t.Fatal(err)
	}
	if env.ProviderOf("lb1") != "static" || env.ProviderOf("w1") != "local" || env.Provider.Roles["static"] == nil {
		t.Errorf("providers: lb1 %s, w1 %s, role settings %v", env.ProviderOf("lb1"), env.ProviderOf("w1"), env.Provider.Roles)
	}
}

func TestLoad_Missing(t *testing.T) {
	_, err := Load(t.TempDir(), "nope", providers)
	if err == nil || !strings.Contains(err.Error(), "nope.yaml does not exist") {
		t.Errorf("err = %v", err)
	}
	if _, err := Load(t.TempDir(), "../etc", providers); err == nil || !strings.Contains(err.Error(), "environment name") {
		t.Errorf("err = %v", err)
	}
}

// Ensure RoleOf answers by reading the name what naming every host of the
// role answered: for a numbered role, its prefix and a number from 1 to
// max written plainly (w07, w0, w+1 and past max are no host of it).
func TestRoleOf_ReadsTheName(t *testing.T) {
	e := &Env{Roles: map[string]*Role{
		"workers": {Prefix: "w", Max: 12},
		"web":     {Prefix: "web", Max: 3},
		"lbs":     {Hosts: []string{"lb1", "edge"}},
	}}
	for _, c := range []struct {
		host, role string
		ok         bool
	}{
		{"w1", "workers", true}, {"w12", "workers", true}, {"w13", "", false}, {"w0", "", false},
		{"w07", "", false}, {"w+1", "", false}, {"w", "", false}, {"w-1", "", false}, {"w1x", "", false},
		{"web3", "web", true}, {"web4", "", false}, {"edge", "lbs", true}, {"lb2", "", false},
		{"w99999999999999999999", "", false},
	} {
		role, ok := e.RoleOf(c.host)
		if role != c.role || ok != c.ok {
			t.Errorf("RoleOf(%q) = %q, %v; want %q, %v", c.host, role, ok, c.role, c.ok)
		}
	}
	// The same answer as naming every host, for every name it may have.
	for _, r := range e.Roles {
		for _, h := range r.AllNames() {
			if !r.Has(h) {
				t.Errorf("%s is among the role's names, and Has says no", h)
			}
		}
	}
}

// BenchmarkRoleOf is a host of a role of max 10,000 (hosts:list asks it
// of every host: it named all 10,000 each time, 114 s for the list).
func BenchmarkRoleOf(b *testing.B) {
	e := &Env{Roles: map[string]*Role{"fleet": {Prefix: "h", Max: 10000}, "lbs": {Hosts: []string{"lb1"}}}}
	for b.Loop() {
		if _, ok := e.RoleOf("h9999"); !ok {
			b.Fatal("h9999")
		}
	}
}
