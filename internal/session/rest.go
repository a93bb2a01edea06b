package session

import (
	"context"

	"booted/internal/hostquery"
	"booted/internal/inventory"
	"booted/internal/metaladmin"
	"booted/internal/restbackend"
)

// RESTEnvs is s as the REST backend's environment (restbackend.Envs):
// every call on this one open session, a change under the lock.
func (s *Session) RESTEnvs() restbackend.Envs { return restEnvs{s} }

type restEnvs struct{ s *Session }

func (x restEnvs) View(ctx context.Context, fn func(restbackend.Env) error) error {
	return fn(restEnv{x.s})
}

func (x restEnvs) Change(ctx context.Context, what string, fn func(restbackend.Env) error) error {
	return x.s.Change(ctx, what+" "+x.s.Env.Name, func(s *Session) error { return fn(restEnv{s}) })
}

// restEnv is an open session as the REST backend sees it.
type restEnv struct{ s *Session }

func (e restEnv) Name() string                                   { return e.s.Env.Name }
func (e restEnv) Store() *inventory.Store                        { return e.s.Store }
func (e restEnv) Query() *hostquery.Q                            { return e.s.Query() }
func (e restEnv) Metal(target string) (*metaladmin.Admin, error) { return e.s.Metal(target) }
