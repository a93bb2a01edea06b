package lb

import (
	"path/filepath"
	"testing"

	"booted/internal/testutil"
)

func TestRender_Golden(t *testing.T) {
	tmpl := filepath.Join(testutil.RepoRoot(t), "nginx", "lb.conf.tmpl")
	for name, c := range map[string]Config{
		"three-workers": {Env: "local", Host: "lb1", Service: "hello", Listen: 80, Workers: []string{"10.77.0.12:8080", "10.77.0.10:8080", "10.77.0.11:8080"}},
		"no-workers":    {Env: "local", Host: "lb1", Service: "hello", Listen: 80},
	} {
		got, err := Render(tmpl, c)
		if err != nil {
			t.Fatal(err)
		}
		testutil.Golden(t, filepath.Join("testdata", name+".conf.golden"), got)
	}
}
