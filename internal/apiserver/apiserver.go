// Package apiserver is api:serve's HTTP server: the EC2 Query API at /,
// the REST API under /api/ (described at /openapi.json) and the status
// page at /status, with bounded reads and writes, until its context ends.
package apiserver

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"booted/internal/ec2api"
	"booted/internal/restapi"
)

// Server is what it serves.
type Server struct {
	EC2     ec2api.Backend
	REST    restapi.Backend
	Secrets ec2api.Secrets
	// Status is the status page.
	Status http.Handler
	// Admin tells whether an API user may read and change the inventory.
	Admin func(user string) bool
	// Log receives one line per request.
	Log func(format string, a ...any)
}

// Timeouts bound each request: its header, its body, its answer; and how
// long requests in flight are waited for once the context ends.
const (
	ReadHeaderTimeout = 10 * time.Second
	ReadTimeout       = time.Minute
	WriteTimeout      = 5 * time.Minute
	ShutdownTimeout   = 10 * time.Second
)

// Handler routes the APIs and the status page.
func (s *Server) Handler() http.Handler {
	rest := &restapi.Server{Backend: s.REST, Instances: s.EC2, Secrets: s.Secrets, Log: s.Log, Admin: s.Admin}
	mux := http.NewServeMux()
	mux.Handle("/api/", rest)
	mux.Handle("GET /openapi.json", rest)
	if s.Status != nil {
		mux.Handle("GET /status", s.Status)
	}
	mux.Handle("/", &ec2api.Server{Backend: s.EC2, Secrets: s.Secrets, Log: s.Log})
	return mux
}

// Serve answers on ln until ctx ends, then stops taking requests and
// waits up to ShutdownTimeout for those in flight.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{ReadHeaderTimeout: ReadHeaderTimeout, ReadTimeout: ReadTimeout, WriteTimeout: WriteTimeout, Handler: s.Handler()}
	stopped := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
		case <-stopped:
			return
		}
		sctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	err := srv.Serve(ln)
	close(stopped)
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}
