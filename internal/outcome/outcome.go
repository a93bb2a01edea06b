// Package outcome says how an operation ended, in the classes the
// compiled command's exit status tells apart: 0 done, 1 a host failed (or
// the target did), 2 refused input (nothing was done), 3 hosts unreachable
// (none failed). The targets make these errors; magefile.go and the APIs
// read them.
package outcome

import (
	"errors"
	"fmt"
	"strings"

	"booted/internal/query"
)

// Refusal is input refused before anything acted.
type Refusal struct{ Msg string }

func (e *Refusal) Error() string { return e.Msg }

// Refuse returns a Refusal saying what is wrong and what to do.
func Refuse(format string, a ...any) error {
	return &Refusal{fmt.Sprintf(format, a...)}
}

// Refused tells whether err refuses the input before anything acted (a
// Refusal, a bad expression).
func Refused(err error) bool {
	var se *query.SyntaxError
	var r *Refusal
	return errors.As(err, &se) || errors.As(err, &r)
}

// HostsError is a multi-host operation's error: the hosts it did not
// succeed on; Failed says whether any of them failed (rather than being
// unreachable or skipped).
type HostsError struct {
	Title  string
	Total  int
	Hosts  []string
	Failed bool
}

func (e *HostsError) Error() string {
	how := ""
	if !e.Failed {
		how = "unreachable; "
	}
	return fmt.Sprintf("%s failed on %d of %d hosts: %s (%sBOOTED_RETRY=failed runs it again on just those)", e.Title, len(e.Hosts), e.Total, strings.Join(e.Hosts, ", "), how)
}

// ExitCode is the exit status err calls for: 0 for nil, 3 hosts
// unreachable (none failed), 2 refused input, 1 anything else.
func ExitCode(err error) int {
	var he *HostsError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &he) && !he.Failed:
		return 3
	case Refused(err):
		return 2
	}
	return 1
}
