// Package apiserver is api:serve's HTTP server: the EC2 Query API at /,
// the REST API under /api/ (described at /openapi.json) and the status
// page at /status, with bounded reads and writes, until its context ends.
package apiserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"booted/internal/ec2api"
	"booted/internal/restapi"
)

// Server is what it serves.
type Server struct {
	EC2     ec2api.Backend
	REST    restapi.Backend
	Secrets ec2api.Secrets
	// Status is the status page; it is served to authenticated users
	// alone (a browser gives the access key ID and its secret as user name
	// and password; curl -K USER.curlrc signs).
	Status StatusPage
	// Admin tells whether an API user may read and change the inventory.
	Admin func(user string) bool
	// Log receives one line per request.
	Log func(format string, a ...any)
	// TLS, when set, is what the server answers with: every request is
	// then HTTPS, and a plain one is refused.
	TLS *tls.Config
}

// TLSConfig is the server's TLS: the certificate in certFile and keyFile,
// TLS 1.2 at least.
func TLSConfig(certFile, keyFile string) (*tls.Config, error) {
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("the API's certificate %s and key %s: %w", certFile, keyFile, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{c}, MinVersion: tls.VersionTLS12}, nil
}

// Names are what the certificate of a server listening on listen must
// carry: its address, or when that is every address (0.0.0.0, ::, none)
// this machine's name and its interfaces' addresses.
func Names(listen string) []string {
	host, _, _ := net.SplitHostPort(listen)
	if ip := net.ParseIP(host); host != "" && (ip == nil || !ip.IsUnspecified()) {
		return []string{host}
	}
	var names []string
	if h, err := os.Hostname(); err == nil && h != "" {
		names = append(names, h)
	}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLinkLocalUnicast() {
			names = append(names, n.IP.String())
		}
	}
	return names
}

// URL is the base URL a client on this machine reaches a server listening
// on listen at (an address of every interface becomes 127.0.0.1).
func URL(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "https://" + listen
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return "https://" + net.JoinHostPort(host, port)
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
	h, _ := s.handler(nil)
	return h
}

// handler routes the APIs and the status page; the REST API's long changes
// run under background.
func (s *Server) handler(background context.Context) (http.Handler, *restapi.Server) {
	rest := &restapi.Server{Backend: s.REST, Instances: s.EC2, Secrets: s.Secrets, Log: s.Log, Admin: s.Admin, Background: background}
	mux := http.NewServeMux()
	mux.Handle("/api/", rest)
	mux.Handle("GET /openapi.json", rest)
	if s.Status != nil {
		mux.Handle("GET /status", s.status())
	}
	mux.Handle("/", &ec2api.Server{Backend: s.EC2, Secrets: s.Secrets, Log: s.Log})
	return mux, rest
}

// StatusPage writes the status page for user (admin: may see every host).
type StatusPage func(w http.ResponseWriter, r *http.Request, user string, admin bool)

// status serves the status page to a user who proves who they are; anyone
// else gets 401 and a prompt for the access key ID and secret.
func (s *Server) status() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, err := ec2api.AuthenticatePage(r.Context(), r, s.Secrets, time.Now(), restapi.Service)
		if err != nil {
			if s.Log != nil {
				s.Log("%s GET /status refused: %s", r.RemoteAddr, err.Message)
			}
			w.Header().Set("WWW-Authenticate", `Basic realm="booted: your access key ID and its secret", charset="UTF-8"`)
			http.Error(w, "the status page is for booted's API users: give your access key ID and its secret (creds:create makes them; curl -K USER.curlrc signs)", http.StatusUnauthorized)
			return
		}
		s.Status(w, r, user, s.Admin != nil && s.Admin(user))
	})
}

// Serve answers on ln until ctx ends, then stops taking requests, waits up
// to ShutdownTimeout for those in flight, and stops the REST API's long
// changes (their operations end failed) and waits for them.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	bg, stopOps := context.WithCancel(context.WithoutCancel(ctx))
	handler, rest := s.handler(bg)
	defer func() { stopOps(); rest.Wait() }()
	srv := &http.Server{ReadHeaderTimeout: ReadHeaderTimeout, ReadTimeout: ReadTimeout, WriteTimeout: WriteTimeout, Handler: handler}
	if s.Log != nil { // failed handshakes and the like, with the request lines
		srv.ErrorLog = log.New(logWriter(s.Log), "", 0)
	}
	if s.TLS != nil {
		ln = tls.NewListener(ln, s.TLS)
	}
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

// logWriter passes each line written to it to log.
type logWriter func(format string, a ...any)

func (l logWriter) Write(p []byte) (int, error) {
	l("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
