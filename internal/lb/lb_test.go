package lb

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"booted/internal/testutil"
)

var update = flag.Bool("update", false, "rewrite golden files")

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
		golden := filepath.Join("testdata", name+".conf.golden")
		if *update {
			os.WriteFile(golden, got, 0o644)
		}
		want, _ := os.ReadFile(golden)
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from %s (go test -update to accept):\n%s", name, golden, got)
		}
	}
}
