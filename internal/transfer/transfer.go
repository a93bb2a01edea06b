// Package transfer copies one file to or from many hosts (hosts:put,
// hosts:get, as Fabric's put and get): over SFTP from here, or, for a host
// of a site, through its site's conductors, the file travelling in
// JetStream's object store, checked by SHA-256. A host (or a local copy)
// with that content already is left alone.
package transfer

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"

	"github.com/nats-io/nats.go/jetstream"

	"booted/internal/atomicfile"
	"booted/internal/conductor"
	"booted/internal/config"
	"booted/internal/files"
	"booted/internal/fleet"
	"booted/internal/inventory"
	"booted/internal/jobs"
	"booted/internal/remote"
)

// Hosts is an environment's hosts as a transfer sees them.
type Hosts struct {
	Env *config.Env
	// Op runs an operation over hosts (session.Op: the display, the
	// recap, BOOTED_RETRY; a site's hosts through its conductors).
	Op func(ctx context.Context, title string, hosts []inventory.Host, o jobs.Op, step jobs.Step) ([]remote.Result, error)
	// NATS is the controller's connection to the env file's NATS cluster.
	NATS func(ctx context.Context) (jetstream.JetStream, error)
}

// Put copies local file src to dst on hosts; the recap says what each got.
func (x *Hosts) Put(ctx context.Context, hosts []inventory.Host, src, dst string) error {
	st, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("hosts:put: %w", err)
	}
	// A site's hosts get it from its conductors, which take it from their
	// site's files bucket (put there once per site, checked by SHA-256;
	// no other site may read it).
	sum, err := files.Sum(src)
	if err != nil {
		return fmt.Errorf("hosts:put: %w", err)
	}
	object := "file-" + sum
	sites := map[string]bool{}
	for _, h := range hosts {
		if site := x.Env.SiteOf(h.Name, h.Role); site != "" {
			sites[site] = true
		}
	}
	o, step := putJob.Halves(jobs.Op{Live: true, BeforeJobs: func(ctx context.Context, js jetstream.JetStream) error {
		for _, site := range slices.Sorted(maps.Keys(sites)) {
			if err := conductor.PutFile(ctx, js, x.Env.Name, site, object, src, sum); err != nil {
				return fmt.Errorf("hosts:put: %s for site %s: %w", src, site, err)
			}
		}
		return nil
	}}, putArgs{Object: object, SHA256: sum, Mode: st.Mode().Perm(), Dst: dst}, putHost(src, dst),
		func(_ context.Context, h inventory.Host, n int64, err error) (string, error) {
			if err != nil {
				return "", fmt.Errorf("host %s: %w", h.Name, err)
			}
			return copied(n, dst), nil
		})
	_, err = x.Op(ctx, "hosts:put "+src, hosts, o, step)
	return err
}

// Get copies src from each host to dir/HOST/BASENAME.
func (x *Hosts) Get(ctx context.Context, hosts []inventory.Host, src, dir string) error {
	// A site's hosts send it through their conductors, in the job's
	// result: up to getLimit bytes.
	o, _ := getJob.Halves(jobs.Op{Live: true}, getArgs{Src: src}, nil, // here: straight to dst (below)
		func(_ context.Context, h inventory.Host, got fetched, err error) (string, error) {
			if err != nil {
				return "", fmt.Errorf("host %s: %w", h.Name, err)
			}
			dst := filepath.Join(dir, h.Name, path.Base(src))
			n, err := x.writeFetched(ctx, h, dst, got)
			if err != nil {
				return "", fmt.Errorf("host %s: %w", h.Name, err)
			}
			return copied(n, dst), nil
		})
	_, err := x.Op(ctx, "hosts:get "+src, hosts, o, func(ctx context.Context, c fleet.Conn) error {
		dst := filepath.Join(dir, c.Host().Name, path.Base(src))
		n, err := c.Get(ctx, src, dst)
		if err != nil {
			return fmt.Errorf("host %s: %w", c.Host().Name, err)
		}
		c.Note(copied(n, dst))
		return nil
	})
	return err
}

func copied(n int64, to string) string {
	if n == 0 {
		return "unchanged: " + to + " has that content already"
	}
	return fmt.Sprintf("copied %d bytes to %s", n, to)
}

// putArgs are a put job's: the file (in the object store as Object), its
// mode, and where it goes on the host.
type putArgs struct {
	Object string      `json:"object"`
	SHA256 string      `json:"sha256"`
	Mode   os.FileMode `json:"mode"`
	Dst    string      `json:"dst"`
}

// putHost copies local file src to dst on the host unless it has that
// content (files.Put): the host's half of hosts:put; the bytes copied.
func putHost(src, dst string) jobs.Host[int64] {
	return func(ctx context.Context, c fleet.Conn) (int64, error) { return c.Put(ctx, src, dst) }
}

// getArgs are a get job's: the file on the host.
type getArgs struct {
	Src string `json:"src"`
}

// getLimit bounds a file a conductor sends back in a job's result (a
// NATS message, 1 MB by default, its content base64-encoded there); a
// larger one goes through its site's files bucket.
const getLimit = 512 << 10

// fetched is a file a conductor read on a host: its content, or the object
// of its site's files bucket that holds it (and its SHA-256).
type fetched struct {
	Content []byte      `json:"content,omitempty"`
	Mode    os.FileMode `json:"mode"`
	Object  string      `json:"object,omitempty"`
	SHA256  string      `json:"sha256,omitempty"`
	Size    int64       `json:"size,omitempty"`
}

// getHost reads src on the host through a copy on this machine (under
// dir): the host's half of hosts:get through a conductor. A file larger
// than getLimit goes to the object store (put: its name, or an error).
func getHost(dir, src string, put func(ctx context.Context, local, sum string) (string, error)) jobs.Host[fetched] {
	return func(ctx context.Context, c fleet.Conn) (fetched, error) {
		tmp, err := os.MkdirTemp(dir, "get-")
		if err != nil {
			return fetched{}, err
		}
		defer os.RemoveAll(tmp)
		local := filepath.Join(tmp, path.Base(src))
		if _, err := c.Get(ctx, src, local); err != nil {
			return fetched{}, err
		}
		st, err := os.Stat(local)
		if err != nil {
			return fetched{}, err
		}
		if st.Size() > getLimit {
			sum, err := files.Sum(local)
			if err != nil {
				return fetched{}, err
			}
			name, err := put(ctx, local, sum)
			return fetched{Object: name, SHA256: sum, Size: st.Size(), Mode: st.Mode().Perm()}, err
		}
		b, err := os.ReadFile(local)
		return fetched{Content: b, Mode: st.Mode().Perm()}, err
	}
}

// writeFetched writes got to dst unless dst has that content already;
// the bytes written (0: unchanged). A file in the object store of h's
// site is fetched from there (and deleted there).
func (x *Hosts) writeFetched(ctx context.Context, h inventory.Host, dst string, got fetched) (int64, error) {
	if got.Object != "" {
		js, err := x.NATS(ctx)
		if err != nil {
			return 0, err
		}
		mode := fileMode(got.Mode)
		old, _ := files.Sum(dst)
		if err := conductor.GetFile(ctx, js, x.Env.Name, x.Env.SiteOf(h.Name, h.Role), got.Object, dst, got.SHA256, mode); err != nil {
			return 0, err
		}
		if old == got.SHA256 {
			return 0, nil
		}
		return got.Size, nil
	}
	if old, err := os.ReadFile(dst); err == nil && bytes.Equal(old, got.Content) {
		return 0, nil
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return 0, err
	}
	if err := atomicfile.Write(dst, got.Content, fileMode(got.Mode)); err != nil {
		return 0, err
	}
	return int64(len(got.Content)), nil
}

// fileMode is the mode a fetched file is written with: what the host (or
// its conductor) said, permission bits only (a set-id bit from a host is
// not kept on the controller), 0644 when it said none.
func fileMode(m os.FileMode) os.FileMode {
	if m &= os.ModePerm; m == 0 {
		return 0o644
	}
	return m
}

// The job kinds of a transfer.
var (
	putJob = jobs.Define("put", true, func(w jobs.Worker, ctx context.Context, js jetstream.JetStream, j conductor.Job, a putArgs) (jobs.Host[int64], error) {
		if !jobs.SHA256Hex.MatchString(a.SHA256) {
			return nil, fmt.Errorf("put job: sha256 %q is not 64 hex digits", a.SHA256)
		}
		a.Mode &= os.ModePerm // permissions only, no set-id or other bits
		local := filepath.Join(w.Artifacts(), "conducted", "files", a.SHA256, a.Mode.String())
		if err := conductor.ReadFile(ctx, js, j.Env, j.Site, a.Object, local, a.SHA256, a.Mode); err != nil {
			return nil, err
		}
		if err := os.Chmod(local, a.Mode); err != nil {
			return nil, err
		}
		return putHost(local, a.Dst), nil
	})
	getJob = jobs.Define("get", true, func(w jobs.Worker, _ context.Context, js jetstream.JetStream, j conductor.Job, a getArgs) (jobs.Host[fetched], error) {
		dir := filepath.Join(w.Artifacts(), "conducted", "get")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		return getHost(dir, a.Src, func(ctx context.Context, local, sum string) (string, error) {
			return j.ID, conductor.PutFile(ctx, js, j.Env, j.Site, j.ID, local, sum)
		}), nil
	})
)
