package settings

import (
	"strings"
	"testing"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// Ensure that the defaults apply, and that values a variable does not
// accept are refused, all at once, each naming the variable and what it
// accepts.
func TestFrom(t *testing.T) {
	s, err := From(env(nil))
	if err != nil || s.Root != "." || s.Inventory != "inventory" || s.JSON || s.Parallel != 0 || s.LoadPath != "/" || s.BenchRuns != 5 || len(s.TestArgs) == 0 {
		t.Errorf("defaults: %+v, %v", s, err)
	}
	s, err = From(env(map[string]string{Output: "json", Parallel: "8", Retry: "failed", Batch: "25%", Force: "1", Root: "/p"}))
	if err != nil || !s.JSON || s.Parallel != 8 || !s.RetryFailed || s.Batch != "25%" || !s.Force || s.Inventory != "/p/inventory" {
		t.Errorf("values: %+v, %v", s, err)
	}
	if s, err := From(env(map[string]string{Limit: "w1, lb*,workers"})); err != nil || strings.Join(s.Limit, "|") != "w1|lb*|workers" {
		t.Errorf("BOOTED_LIMIT: %q %v", s.Limit, err)
	}
	_, err = From(env(map[string]string{Parallel: "abc", Output: "yaml", Retry: "yes", Batch: "half", DryRun: "true", LoadPath: "x", Limit: "w1,[w"}))
	for _, want := range []string{
		"BOOTED_PARALLEL=abc: use a whole number from 1",
		"BOOTED_OUTPUT=yaml: use json or text",
		"BOOTED_RETRY=yes: use failed",
		"BOOTED_BATCH=half: use a count",
		"BOOTED_DRY_RUN=true: use 1 (on) or 0 (off)",
		"BOOTED_LOAD_PATH=x: use a path starting with /",
		`BOOTED_LIMIT=w1,[w: "[w" is not a host, role or glob`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error does not contain %q: %v", want, err)
		}
	}
}
