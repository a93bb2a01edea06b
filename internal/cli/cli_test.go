package cli

import (
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"booted/internal/testutil"
)

// Ensure the catalog is magefile.go's targets, arguments and kinds: a
// target added there without its line here fails this test.
func TestCatalog_MatchesMagefile(t *testing.T) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, filepath.Join(testutil.RepoRoot(t), "magefile.go"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]string{"string": "string", "int": "int", "time.Duration": "duration"}
	found := map[string]string{}
	for _, d := range f.Decls {
		fn, ok := d.(*ast.FuncDecl)
		if !ok || !fn.Name.IsExported() {
			continue
		}
		name := strings.ToLower(fn.Name.Name[:1]) + fn.Name.Name[1:]
		if fn.Recv != nil {
			ns := fn.Recv.List[0].Type.(*ast.Ident).Name
			name = strings.ToLower(ns) + ":" + name
		}
		var sig []string
		for _, p := range fn.Type.Params.List {
			typ := types(p.Type)
			if typ == "context.Context" {
				continue
			}
			for _, n := range p.Names {
				sig = append(sig, n.Name+" "+kinds[typ])
			}
		}
		found[name] = strings.Join(sig, ", ")
	}
	want := map[string]string{}
	for _, tg := range Catalog {
		var sig []string
		for _, a := range tg.Args {
			sig = append(sig, a.Name+" "+a.Kind)
		}
		want[tg.Name] = strings.Join(sig, ", ")
	}
	for n, sig := range found {
		if w, ok := want[n]; !ok || w != sig {
			t.Errorf("magefile.go has %s(%s); the catalog has (%s) (found %v)", n, sig, w, ok)
		}
	}
	for n := range want {
		if _, ok := found[n]; !ok {
			t.Errorf("the catalog has %s, magefile.go does not", n)
		}
	}
}

func types(e ast.Expr) string {
	switch x := e.(type) {
	case *ast.Ident:
		return x.Name
	case *ast.SelectorExpr:
		return types(x.X) + "." + x.Sel.Name
	}
	return "?"
}

func TestCheck(t *testing.T) {
	envs := t.TempDir()
	for _, e := range []string{"local", "prod"} {
		os.WriteFile(filepath.Join(envs, e+".yaml"), nil, 0o644)
	}
	for _, tc := range []struct {
		args string
		want string // "" for no error
	}{
		{"", ""},
		{"env:startAll local", ""},
		{"env:startall local hosts:list prod", ""},
		{"-v -t 5m service:deploy local/workers hello v2", ""},
		{"-l", ""},
		{"-h service:deploy", ""},
		{"bench:load local 30s 50", ""},
		{`hosts:run local echo hi there`, `"hi" is not a target, and nothing has run; if it belongs to hosts:run's <cmd>, quote it: go run mage.go hosts:run local 'echo hi there'`},
		{"hosts:list local extra", `"extra" is not a target`},
		{"hosts:lst local", "did you mean hosts:list?"},
		{"service:deploy local hello", "service:deploy needs <version>; use: go run mage.go service:deploy <env> <svc> <version>"},
		{"hosts:list nope", `there is no environment "nope"`},
		{"hosts:list nope", "the environments are: local, prod"},
		{"bench:load local soon 50", "<d> must be a duration"},
		{"bench:fanout many", "<n> must be a whole number"},
	} {
		err := Check(strings.Fields(tc.args), envs)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q: %v", tc.args, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrUsage)):
			t.Errorf("%q: err = %v, want it to say %q", tc.args, err, tc.want)
		}
	}
}
