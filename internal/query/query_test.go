package query

import (
	"errors"
	"strings"
	"testing"
)

var hosts = []Subject{
	{Name: "w1", Role: "workers", State: "serving", Provider: "local", Pools: []string{"web", "canary"}, Attrs: map[string][]string{"rack": {"r1"}, "memory_mb": {"2048"}}, Connected: []string{"bt-local"}},
	{Name: "w2", Role: "workers", State: "failed", Provider: "local", Pools: []string{"web"}, Attrs: map[string][]string{"rack": {"r1"}}},
	{Name: "w3", Role: "workers", State: "serving", Provider: "qemu", Attrs: map[string][]string{"rack": {"r2"}, "owner": {"ada lovelace", "bob"}}, Classes: []string{"bigmem"}},
	{Name: "lb1", Role: "loadbalancers", State: "serving", Provider: "local", Attrs: map[string][]string{}},
	{Name: "n1", Role: "nodes", State: "ready", Provider: "baremetal", Attrs: map[string][]string{"rack": {"r2"}, "status": {"unallocated"}}, Connected: []string{"bm-pxe", "bmc-net"}},
}

func names(e Expr) string {
	var out []string
	for i := range hosts {
		if e.Match(&hosts[i]) {
			out = append(out, hosts[i].Name)
		}
	}
	return strings.Join(out, " ")
}

func TestMatch(t *testing.T) {
	for _, c := range []struct{ expr, want string }{
		{"role:workers", "w1 w2 w3"},
		{"role:workers and not state:failed and attr:rack=r1", "w1"},
		{"ROLE:workers AND NOT state:failed", "w1 w3"}, // keywords and fields in any case
		{"name:w*", "w1 w2 w3"},
		{"name:w[13]", "w1 w3"},
		{"state:serving or state:ready", "w1 w3 lb1 n1"},
		{"role:workers and (state:failed or provider:qemu)", "w2 w3"},
		{"role:workers and state:failed or provider:qemu", "w2 w3"}, // and binds tighter than or
		{"not (role:workers or role:nodes)", "lb1"},
		{"not not role:nodes", "n1"},
		{"attr:rack", "w1 w2 w3 n1"},
		{"attr:rack=r*", "w1 w2 w3 n1"},
		{"attr:owner=bob", "w3"}, // any of the values
		{`attr:owner="ada lovelace"`, "w3"},
		{"attr:owner=ada*", "w3"},
		{"attr:status=unallocated and attr:rack=r2", "n1"},
		{"pool:web", "w1 w2"},
		{"pool:canary and pool:web", "w1"},
		{"class:bigmem", "w3"},
		{"connected:bm*", "n1"},
		{"connected:bt-local", "w1"},
		{"provider:baremetal", "n1"},
		{"workers", "w1 w2 w3"}, // ENV/ROLE's shorthand
		{"w2", "w2"},            // a host name
		{"w1,lb1", "w1 lb1"},    // ENV/a,b's shorthand
		{"w1,lb1 and state:serving", "w1 lb1"},
		{"name:zz", ""},
		{"attr:memory_mb>=2048", "w1"},
		{"attr:memory_mb>2048", ""},
		{"attr:memory_mb<4096 and attr:memory_mb>1000.5", "w1"},
		{"attr:rack<=3", ""}, // r1 is not a number
		{"attr:rack!=r1", "w3 n1"},
		{"attr:rack!=r*", ""},
	} {
		e, err := Parse(c.expr)
		if err != nil {
			t.Errorf("Parse(%q): %v", c.expr, err)
			continue
		}
		if got := names(e); got != c.want {
			t.Errorf("%q (%s) matches %q, want %q", c.expr, e, got, c.want)
		}
	}
}

// A refused expression says where (a caret under the position) and what
// was expected there.
func TestParse_Errors(t *testing.T) {
	for _, c := range []struct {
		expr string
		pos  int
		msg  string
	}{
		{"", 0, "empty expression"},
		{"   ", 0, "empty expression"},
		{"role:workers and nto:x", 17, `unknown field "nto"`},
		{"role:workers and", 16, "expected a term such as role:workers, not or (, got the end"},
		{"role:workers state:failed", 13, `expected and, or, or the end, got "state:failed"`},
		{"(role:workers or state:failed", 29, "expected ) to close the ( at position 1"},
		{"role:workers)", 12, `expected and, or, or the end, got ")"`},
		{"role:", 5, "expected a value after role:"},
		{"attr:=x", 5, "expected an attribute name"},
		{"name:w[", 5, "bad glob"},
		{`attr:owner="ada`, 11, "unterminated quote"},
		{"not", 3, "got the end"},
		{"and role:x", 0, `got "and"`},
		{"()", 1, `got ")"`},
		{"role:workers and nto state:failed", 21, `got "state:failed" ("nto" before it reads as a role or host name: is it a misspelt and, or, not?)`},
		{",", 0, "expected host names"},
		{"attr:memory_mb>=lots", 16, `expected a number after >=, got "lots"`},
		{"attr:rack!", 9, "lone !"},
	} {
		_, err := Parse(c.expr)
		var se *SyntaxError
		if !errors.As(err, &se) {
			t.Errorf("Parse(%q) = %v, want a syntax error", c.expr, err)
			continue
		}
		if se.Pos != c.pos || !strings.Contains(se.Msg, c.msg) {
			t.Errorf("Parse(%q): pos %d %q; want pos %d and %q", c.expr, se.Pos, se.Msg, c.pos, c.msg)
		}
		lines := strings.Split(err.Error(), "\n")
		if len(lines) != 3 || lines[1] != "  "+c.expr || lines[2] != "  "+strings.Repeat(" ", c.pos)+"^" {
			t.Errorf("Parse(%q) error does not point at position %d:\n%s", c.expr, c.pos, err)
		}
	}
}

// The parser never panics, and a refusal always points inside the input
// (or just past its end); what it accepts prints as an expression that
// parses again and matches the same hosts.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"role:workers and not state:failed and attr:rack=r1", "(a or b) and not c", "w1,w2", `attr:k="x y"`, "name:[", "((((", "not not not x:y", "attr:a=b=c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := Parse(s)
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) || se.Pos < 0 || se.Pos > len(s) {
				t.Fatalf("Parse(%q): %v", s, err)
			}
			return
		}
		if strings.Contains(s, `"`) {
			return // a quoted value prints unquoted
		}
		again, err := Parse(e.String())
		if err != nil {
			t.Fatalf("Parse(%q) printed %q, which does not parse: %v", s, e, err)
		}
		if names(e) != names(again) {
			t.Fatalf("%q and its print %q match differently: %q vs %q", s, e, names(e), names(again))
		}
	})
}

func TestParseCondition(t *testing.T) {
	for _, c := range []struct{ cond, want string }{
		{"memory_mb >= 2048", "w1"},
		{"memory_mb>=2048", "w1"},
		{"rack == r2", "w3 n1"},
		{"rack = r1", "w1 w2"},
		{"attr:rack=r2 and provider:qemu", "w3"},
	} {
		e, err := ParseCondition(c.cond)
		if err != nil {
			t.Errorf("ParseCondition(%q): %v", c.cond, err)
			continue
		}
		if got := names(e); got != c.want {
			t.Errorf("condition %q matches %q, want %q", c.cond, got, c.want)
		}
	}
	if _, err := ParseCondition("class:bigmem and attr:rack=r1"); err == nil || !strings.Contains(err.Error(), "not on other classes") {
		t.Errorf("a class of classes: %v", err)
	}
	if _, err := ParseCondition("memory_mb >= "); err == nil {
		t.Error("a condition without a value was accepted")
	}
}
