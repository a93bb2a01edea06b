// Package restapi is booted's REST API (xCAT3's API service): JSON over
// HTTP for hosts (selected with ?q=EXPR), their attributes, pools, events,
// networks, nodes, OS images and instances, read and write. Every request
// is signed with Signature Version 4 for service "booted" with the keys of
// creds:create (curl --aws-sigv4 "aws:amz:booted:booted" --user KEY:SECRET,
// or any AWS SDK's signer). The inventory is an administrator's: its
// routes need a user the env file names in api.admins; instances are every
// user's own, as in EC2. Errors are JSON: {"code": ..., "message": ...}.
// The OpenAPI description is served at /openapi.json.
package restapi

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"booted/internal/ec2api"
	"booted/internal/inventory"
)

// Service is the service name requests are signed for.
const Service = "booted"

// Host is a host as the API shows it.
type Host struct {
	Name     string              `json:"name"`
	Role     string              `json:"role"`
	State    string              `json:"state"`
	IP       string              `json:"ip,omitempty"`
	MAC      string              `json:"mac,omitempty"`
	Provider string              `json:"provider,omitempty"`
	HostKey  string              `json:"hostKey,omitempty"`
	Since    time.Time           `json:"since"`
	Reason   string              `json:"reason,omitempty"`
	Attrs    map[string][]string `json:"attrs"`
	Pools    []string            `json:"pools"`
	Classes  []string            `json:"classes"`
}

// Pool is a pool and its hosts.
type Pool struct {
	Name  string   `json:"name"`
	Hosts []string `json:"hosts"`
}

// Instance is an instance as the API shows it.
type Instance struct {
	ID       string            `json:"id"`
	ImageID  string            `json:"imageId"`
	Type     string            `json:"instanceType"`
	KeyName  string            `json:"keyName,omitempty"`
	State    string            `json:"state"`
	Reason   string            `json:"reason,omitempty"`
	IP       string            `json:"ip,omitempty"`
	Launched time.Time         `json:"launched"`
	Tags     map[string]string `json:"tags"`
}

// RunRequest is POST /api/v1/instances' body.
type RunRequest struct {
	ImageID string            `json:"imageId"`
	Type    string            `json:"instanceType"`
	KeyName string            `json:"keyName"`
	Count   int               `json:"count"`
	Tags    map[string]string `json:"tags"`
}

// AttrChange is POST /api/v1/hosts/{name}/attrs' body.
type AttrChange struct {
	Op     string   `json:"op"` // add, set, del
	Key    string   `json:"key"`
	Values []string `json:"values"`
}

// Backend does the work, with the same functions as the targets.
type Backend interface {
	// Hosts returns the hosts q matches (all when empty).
	Hosts(ctx context.Context, q string) ([]Host, error)
	// Host returns one host (inventory.ErrNotFound when it is not there).
	Host(ctx context.Context, name string) (Host, error)
	ChangeAttr(ctx context.Context, host string, c AttrChange) error
	Pools(ctx context.Context) ([]Pool, error)
	ChangePool(ctx context.Context, pool, host string, add bool) error
	Events(ctx context.Context, host string, limit int) ([]inventory.Event, error)
	// Listing returns the rows of a listing (networks, nodes, osimages),
	// as their targets print them with BOOTED_OUTPUT=json.
	Listing(ctx context.Context, kind string) ([]json.RawMessage, error)
	// Change does one of Changes to name (with arg, where it takes one),
	// as its target does, and returns what the target printed.
	Change(ctx context.Context, what, name, arg string) (string, error)
}

// Changes are what Backend.Change does, each the work of a target:
// net:create, net:del, node:create, node:del, node:deploy (arg: the
// osimage, "" for the node's), osimage:importAs (name, arg: the ISO's path
// on the server), osimage:del, power:ACTION (arg: on, off, cycle),
// hosts:rebuild.
var Changes = []string{"network.create", "network.delete", "node.create", "node.delete", "node.deploy", "osimage.import", "osimage.delete", "host.power", "host.rebuild"}

// Result is what a change answers.
type Result struct {
	Output string `json:"output"`
}

// Error is an error as the client gets it.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf is a 400 error with code.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Code: code, Message: fmt.Sprintf(format, args...)}
}

// Server serves the API.
type Server struct {
	Backend Backend
	// Instances are EC2's, with the same owner rules.
	Instances ec2api.Backend
	Secrets   ec2api.Secrets
	// Admin tells whether user may read and change the inventory.
	Admin func(user string) bool
	Log   func(format string, args ...any)
	Now   func() time.Time

	// Background is the context long changes (Long) run under: it ends
	// when the server stops (nil: they run until they end).
	Background context.Context

	mux *http.ServeMux
	// replays are the changes' signatures seen within their window.
	replays ec2api.Replays
	ops     operations
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Server) background() context.Context {
	if s.Background != nil {
		return s.Background
	}
	return context.Background()
}

//go:embed openapi.json
var openAPI []byte

// OpenAPI is the API's OpenAPI 3 description.
func OpenAPI() []byte { return openAPI }

// maxBody bounds a request's body.
const maxBody = 1 << 20

// ServeHTTP serves /openapi.json and /api/v1/….
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.mux == nil {
		s.routes()
	}
	s.mux.ServeHTTP(w, r)
}

type handler func(ctx context.Context, user string, r *http.Request, body []byte) (int, any, error)

func (s *Server) routes() {
	m := http.NewServeMux()
	m.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(openAPI)
	})
	admin := func(h handler) handler {
		return func(ctx context.Context, user string, r *http.Request, body []byte) (int, any, error) {
			if s.Admin == nil || !s.Admin(user) {
				return 0, nil, &Error{Status: http.StatusForbidden, Code: "Forbidden", Message: fmt.Sprintf("user %s may not use the inventory: the env file's api.admins names the users who may", user)}
			}
			return h(ctx, user, r, body)
		}
	}
	route := func(pattern string, h handler) { m.Handle(pattern, s.wrap(h)) }
	route("GET /api/v1/hosts", admin(s.hosts))
	route("GET /api/v1/hosts/{name}", admin(s.host))
	route("GET /api/v1/hosts/{name}/attrs", admin(s.attrs))
	route("POST /api/v1/hosts/{name}/attrs", admin(s.changeAttr))
	route("GET /api/v1/pools", admin(s.pools))
	route("PUT /api/v1/pools/{pool}/hosts/{host}", admin(s.poolHost(true)))
	route("DELETE /api/v1/pools/{pool}/hosts/{host}", admin(s.poolHost(false)))
	route("GET /api/v1/events", admin(s.events))
	for _, kind := range []string{"networks", "nodes", "osimages"} {
		route("GET /api/v1/"+kind, admin(func(ctx context.Context, _ string, _ *http.Request, _ []byte) (int, any, error) {
			rows, err := s.Backend.Listing(ctx, kind)
			if rows == nil {
				rows = []json.RawMessage{}
			}
			return http.StatusOK, rows, err
		}))
	}
	change := func(what string, arg func(body []byte) (string, error)) handler {
		return admin(func(ctx context.Context, user string, r *http.Request, body []byte) (int, any, error) {
			a := ""
			if arg != nil {
				var err error
				if a, err = arg(body); err != nil {
					return 0, nil, err
				}
			}
			name := r.PathValue("name")
			if Long[what] { // answered at once; done in the server's context, not the request's
				op, err := s.ops.start(s.background(), user, what, name, s.now(), func(ctx context.Context) (string, error) {
					return s.Backend.Change(ctx, what, name, a)
				})
				return http.StatusAccepted, op, err
			}
			out, err := s.Backend.Change(ctx, what, name, a)
			return http.StatusOK, Result{Output: out}, err
		})
	}
	field := func(name string, allowed ...string) func(body []byte) (string, error) {
		return func(body []byte) (string, error) {
			var m map[string]string
			if len(strings.TrimSpace(string(body))) > 0 {
				if err := strictJSON(body, &m); err != nil {
					return "", err
				}
			}
			for k := range m {
				if k != name {
					return "", Errorf("InvalidRequest", "unknown field %q: this route takes {%q: …}", k, name)
				}
			}
			v := m[name]
			if len(allowed) > 0 && !slices.Contains(allowed, v) {
				return "", Errorf("InvalidParameterValue", "%s %q: one of %s", name, v, strings.Join(allowed, ", "))
			}
			return v, nil
		}
	}
	route("PUT /api/v1/networks/{name}", change("network.create", nil))
	route("DELETE /api/v1/networks/{name}", change("network.delete", nil))
	route("PUT /api/v1/nodes/{name}", change("node.create", nil))
	route("DELETE /api/v1/nodes/{name}", change("node.delete", nil))
	required := func(name, what string) func(body []byte) (string, error) {
		return func(body []byte) (string, error) {
			v, err := field(name)(body)
			if err == nil && v == "" {
				err = Errorf("MissingParameter", "%s: %s", name, what)
			}
			return v, err
		}
	}
	route("POST /api/v1/nodes/{name}/deploy", change("node.deploy", required("osimage", "the osimage to install (GET /api/v1/osimages lists them)")))
	route("PUT /api/v1/osimages/{name}", change("osimage.import", required("iso", "the installer ISO's path on the server")))
	route("DELETE /api/v1/osimages/{name}", change("osimage.delete", nil))
	route("POST /api/v1/hosts/{name}/power", change("host.power", field("action", "on", "off", "cycle")))
	route("POST /api/v1/hosts/{name}/rebuild", change("host.rebuild", nil))
	route("GET /api/v1/operations", admin(s.operationList))
	route("GET /api/v1/operations/{id}", admin(s.operation))
	route("GET /api/v1/instances", s.instances)
	route("POST /api/v1/instances", s.runInstances)
	route("DELETE /api/v1/instances/{id}", s.terminate)
	m.Handle("/api/", s.wrap(func(context.Context, string, *http.Request, []byte) (int, any, error) {
		return 0, nil, &Error{Status: http.StatusNotFound, Code: "NotFound", Message: "no such route: /openapi.json describes the API"}
	}))
	s.mux = m
}

// wrap authenticates the request, runs h and writes its answer or error
// as JSON.
func (s *Server) wrap(h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := s.now()
		body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
		if err != nil || len(body) > maxBody {
			s.write(w, r, "", 0, nil, Errorf("InvalidRequest", "the body is larger than %d bytes", maxBody))
			return
		}
		user, aerr := ec2api.Authenticate(r.Context(), r, body, s.Secrets, now, Service)
		if aerr == nil && r.Method != http.MethodGet && r.Method != http.MethodHead {
			aerr = s.replays.First(r, now) // a change: once
		}
		if aerr != nil {
			s.write(w, r, "", 0, nil, &Error{Status: http.StatusUnauthorized, Code: "Unauthorized", Message: aerr.Message + ` (sign with Signature Version 4 for service "booted": curl --aws-sigv4 "aws:amz:booted:booted" --user KEY:SECRET)`})
			return
		}
		status, v, err := h(r.Context(), user, r, body)
		s.write(w, r, user, status, v, err)
	})
}

func (s *Server) write(w http.ResponseWriter, r *http.Request, user string, status int, v any, err error) {
	if err != nil {
		e := toError(err)
		if s.Log != nil {
			s.Log("%s %s by %q: %d %s: %s", r.Method, r.URL.Path, user, e.Status, e.Code, e.Message)
		}
		status, v = e.Status, e
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func (s *Server) hosts(ctx context.Context, _ string, r *http.Request, _ []byte) (int, any, error) {
	hs, err := s.Backend.Hosts(ctx, r.URL.Query().Get("q"))
	if hs == nil {
		hs = []Host{}
	}
	return http.StatusOK, hs, err
}

func (s *Server) host(ctx context.Context, _ string, r *http.Request, _ []byte) (int, any, error) {
	h, err := s.Backend.Host(ctx, r.PathValue("name"))
	return http.StatusOK, h, err
}

func (s *Server) attrs(ctx context.Context, _ string, r *http.Request, _ []byte) (int, any, error) {
	h, err := s.Backend.Host(ctx, r.PathValue("name"))
	return http.StatusOK, h.Attrs, err
}

func (s *Server) changeAttr(ctx context.Context, _ string, r *http.Request, body []byte) (int, any, error) {
	var c AttrChange
	if err := strictJSON(body, &c); err != nil {
		return 0, nil, err
	}
	name := r.PathValue("name")
	if err := s.Backend.ChangeAttr(ctx, name, c); err != nil {
		return 0, nil, err
	}
	h, err := s.Backend.Host(ctx, name)
	return http.StatusOK, h.Attrs, err
}

func (s *Server) pools(ctx context.Context, _ string, _ *http.Request, _ []byte) (int, any, error) {
	ps, err := s.Backend.Pools(ctx)
	if ps == nil {
		ps = []Pool{}
	}
	return http.StatusOK, ps, err
}

func (s *Server) poolHost(add bool) handler {
	return func(ctx context.Context, _ string, r *http.Request, _ []byte) (int, any, error) {
		if err := s.Backend.ChangePool(ctx, r.PathValue("pool"), r.PathValue("host"), add); err != nil {
			return 0, nil, err
		}
		return s.pools(ctx, "", r, nil)
	}
}

func (s *Server) events(ctx context.Context, _ string, r *http.Request, _ []byte) (int, any, error) {
	limit := 100
	if l := r.URL.Query().Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 10000 {
			return 0, nil, Errorf("InvalidParameterValue", "limit %q: a whole number from 1 to 10000", l)
		}
		limit = n
	}
	evs, err := s.Backend.Events(ctx, r.URL.Query().Get("host"), limit)
	if evs == nil {
		evs = []inventory.Event{}
	}
	return http.StatusOK, evs, err
}

func instance(in ec2api.Instance) Instance {
	tags := in.Tags
	if tags == nil {
		tags = map[string]string{}
	}
	return Instance{ID: in.ID, ImageID: in.ImageID, Type: in.Type, KeyName: in.KeyName, State: in.State, Reason: in.Reason, IP: in.Addr, Launched: in.Launched, Tags: tags}
}

func (s *Server) instances(ctx context.Context, user string, _ *http.Request, _ []byte) (int, any, error) {
	ins, err := s.Instances.Describe(ctx, user, nil)
	out := []Instance{}
	for _, in := range ins {
		out = append(out, instance(in))
	}
	return http.StatusOK, out, err
}

func (s *Server) runInstances(ctx context.Context, user string, _ *http.Request, body []byte) (int, any, error) {
	var req RunRequest
	if err := strictJSON(body, &req); err != nil {
		return 0, nil, err
	}
	if req.Count == 0 {
		req.Count = 1
	}
	if req.ImageID == "" {
		return 0, nil, Errorf("MissingParameter", "imageId: which image to run (GET /api/v1/images is EC2's DescribeImages)")
	}
	ins, err := s.Instances.Run(ctx, user, ec2api.RunRequest{ImageID: req.ImageID, Type: req.Type, KeyName: req.KeyName, Count: req.Count, Tags: req.Tags})
	out := []Instance{}
	for _, in := range ins {
		out = append(out, instance(in))
	}
	return http.StatusCreated, out, err
}

func (s *Server) terminate(ctx context.Context, user string, r *http.Request, _ []byte) (int, any, error) {
	ch, err := s.Instances.Terminate(ctx, user, []string{r.PathValue("id")})
	if err != nil {
		return 0, nil, err
	}
	type change struct {
		ID       string `json:"id"`
		Previous string `json:"previousState"`
		Current  string `json:"currentState"`
	}
	var out []change
	for _, c := range ch {
		out = append(out, change{c.ID, c.Previous, c.Current})
	}
	return http.StatusOK, out, nil
}

// strictJSON decodes body into v, refusing unknown fields and trailing data.
func strictJSON(body []byte, v any) error {
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return Errorf("InvalidRequest", "the body is not the JSON this route takes: %v (/openapi.json describes it)", err)
	}
	if dec.More() {
		return Errorf("InvalidRequest", "the body has more than one JSON value")
	}
	return nil
}
