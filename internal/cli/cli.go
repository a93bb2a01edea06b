// Package cli checks a whole mage command line before any target runs.
//
// Mage runs each target as soon as it has read its arguments and only then
// looks at the next word, so `hosts:run local echo hi there` ran a bare
// `echo` on every host before failing on "hi". Check refuses such a line
// as a whole, naming the word (with a hint to quote a command), suggests
// the nearest target for a typo, gives a target's usage when an argument
// is missing or of the wrong kind, and lists the environments when one
// does not exist. The catalog of targets is kept equal to magefile.go by a
// test.
package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"booted/internal/config"
)

// Arg is one argument of a target: its name in magefile.go and its kind
// ("string", "int" or "duration").
type Arg struct{ Name, Kind string }

// Target is one mage target.
type Target struct {
	Name string // as mage takes it: "env:startAll", "local"
	Args []Arg
}

func s(name string) Arg { return Arg{name, "string"} }

// Catalog lists the targets of magefile.go.
var Catalog = []Target{
	{"local", nil},
	{"test", nil},
	{"testInstall", nil},
	{"testFresh", nil},
	{"testScale", nil},
	{"install", nil},
	{"env:startAll", []Arg{s("env")}},
	{"env:startMin", []Arg{s("env")}},
	{"env:startWorker", []Arg{s("env"), s("host")}},
	{"env:stop", []Arg{s("env")}},
	{"env:destroy", []Arg{s("env")}},
	{"env:status", []Arg{s("env")}},
	{"service:deploy", []Arg{s("env"), s("svc"), s("version")}},
	{"service:start", []Arg{s("env"), s("svc")}},
	{"service:stop", []Arg{s("env"), s("svc")}},
	{"service:rollback", []Arg{s("env"), s("svc")}},
	{"service:test", []Arg{s("env"), s("svc")}},
	{"service:logs", []Arg{s("env"), s("svc")}},
	{"hosts:list", []Arg{s("env")}},
	{"hosts:logged", []Arg{s("env")}},
	{"hosts:filter", []Arg{s("env")}},
	{"hosts:run", []Arg{s("env"), s("cmd")}},
	{"hosts:ssh", []Arg{s("env"), s("host")}},
	{"hosts:query", []Arg{s("env"), s("expr")}},
	{"hosts:locate", []Arg{s("env"), s("host")}},
	{"hosts:rebuild", []Arg{s("env"), s("host")}},
	{"hosts:attr", []Arg{s("env"), s("host"), s("spec")}},
	{"hosts:pick", []Arg{s("env"), s("expr"), {"n", "int"}, s("key")}},
	{"hosts:pool", []Arg{s("env"), s("pool"), s("spec")}},
	{"pools:list", []Arg{s("env")}},
	{"hosts:put", []Arg{s("env"), s("src"), s("dst")}},
	{"hosts:get", []Arg{s("env"), s("src"), s("dir")}},
	{"hosts:clear", []Arg{s("env")}},
	{"hosts:reset", []Arg{s("env")}},
	{"hosts:console", []Arg{s("env"), s("host")}},
	{"image:build", []Arg{s("env"), s("name")}},
	{"image:start", []Arg{s("env"), s("name")}},
	{"image:stop", []Arg{s("env"), s("name")}},
	{"image:clone", []Arg{s("env"), s("src"), s("name")}},
	{"image:del", []Arg{s("env"), s("name")}},
	{"image:list", []Arg{s("env")}},
	{"nginx:restart", []Arg{s("env")}},
	{"bench:load", []Arg{s("env"), {"d", "duration"}, {"rate", "int"}}},
	{"bench:fanout", []Arg{{"n", "int"}}},
	{"bench:list", []Arg{{"n", "int"}}},
	{"bench:daily", []Arg{s("env")}},
	{"bench:conductors", []Arg{{"n", "int"}}},
	{"conductor:run", []Arg{s("env"), s("site")}},
	{"conductors:list", []Arg{s("env")}},
	{"nats:config", []Arg{s("env")}},
	{"monitor:run", []Arg{s("env")}},
	{"monitor:status", []Arg{s("env")}},
	{"power:on", []Arg{s("env"), s("node")}},
	{"power:off", []Arg{s("env"), s("node")}},
	{"power:cycle", []Arg{s("env"), s("node")}},
	{"power:status", []Arg{s("env"), s("node")}},
	{"node:secret", []Arg{s("env"), s("node")}},
	{"node:list", []Arg{s("env")}},
	{"node:create", []Arg{s("env"), s("node")}},
	{"node:del", []Arg{s("env"), s("node")}},
	{"node:deploy", []Arg{s("env"), s("node"), s("osimage")}},
	{"net:list", []Arg{s("env")}},
	{"net:create", []Arg{s("env"), s("name")}},
	{"net:del", []Arg{s("env"), s("name")}},
	{"osimage:import", []Arg{s("env"), s("iso")}},
	{"osimage:importAs", []Arg{s("env"), s("iso"), s("name")}},
	{"osimage:list", []Arg{s("env")}},
	{"osimage:del", []Arg{s("env"), s("name")}},
	{"api:serve", []Arg{s("env")}},
	{"instances:run", []Arg{s("env"), s("image"), {"count", "int"}}},
	{"instances:describe", []Arg{s("env")}},
	{"instances:terminate", []Arg{s("env"), s("ids")}},
	{"instances:stop", []Arg{s("env"), s("ids")}},
	{"instances:start", []Arg{s("env"), s("ids")}},
	{"instances:reboot", []Arg{s("env"), s("ids")}},
	{"instances:console", []Arg{s("env"), s("id")}},
	{"keypair:create", []Arg{s("env"), s("name")}},
	{"keypair:import", []Arg{s("env"), s("name"), s("file")}},
	{"keypair:list", []Arg{s("env")}},
	{"keypair:del", []Arg{s("env"), s("name")}},
	{"systems:list", []Arg{s("env")}},
	{"systems:reserve", []Arg{s("env"), s("nodes"), s("user")}},
	{"systems:release", []Arg{s("env"), s("nodes")}},
	{"creds:create", []Arg{s("env"), s("user")}},
	{"metal:lab", []Arg{s("env")}},
	{"metal:labDown", []Arg{s("env")}},
}

// ErrUsage is wrapped by every error Check returns.
var ErrUsage = errors.New("usage")

// Usage is how target t is called.
func (t Target) Usage() string {
	var b strings.Builder
	b.WriteString("go run mage.go " + t.Name)
	for _, a := range t.Args {
		b.WriteString(" <" + a.Name + ">")
	}
	return b.String()
}

// Check checks the command line args (the words after the program) against
// the catalog; envsDir holds the env files an "env" argument names.
func Check(args []string, envsDir string) error {
	words, help := skipFlags(args)
	if help {
		return nil // -l and -h show, they run nothing
	}
	byName := map[string]Target{}
	for _, t := range Catalog {
		byName[strings.ToLower(t.Name)] = t
	}
	var prev *Target
	prevAt := 0
	for i := 0; i < len(words); {
		w := words[i]
		t, ok := byName[strings.ToLower(w)]
		if !ok {
			hint := ""
			if prev != nil && len(prev.Args) > 0 { // the words of its last argument, quoted
				args := words[prevAt+1 : i-1]
				hint = fmt.Sprintf("%s %s '%s'", words[prevAt], strings.Join(args, " "), strings.Join(words[i-1:], " "))
			}
			return unknown(w, prev, hint)
		}
		given := words[i+1:]
		if len(given) < len(t.Args) {
			var missing []string
			for _, a := range t.Args[len(given):] {
				missing = append(missing, "<"+a.Name+">")
			}
			return fmt.Errorf("%w: %s needs %s; use: %s", ErrUsage, t.Name, strings.Join(missing, " "), t.Usage())
		}
		for j, a := range t.Args {
			if err := checkArg(t, a, given[j], envsDir); err != nil {
				return err
			}
		}
		prev, prevAt = &t, i
		i += 1 + len(t.Args)
	}
	return nil
}

// skipFlags drops the compiled magefile's own flags; help is set by -l or -h.
func skipFlags(args []string) (words []string, help bool) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-l" || a == "-h" || a == "-help" || a == "--help":
			return nil, true
		case a == "-t":
			i++ // its duration
		case strings.HasPrefix(a, "-") && len(a) > 1:
		default:
			return args[i:], false
		}
	}
	return nil, false
}

func checkArg(t Target, a Arg, v, envsDir string) error {
	switch {
	case a.Kind == "int":
		if _, err := strconv.Atoi(v); err != nil {
			return fmt.Errorf("%w: %s: <%s> must be a whole number, not %q; use: %s", ErrUsage, t.Name, a.Name, v, t.Usage())
		}
	case a.Kind == "duration":
		if _, err := time.ParseDuration(v); err != nil {
			return fmt.Errorf("%w: %s: <%s> must be a duration such as 30s or 2m, not %q; use: %s", ErrUsage, t.Name, a.Name, v, t.Usage())
		}
	case a.Name == "env":
		env, _, _ := strings.Cut(v, "/")
		if _, err := os.Stat(filepath.Join(envsDir, env+".yaml")); err != nil {
			return fmt.Errorf("%w: %s: there is no environment %q (%s does not exist); the environments are: %s", ErrUsage, t.Name, env,
				filepath.Join(envsDir, env+".yaml"), envList(envsDir))
		}
	}
	return nil
}

func envList(dir string) string {
	if l := config.List(dir); l != "" {
		return strings.TrimPrefix(l, ": ")
	}
	return "none (add a file envs/ENV.yaml)"
}

// unknown explains a word that is not a target.
func unknown(w string, prev *Target, quoted string) error {
	msg := fmt.Sprintf("%q is not a target, and nothing has run", w)
	if near := nearest(w); near != "" {
		msg += fmt.Sprintf(" (did you mean %s?)", near)
	}
	if prev != nil && quoted != "" {
		last := prev.Args[len(prev.Args)-1].Name
		msg += fmt.Sprintf("; if it belongs to %s's <%s>, quote it: go run mage.go %s", prev.Name, last, strings.Join(strings.Fields(quoted), " "))
	}
	return fmt.Errorf("%w: %s; `go run mage.go -l` lists the targets", ErrUsage, msg)
}

// nearest returns the target closest to w, if it is close enough to be a
// typo.
func nearest(w string) string {
	best, bestD := "", 1<<30
	lw := strings.ToLower(w)
	names := make([]string, 0, len(Catalog))
	for _, t := range Catalog {
		names = append(names, t.Name)
	}
	sort.Strings(names)
	for _, n := range names {
		if d := distance(lw, strings.ToLower(n)); d < bestD {
			best, bestD = n, d
		}
	}
	if bestD <= max(2, len(w)/4) {
		return best
	}
	return ""
}

// distance is the Levenshtein distance.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
