package outcome

import (
	"errors"
	"fmt"
	"testing"

	"booted/internal/query"
)

// Ensure each way an operation ends gets its exit status, also wrapped.
func TestExitCode(t *testing.T) {
	_, syntax := query.Parse("role:workers and")
	for _, c := range []struct {
		err  error
		want int
	}{
		{nil, 0},
		{errors.New("the target failed"), 1},
		{&HostsError{Title: "service:deploy", Total: 3, Hosts: []string{"w2"}, Failed: true}, 1},
		{fmt.Errorf("wrapped: %w", &HostsError{Title: "hosts:run", Total: 3, Hosts: []string{"w2", "w3"}}), 3},
		{Refuse("key %q: a key is a word", "a=b"), 2},
		{fmt.Errorf("hosts:query: %w", syntax), 2},
	} {
		if got := ExitCode(c.err); got != c.want {
			t.Errorf("ExitCode(%v) = %d, want %d", c.err, got, c.want)
		}
	}
	if syntax == nil {
		t.Fatal("the bad expression parsed")
	}
	he := &HostsError{Title: "hosts:run", Total: 3, Hosts: []string{"w2"}}
	if got := he.Error(); got != "hosts:run failed on 1 of 3 hosts: w2 (unreachable; BOOTED_RETRY=failed runs it again on just those)" {
		t.Errorf("HostsError says %q", got)
	}
}
