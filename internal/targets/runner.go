package targets

import (
	"context"
	"os"

	sess "booted/internal/session"

	"booted/internal/settings"
)

// Runner carries what every target needs: the session's options (the
// settings, BOOTED_*, and where to write).
type Runner struct {
	sess.Options
}

// FromEnviron makes a Runner from the BOOTED_* variables, refusing values
// they do not accept.
func FromEnviron() (*Runner, error) {
	s, err := settings.FromEnviron()
	if err != nil {
		return nil, err
	}
	return &Runner{sess.Options{Settings: s, Out: os.Stdout, Err: os.Stderr}}, nil
}

// withLock is withEnv for a target that changes the environment
// (session.Change): it holds the environment's lock while fn runs.
func (r *Runner) withLock(ctx context.Context, envName, what string, fn func(s *session) error) error {
	return sess.Change(ctx, r.Options, envName, what, func(s *sess.Session) error { return fn(&session{Session: s, r: r}) })
}

// withEnv opens envName, runs fn and closes it (session.View).
func (r *Runner) withEnv(ctx context.Context, envName string, fn func(s *session) error) error {
	return sess.View(ctx, r.Options, envName, func(s *sess.Session) error { return fn(&session{Session: s, r: r}) })
}

// session is a target's open environment (session.Session), with the
// Runner it prints through.
type session struct {
	*sess.Session
	r *Runner
}
