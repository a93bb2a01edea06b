package targets

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"

	"github.com/nats-io/nats.go/jetstream"

	"booted/internal/atomicfile"
	"booted/internal/conductor"
	"booted/internal/files"
	"booted/internal/inventory"
	"booted/internal/jobs"
)

// hostsOf returns the hosts of sel (ENV or ENV/ROLE) a multi-host target
// works on: recorded, with an address, within BOOTED_LIMIT.
func (s *session) hostsOf(ctx context.Context, sel string) ([]inventory.Host, error) {
	_, role := splitSel(sel)
	if err := s.RecordKnown(ctx); err != nil {
		return nil, err
	}
	hosts, err := s.SelectBy(ctx, role, nil)
	if err == nil {
		hosts, err = s.Ops().Limited(hosts)
	}
	if err == nil && len(hosts) == 0 {
		err = fmt.Errorf("%s: no hosts (hosts:list %s shows the inventory)", sel, s.Env.Name)
	}
	return hosts, err
}

// HostsPut copies local file SRC to DST on every host of ENV (ENV/ROLE,
// BOOTED_LIMIT), in parallel over SFTP, as Fabric's put: a host that has
// that content at DST already is left alone ("unchanged"); the recap says
// what each got.
func (r *Runner) HostsPut(ctx context.Context, sel, src, dst string) error {
	if st, err := os.Stat(src); err != nil {
		return fmt.Errorf("hosts:put: %w", err)
	} else if !st.Mode().IsRegular() {
		return fmt.Errorf("hosts:put: %s is not a regular file (it copies one file; a directory: tar it first)", src)
	}
	if !path.IsAbs(dst) {
		return fmt.Errorf("hosts:put: %s: give the path on the hosts in full (/…)", dst)
	}
	envName, _ := splitSel(sel)
	return r.withEnv(ctx, envName, func(s *session) error {
		hosts, err := s.hostsOf(ctx, sel)
		if err != nil {
			return err
		}
		// A site's hosts get it from its conductors, which take it from
		// JetStream's object store (put there once, checked by SHA-256).
		st, _ := os.Stat(src)
		sum, err := files.Sum(src)
		if err != nil {
			return fmt.Errorf("hosts:put: %w", err)
		}
		object := "file-" + sum
		o, step := putJob.Halves(jobs.Op{Live: true, BeforeJobs: func(ctx context.Context, js jetstream.JetStream) error {
			return conductor.PutArtifact(ctx, js, object, src, sum)
		}}, putArgs{Object: object, SHA256: sum, Mode: st.Mode().Perm(), Dst: dst}, putHost(src, dst),
			func(_ context.Context, h inventory.Host, n int64, err error) (string, error) {
				if err != nil {
					return "", fmt.Errorf("host %s: %w", h.Name, err)
				}
				return copied(n, dst), nil
			})
		_, err = s.Op(ctx, "hosts:put "+src, hosts, o, step)
		return err
	})
}

// HostsGet copies SRC from every host of ENV (ENV/ROLE, BOOTED_LIMIT) to
// DIR/HOST/BASENAME, in parallel over SFTP, as Fabric's get: a local copy
// with that content already is left alone.
func (r *Runner) HostsGet(ctx context.Context, sel, src, dir string) error {
	if !path.IsAbs(src) {
		return fmt.Errorf("hosts:get: %s: give the path on the hosts in full (/…)", src)
	}
	envName, _ := splitSel(sel)
	return r.withEnv(ctx, envName, func(s *session) error {
		hosts, err := s.hostsOf(ctx, sel)
		if err != nil {
			return err
		}
		// A site's hosts send it through their conductors, in the job's
		// result: up to getLimit bytes.
		o, _ := getJob.Halves(jobs.Op{Live: true}, getArgs{Src: src}, nil, // here: straight to dst (below)
			func(_ context.Context, h inventory.Host, got fetched, err error) (string, error) {
				if err != nil {
					return "", fmt.Errorf("host %s: %w", h.Name, err)
				}
				dst := filepath.Join(dir, h.Name, path.Base(src))
				n, err := s.writeFetched(ctx, h, dst, got)
				if err != nil {
					return "", fmt.Errorf("host %s: %w", h.Name, err)
				}
				return copied(n, dst), nil
			})
		_, err = s.Op(ctx, "hosts:get "+src, hosts, o, func(ctx context.Context, c hostConn) error {
			dst := filepath.Join(dir, c.Host().Name, path.Base(src))
			n, err := c.Get(ctx, src, dst)
			if err != nil {
				return fmt.Errorf("host %s: %w", c.Host().Name, err)
			}
			c.Note(copied(n, dst))
			return nil
		})
		return err
	})
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
	return func(ctx context.Context, c hostConn) (int64, error) { return c.Put(ctx, src, dst) }
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
	return func(ctx context.Context, c hostConn) (fetched, error) {
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
func (s *session) writeFetched(ctx context.Context, h inventory.Host, dst string, got fetched) (int64, error) {
	if got.Object != "" {
		js, err := s.ControllerNATS(ctx)
		if err != nil {
			return 0, err
		}
		mode := got.Mode
		if mode == 0 {
			mode = 0o644
		}
		old, _ := files.Sum(dst)
		if err := conductor.GetFile(ctx, js, s.Env.Name, s.Env.SiteOf(h.Name, h.Role), got.Object, dst, got.SHA256, mode); err != nil {
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
	mode := got.Mode
	if mode == 0 {
		mode = 0o644
	}
	if err := atomicfile.Write(dst, got.Content, mode); err != nil {
		return 0, err
	}
	return int64(len(got.Content)), nil
}
