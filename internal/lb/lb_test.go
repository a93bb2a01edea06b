package lb

import (
	"path/filepath"
	"testing"
	"time"

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

// Ensure that the access log's lines, as the lb log format writes them,
// give each request's time and count the 5xx answers; other lines are
// skipped.
func TestParseAccessLog(t *testing.T) {
	log := `2026-11-26T10:00:00+00:00 200 0.012 "10.77.0.10:8080" "0.011" "200"
2026-11-26T10:00:00+00:00 502 1.001 "10.77.0.11:8080, 10.77.0.10:8080" "1.000, 0.001" "502, 200"
garbage
2026-11-26T10:00:01+00:00 500 0.003 "10.77.0.10:8080" "0.003" "500"
`
	r := ParseAccessLog(log)
	if len(r.Times) != 3 || r.Failed != 2 || r.Times[0] != 12*time.Millisecond || r.Times[1] != 1001*time.Millisecond {
		t.Errorf("ParseAccessLog = %+v", r)
	}
}
