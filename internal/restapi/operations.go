package restapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"sync"
	"time"

	"booted/internal/ec2api"
	"booted/internal/inventory"
	"booted/internal/query"
)

// Long are the changes answered at once with an Operation to poll (each
// takes minutes: an install, an ISO's import, a host made again), so that
// nothing is lost with the connection; the others answer when done.
var Long = map[string]bool{"node.deploy": true, "osimage.import": true, "host.rebuild": true}

// Operation is a long change the server does in the background: GET
// /api/v1/operations/{id} says how it goes, and once it ended, what its
// target printed or its error.
type Operation struct {
	ID      string     `json:"id"`
	Href    string     `json:"href"`
	Change  string     `json:"change"`
	Name    string     `json:"name"`
	User    string     `json:"user"`
	Status  string     `json:"status"` // running, done, failed
	Output  string     `json:"output"`
	Error   *Error     `json:"error,omitempty"`
	Started time.Time  `json:"started"`
	Ended   *time.Time `json:"ended,omitempty"`
}

// Operation statuses.
const (
	OpRunning = "running"
	OpDone    = "done"
	OpFailed  = "failed"
)

// maxOperations bounds the operations kept: past it, the oldest ended
// ones are forgotten, and while that many still run a new one is refused.
const maxOperations = 1000

// OperationTimeout bounds one operation.
const OperationTimeout = 2 * time.Hour

// operations are the server's operations, newest last.
type operations struct {
	mu    sync.Mutex
	byID  map[string]*Operation
	order []string
	wg    sync.WaitGroup
}

// start runs change in the background under ctx (the server's, not the
// request's) and returns its operation as it is now.
func (o *operations) start(ctx context.Context, user, change, name string, now time.Time, do func(ctx context.Context) (string, error)) (Operation, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.byID == nil {
		o.byID = map[string]*Operation{}
	}
	if len(o.order) >= maxOperations {
		kept := o.order[:0]
		dropped := false
		for _, id := range o.order {
			if !dropped && o.byID[id].Status != OpRunning {
				delete(o.byID, id)
				dropped = true
				continue
			}
			kept = append(kept, id)
		}
		o.order = kept
		if !dropped {
			return Operation{}, &Error{Status: http.StatusTooManyRequests, Code: "TooManyOperations", Message: "1000 operations run already: wait for one to end"}
		}
	}
	var b [8]byte
	rand.Read(b[:])
	id := "op-" + hex.EncodeToString(b[:])
	op := &Operation{ID: id, Href: "/api/v1/operations/" + id, Change: change, Name: name, User: user, Status: OpRunning, Started: now.UTC()}
	o.byID[id] = op
	o.order = append(o.order, id)
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		c, cancel := context.WithTimeout(ctx, OperationTimeout)
		defer cancel()
		out, err := do(c)
		o.mu.Lock()
		defer o.mu.Unlock()
		end := time.Now().UTC()
		op.Output, op.Ended, op.Status = out, &end, OpDone
		if err != nil {
			op.Status, op.Error = OpFailed, toError(err)
		}
	}()
	return *op, nil
}

// get returns operation id as it is now.
func (o *operations) get(id string) (Operation, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	op, ok := o.byID[id]
	if !ok {
		return Operation{}, false
	}
	return *op, true
}

// list returns the operations, newest first.
func (o *operations) list() []Operation {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := []Operation{}
	for i := len(o.order) - 1; i >= 0; i-- {
		out = append(out, *o.byID[o.order[i]])
	}
	return out
}

// Wait waits for the operations in flight to end (their context, the
// server's Background, ended or not).
func (s *Server) Wait() { s.ops.wg.Wait() }

func (s *Server) operation(_ context.Context, _ string, r *http.Request, _ []byte) (int, any, error) {
	op, ok := s.ops.get(r.PathValue("id"))
	if !ok {
		return 0, nil, &Error{Status: http.StatusNotFound, Code: "NotFound", Message: "no operation " + r.PathValue("id") + " (GET /api/v1/operations lists them; they are kept while api:serve runs)"}
	}
	return http.StatusOK, op, nil
}

func (s *Server) operationList(context.Context, string, *http.Request, []byte) (int, any, error) {
	return http.StatusOK, s.ops.list(), nil
}

// toError is err as the client gets it.
func toError(err error) *Error {
	var e *Error
	var se *query.SyntaxError
	var ee *ec2api.Error
	switch {
	case errors.As(err, &e):
		return e
	case errors.As(err, &se):
		return &Error{Status: http.StatusBadRequest, Code: "InvalidQuery", Message: se.Error()}
	case errors.As(err, &ee):
		return &Error{Status: ee.Status, Code: ee.Code, Message: ee.Message}
	case errors.Is(err, inventory.ErrNotFound):
		return &Error{Status: http.StatusNotFound, Code: "NotFound", Message: err.Error()}
	default:
		return &Error{Status: http.StatusInternalServerError, Code: "InternalError", Message: err.Error()}
	}
}
