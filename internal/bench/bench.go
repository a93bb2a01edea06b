// Package bench measures booted's SSH fan-out against the peer tools on
// local hosts: a plain Go x/crypto/ssh loop (the floor), parallel-ssh and
// ansible's raw module, for a command (uname -r) and for copying a 10 MB
// file, and prints medians side by side.
package bench

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"booted/internal/pkgs"
	"booted/internal/remote"
	"booted/internal/report"
)

// Host is one host to run on.
type Host = remote.Target

// Setup is what every tool needs.
type Setup struct {
	Hosts []Host
	User  string
	// Key is the private key file; Signer the same key loaded.
	Key    string
	Signer ssh.Signer
	// KnownHosts holds the hosts' keys (strict checking for every tool).
	KnownHosts string
	// Runs per measurement; the median is reported.
	Runs int
	Log  io.Writer
}

// Row is one tool's medians.
type Row struct {
	Tool    string
	Command time.Duration
	Copy    time.Duration
	// Note says what was measured when it is not the plain case.
	Note string
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[len(ds)/2]
}

// measure runs fn s.Runs times and returns the median.
func (s *Setup) measure(name string, fn func() error) (time.Duration, error) {
	var ds []time.Duration
	for i := 0; i < s.Runs; i++ {
		start := time.Now()
		if err := fn(); err != nil {
			return 0, fmt.Errorf("%s: %w", name, err)
		}
		ds = append(ds, time.Since(start))
	}
	m := median(ds)
	fmt.Fprintf(s.Log, "  %-32s median %v of %d runs\n", name, m.Round(time.Millisecond), len(ds))
	return m, nil
}

// Payload makes the 10 MB file the copy benchmarks send.
func Payload(dir string) (string, error) {
	p := filepath.Join(dir, "payload-10M")
	b := make([]byte, 10<<20)
	rand.Read(b)
	return p, os.WriteFile(p, b, 0o644)
}

// Booted runs uname -r through booted's pool (dial, wrapper, recap data),
// then a second step over the same connections; and copies the payload
// with SFTP.
func (s *Setup) Booted(ctx context.Context, payload string) (first, second, cp time.Duration, err error) {
	uname := func(ctx context.Context, rs *remote.Session) error {
		_, err := rs.Output(ctx, "uname -r")
		return err
	}
	var firsts, seconds []time.Duration
	for i := 0; i < s.Runs; i++ {
		pool := remote.NewPool(remote.Auth{User: s.User, Signer: s.Signer}, 10*time.Second, 0)
		start := time.Now()
		err = eachOK(pool.Each(ctx, s.Hosts, remote.Options{}, uname))
		firsts = append(firsts, time.Since(start))
		if err == nil {
			start = time.Now()
			err = eachOK(pool.Each(ctx, s.Hosts, remote.Options{}, uname))
			seconds = append(seconds, time.Since(start))
		}
		pool.Close()
		if err != nil {
			return 0, 0, 0, fmt.Errorf("booted: %w", err)
		}
	}
	first, second = median(firsts), median(seconds)
	fmt.Fprintf(s.Log, "  %-32s median %v of %d runs\n", "booted: uname -r", first.Round(time.Millisecond), s.Runs)
	fmt.Fprintf(s.Log, "  %-32s median %v\n", "booted: second step, same conns", second.Round(time.Millisecond))
	cp, err = s.measure("booted: copy 10 MB (sftp)", func() error {
		pool := remote.NewPool(remote.Auth{User: s.User, Signer: s.Signer}, 10*time.Second, 0)
		defer pool.Close()
		return eachOK(pool.Each(ctx, s.Hosts, remote.Options{}, func(ctx context.Context, rs *remote.Session) error {
			c, err := rs.Client(ctx)
			if err != nil {
				return err
			}
			return sftpCopy(c, payload, "/tmp/payload-booted")
		}))
	})
	return
}

func eachOK(rs []remote.Result) error {
	for _, r := range rs {
		if r.Status != remote.OK {
			return fmt.Errorf("host %s: %s: %v", r.Host, r.Status, r.Err)
		}
	}
	return nil
}

func sftpCopy(c *ssh.Client, src, dst string) error {
	sc, err := sftp.NewClient(c)
	if err != nil {
		return err
	}
	defer sc.Close()
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := sc.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// PlainGo is the floor: one goroutine per host, ssh.Dial, one session.
func (s *Setup) PlainGo(ctx context.Context, payload string) (cmd, cp time.Duration, err error) {
	each := func(fn func(c *ssh.Client) error) error {
		var wg sync.WaitGroup
		errs := make(chan error, len(s.Hosts))
		for _, h := range s.Hosts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cfg := &ssh.ClientConfig{User: s.User, Auth: []ssh.AuthMethod{ssh.PublicKeys(s.Signer)},
					HostKeyCallback: ssh.FixedHostKey(h.HostKey), HostKeyAlgorithms: []string{h.HostKey.Type()}, Timeout: 10 * time.Second}
				c, err := ssh.Dial("tcp", net.JoinHostPort(h.Addr, "22"), cfg)
				if err != nil {
					errs <- err
					return
				}
				defer c.Close()
				errs <- fn(c)
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				return err
			}
		}
		return nil
	}
	cmd, err = s.measure("plain Go loop: uname -r", func() error {
		return each(func(c *ssh.Client) error {
			ss, err := c.NewSession()
			if err != nil {
				return err
			}
			defer ss.Close()
			_, err = ss.Output("uname -r")
			return err
		})
	})
	if err != nil {
		return
	}
	cp, err = s.measure("plain Go loop: copy 10 MB (sftp)", func() error {
		return each(func(c *ssh.Client) error { return sftpCopy(c, payload, "/tmp/payload-go") })
	})
	return
}

func (s *Setup) sshOpts() []string {
	return []string{"-i", s.Key, "-o", "UserKnownHostsFile=" + s.KnownHosts, "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "GlobalKnownHostsFile=/dev/null"}
}

// PSSH runs parallel-ssh and parallel-scp with as many parallel as hosts.
func (s *Setup) PSSH(ctx context.Context, dir, payload string) (cmd, cp time.Duration, err error) {
	hf := filepath.Join(dir, "pssh-hosts")
	var b strings.Builder
	for _, h := range s.Hosts {
		fmt.Fprintf(&b, "%s@%s\n", s.User, h.Addr)
	}
	if err = os.WriteFile(hf, []byte(b.String()), 0o644); err != nil {
		return
	}
	var x []string
	for _, o := range s.sshOpts() {
		x = append(x, "-x", o)
	}
	par := fmt.Sprint(len(s.Hosts))
	cmd, err = s.measure("parallel-ssh: uname -r", func() error {
		return run(ctx, "parallel-ssh", append(append([]string{"-h", hf, "-p", par, "-t", "60"}, x...), "uname -r")...)
	})
	if err != nil {
		return
	}
	cp, err = s.measure("parallel-scp: copy 10 MB", func() error {
		return run(ctx, "parallel-scp", append(append([]string{"-h", hf, "-p", par, "-t", "120"}, x...), payload, "/tmp/payload-pssh")...)
	})
	return
}

// Ansible runs ansible -m raw (and -m copy) with as many forks as hosts.
func (s *Setup) Ansible(ctx context.Context, dir, payload string) (cmd, cp time.Duration, err error) {
	inv := filepath.Join(dir, "ansible-hosts")
	var b strings.Builder
	b.WriteString("[bench]\n")
	for _, h := range s.Hosts {
		fmt.Fprintf(&b, "%s ansible_host=%s\n", h.Name, h.Addr)
	}
	fmt.Fprintf(&b, "[bench:vars]\nansible_user=%s\nansible_ssh_private_key_file=%s\nansible_ssh_common_args='-o UserKnownHostsFile=%s -o GlobalKnownHostsFile=/dev/null'\nansible_python_interpreter=/usr/bin/python3\n", s.User, s.Key, s.KnownHosts)
	if err = os.WriteFile(inv, []byte(b.String()), 0o644); err != nil {
		return
	}
	forks := fmt.Sprint(len(s.Hosts))
	cmd, err = s.measure("ansible -m raw: uname -r", func() error {
		return run(ctx, "ansible", "bench", "-i", inv, "-f", forks, "-m", "raw", "-a", "uname -r")
	})
	if err != nil {
		return
	}
	cp, err = s.measure("ansible -m copy: copy 10 MB", func() error {
		return run(ctx, "ansible", "bench", "-i", inv, "-f", forks, "-m", "copy", "-a", "src="+payload+" dest=/tmp/payload-ansible")
	})
	return
}

// Needs are the peer tools' commands and their Debian packages.
var Needs = pkgs.Need{"parallel-ssh": "pssh", "ansible": "ansible-core"}

// Run measures every tool on the hosts (the peers that are installed) and
// prints the table to out; problems with a peer go to errw.
func (s *Setup) Run(ctx context.Context, out, errw io.Writer) error {
	dir, err := os.MkdirTemp("", "booted-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	payload, err := Payload(dir)
	if err != nil {
		return err
	}
	var rows []Row
	gc, gp, err := s.PlainGo(ctx, payload)
	if err != nil {
		return err
	}
	rows = append(rows, Row{Tool: "plain Go x/crypto/ssh", Command: gc, Copy: gp})
	bc, second, bp, err := s.Booted(ctx, payload)
	if err != nil {
		return err
	}
	rows = append(rows, Row{Tool: "booted", Command: bc, Copy: bp}, Row{Tool: "booted, 2nd step same conns", Command: second})
	for _, peer := range []struct {
		cmd, tool string
		run       func(ctx context.Context, dir, payload string) (time.Duration, time.Duration, error)
	}{{"parallel-ssh", "parallel-ssh / parallel-scp", s.PSSH}, {"ansible", "ansible -m raw / -m copy", s.Ansible}} {
		if _, err := exec.LookPath(peer.cmd); err != nil {
			continue
		}
		c, p, err := peer.run(ctx, dir, payload)
		if err != nil {
			fmt.Fprintf(errw, "bench: %v\n", err)
		}
		rows = append(rows, Row{Tool: peer.tool, Command: c, Copy: p})
	}
	fmt.Fprintln(out)
	Table(out, len(s.Hosts), rows)
	return nil
}

func run(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "ANSIBLE_HOST_KEY_CHECKING=True", "ANSIBLE_NOCOLOR=1", "ANSIBLE_LOCAL_TEMP=/tmp", "ANSIBLE_REMOTE_TEMP=/tmp")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v: %s", err, report.TailLines(string(out), 10))
	}
	return nil
}

// Table prints rows with ratios to the first row (the plain Go loop).
func Table(w io.Writer, n int, rows []Row) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "N=%d\ttool\tuname -r\tratio\tcopy 10 MB\tratio\t\n", n)
	base := rows[0]
	ratio := func(a, b time.Duration) string {
		if a == 0 || b == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2fx", float64(a)/float64(b))
	}
	ms := func(d time.Duration) string {
		if d == 0 {
			return "-"
		}
		return d.Round(time.Millisecond).String()
	}
	for _, r := range rows {
		fmt.Fprintf(tw, "\t%s\t%s\t%s\t%s\t%s\t\n", r.Tool, ms(r.Command), ratio(r.Command, base.Command), ms(r.Copy), ratio(r.Copy, base.Copy))
	}
	tw.Flush()
}
