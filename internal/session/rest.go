package session

import (
	"context"

	"booted/internal/hostquery"
	"booted/internal/inventory"
	"booted/internal/metaladmin"
	"booted/internal/restbackend"
)

// restEnvs opens environment env for each call of the REST backend
// (restbackend.Envs), as a target does.
type restEnvs struct {
	o   Options
	env string
}

func (x restEnvs) View(ctx context.Context, fn func(restbackend.Env) error) error {
	return View(ctx, x.o, x.env, func(s *Session) error { return fn(restEnv{s}) })
}

func (x restEnvs) Change(ctx context.Context, what string, fn func(restbackend.Env) error) error {
	return Change(ctx, x.o, x.env, what+" "+x.env, func(s *Session) error { return fn(restEnv{s}) })
}

// RESTEnvs opens environment env for each call of the REST backend
// (restbackend.Envs).
func RESTEnvs(o Options, env string) restbackend.Envs { return restEnvs{o, env} }

// restEnv is an open session as the REST backend sees it.
type restEnv struct{ s *Session }

func (e restEnv) Name() string                                   { return e.s.Env.Name }
func (e restEnv) Store() *inventory.Store                        { return e.s.Store }
func (e restEnv) Query() *hostquery.Q                            { return e.s.Query() }
func (e restEnv) Metal(target string) (*metaladmin.Admin, error) { return e.s.Metal(target) }
