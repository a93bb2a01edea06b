// Package transfer copies one file to or from many hosts (hosts:put,
// hosts:get, as Fabric's put and get): over SFTP from here, or, for a host
// of a site, through its site's conductors, the file travelling in
// JetStream's object store, checked by SHA-256. A host (or a local copy)
// with that content already is left alone.
package transfer

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"

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
	// Records keeps, between operations, the local files' hashes and
	// what each put left on each host (nil: nothing kept).
	Records Records
	// Verify reads each host's file even where one stat says it is what
	// booted put there (BOOTED_VERIFY=1).
	Verify bool
}

// Records is where a transfer keeps what it knows between operations
// (the inventory's key-value records of the environment).
type Records interface {
	Get(ctx context.Context, env, key string, v any) (bool, error)
	List(ctx context.Context, env, prefix string) (map[string]json.RawMessage, error)
	PutAll(ctx context.Context, env string, kv map[string]any) error
}

// The records' keys: a local file's hash by its absolute path, and what a
// put left on a host by destination and host name (a name has no newline;
// a destination that does, only misses its record).
func hashedKey(path string) string      { return "hashed\n" + path }
func placedPrefix(dst string) string    { return "placed\n" + dst + "\n" }
func placedKey(dst, host string) string { return placedPrefix(dst) + host }

// hash returns src hashed: read once per operation at most, and not at
// all while its stamp is the one recorded with its hash.
func (x *Hosts) hash(ctx context.Context, src string) (files.Local, error) {
	abs, err := filepath.Abs(src)
	if err != nil {
		return files.Local{}, err
	}
	var known *files.Local
	if x.Records != nil {
		var l files.Local
		if found, err := x.Records.Get(ctx, x.Env.Name, hashedKey(abs), &l); err == nil && found {
			known = &l
		}
	}
	l, err := files.Hash(abs, known)
	if err != nil {
		return files.Local{}, err
	}
	if x.Records != nil && (known == nil || *known != l) {
		if err := x.Records.PutAll(ctx, x.Env.Name, map[string]any{hashedKey(abs): l}); err != nil {
			return files.Local{}, err
		}
	}
	return l, nil
}

// placed reads what earlier puts to dst left on each host, by host name.
func (x *Hosts) placed(ctx context.Context, dst string) (map[string]files.Placed, error) {
	out := map[string]files.Placed{}
	if x.Records == nil {
		return out, nil
	}
	m, err := x.Records.List(ctx, x.Env.Name, placedPrefix(dst))
	if err != nil {
		return nil, err
	}
	for k, raw := range m {
		var p files.Placed
		if json.Unmarshal(raw, &p) == nil {
			out[strings.TrimPrefix(k, placedPrefix(dst))] = p
		}
	}
	return out, nil
}

// Put copies local file src to dst on hosts; the recap says what each got.
// The file is hashed once, whatever the number of hosts; a host where
// booted put that content before is checked with one stat (BOOTED_VERIFY:
// its file read), any other with sha256sum there; what each host has then
// is recorded for the next put.
func (x *Hosts) Put(ctx context.Context, hosts []inventory.Host, src, dst string) error {
	local, err := x.hash(ctx, src)
	if err != nil {
		return fmt.Errorf("hosts:put: %w", err)
	}
	before, err := x.placed(ctx, dst)
	if err != nil {
		return fmt.Errorf("hosts:put: %w", err)
	}
	// A site's hosts get it from its conductors, which take it from their
	// site's files bucket (put there once per site, checked by SHA-256;
	// no other site may read it).
	object := "file-" + local.SHA256
	sites := map[string]bool{}
	for _, h := range hosts {
		if site := x.Env.SiteOf(h.Name, h.Role); site != "" {
			sites[site] = true
		}
	}
	var mu sync.Mutex
	after := map[string]any{}
	o, step := putJob.Halves(jobs.Op{Live: true, BeforeJobs: func(ctx context.Context, js jetstream.JetStream) error {
		for _, site := range slices.Sorted(maps.Keys(sites)) {
			if err := conductor.PutFile(ctx, js, x.Env.Name, site, object, local.Path, local.SHA256); err != nil {
				return fmt.Errorf("hosts:put: %s for site %s: %w", src, site, err)
			}
		}
		return nil
	}}, putArgs{Object: object, SHA256: local.SHA256, Mode: local.Mode, Dst: dst, Verify: x.Verify},
		func(ctx context.Context, c fleet.Conn) (put, error) {
			spec := files.PutSpec{Src: local, Dst: dst, Verify: x.Verify}
			if p, ok := before[c.Host().Name]; ok {
				spec.Known = &p
			}
			n, p, err := c.Put(ctx, spec)
			return put{Bytes: n, Placed: p}, err
		},
		func(_ context.Context, h inventory.Host, got put, err error) (string, error) {
			if err != nil {
				return "", fmt.Errorf("host %s: %w", h.Name, err)
			}
			if got.Placed.SHA256 == local.SHA256 && got.Placed.Stat != "" && before[h.Name] != got.Placed {
				mu.Lock()
				after[placedKey(dst, h.Name)] = got.Placed
				mu.Unlock()
			}
			return copied(got.Bytes, dst), nil
		})
	_, err = x.Op(ctx, "hosts:put "+src, hosts, o, step)
	if x.Records != nil {
		if rerr := x.Records.PutAll(context.WithoutCancel(ctx), x.Env.Name, after); rerr != nil && err == nil {
			err = fmt.Errorf("hosts:put: recording what the hosts have: %w", rerr)
		}
	}
	return err
}

// put is what a put did on a host: the bytes copied (0: unchanged) and
// what the host has at the destination now.
type put struct {
	Bytes  int64        `json:"bytes"`
	Placed files.Placed `json:"placed"`
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
	Verify bool        `json:"verify,omitempty"`
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
	putJob = jobs.Define("put", true, func(w jobs.Worker, ctx context.Context, js jetstream.JetStream, j conductor.Job, a putArgs) (jobs.Host[put], error) {
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
		// Not hashed again: ReadFile checked it against a.SHA256, and a
		// copy checks what it sends against it. (Hashed here, it failed
		// when another job of the same put rewrote this copy meanwhile.)
		l := files.Local{Path: local, Mode: a.Mode, SHA256: a.SHA256}
		return func(ctx context.Context, c fleet.Conn) (put, error) {
			n, p, err := c.Put(ctx, files.PutSpec{Src: l, Dst: a.Dst, Verify: a.Verify})
			return put{Bytes: n, Placed: p}, err
		}, nil
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
