// Package bench measures booted's SSH fan-out against the peer tools on
// local hosts: a plain Go x/crypto/ssh loop (the floor), parallel-ssh and
// ansible's raw module, for a command (uname -r: its time, and the memory
// the Go loop and booted held meanwhile) and for copying a 10 MB file (to
// the first CopyHosts hosts; booted's put again when the hosts have it),
// and prints medians side by side.
package bench

import (
	"cmp"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"booted/internal/fanout"
	"booted/internal/files"
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
	// Parallel is booted's parallelism (its pool keeps as many
	// connections); 0: fanout.DefaultParallel.
	Parallel int
	// CopyHosts is how many of the hosts the copies go to (0: 50).
	CopyHosts int
}

// copyHosts are the hosts the copies go to.
func (s *Setup) copyHosts() []Host {
	n := s.CopyHosts
	if n <= 0 {
		n = 50
	}
	return s.Hosts[:min(n, len(s.Hosts))]
}

// Row is one tool's medians.
type Row struct {
	Tool    string
	Command time.Duration
	// Memory is the most the Go runtime held live (heap objects and
	// stacks) above what it held before, during the command's run (the Go
	// loop and booted only; 0: not measured).
	Memory uint64
	Copy   time.Duration
	// Unchanged is a put again of what the hosts have (booted only).
	Unchanged time.Duration
}

// peakMemory runs fn and returns the most memory the Go runtime held
// live meanwhile for heap objects and goroutine stacks, above what it
// held before: it collects every 20 ms while fn runs and reads what
// survived. What is held, not garbage yet to be collected (which follows
// GOGC, not the program), as a process under GOMEMLIMIT would keep.
func peakMemory(fn func() error) (uint64, error) {
	samples := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/memory/classes/heap/stacks:bytes"}}
	read := func() uint64 {
		runtime.GC()
		metrics.Read(samples)
		return samples[0].Value.Uint64() + samples[1].Value.Uint64()
	}
	base := read()
	stop, done := make(chan struct{}), make(chan uint64)
	go func() {
		peak := base
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				done <- peak
				return
			case <-t.C:
				peak = max(peak, read())
			}
		}
	}()
	err := fn()
	close(stop)
	return <-done - base, err
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

// Booted runs uname -r through booted's pool (dial, wrapper, recap data;
// at most Parallel hosts and connections at a time), then a second step
// with the same pool; and puts the payload as hosts:put does (hashed once,
// copied over SFTP, what each host got recorded), then again (one stat a
// host).
func (s *Setup) Booted(ctx context.Context, payload string) (row, second Row, err error) {
	parallel := cmp.Or(s.Parallel, fanout.DefaultParallel)
	opt := remote.Options{Parallel: parallel}
	newPool := func() *remote.Pool {
		return remote.NewPool(remote.Auth{User: s.User, Signer: s.Signer}, 10*time.Second, parallel)
	}
	uname := func(pool *remote.Pool) error {
		return eachOK(pool.Each(ctx, s.Hosts, opt, func(ctx context.Context, rs *remote.Session) error {
			_, err := rs.Output(ctx, "uname -r")
			return err
		}))
	}
	var firsts, seconds []time.Duration
	for i := 0; i < s.Runs; i++ {
		pool := newPool()
		start := time.Now()
		err = uname(pool)
		firsts = append(firsts, time.Since(start))
		if err == nil {
			start = time.Now()
			err = uname(pool)
			seconds = append(seconds, time.Since(start))
		}
		pool.Close()
		if err != nil {
			return row, second, fmt.Errorf("booted: %w", err)
		}
	}
	row = Row{Tool: fmt.Sprintf("booted (%d at a time)", parallel), Command: median(firsts)}
	second = Row{Tool: "booted, a 2nd step, same pool", Command: median(seconds)}
	fmt.Fprintf(s.Log, "  %-32s median %v of %d runs\n", "booted: uname -r", row.Command.Round(time.Millisecond), s.Runs)
	fmt.Fprintf(s.Log, "  %-32s median %v\n", "booted: second step, same pool", second.Command.Round(time.Millisecond))
	if row.Memory, err = peakMemory(func() error { p := newPool(); defer p.Close(); return uname(p) }); err != nil {
		return
	}
	const dst = "/tmp/payload-booted"
	hosts := s.copyHosts()
	var mu sync.Mutex
	placed := map[string]files.Placed{}
	put := func(pool *remote.Pool) error {
		local, err := files.Hash(payload, nil) // (once per put, as hosts:put does)
		if err != nil {
			return err
		}
		return eachOK(pool.Each(ctx, hosts, opt, func(ctx context.Context, rs *remote.Session) error {
			c, err := rs.Client(ctx)
			if err != nil {
				return err
			}
			mu.Lock()
			known, ok := placed[rs.Target.Name]
			mu.Unlock()
			spec := files.PutSpec{Src: local, Dst: dst}
			if ok {
				spec.Known = &known
			}
			_, p, err := files.Put(ctx, c, spec)
			mu.Lock()
			placed[rs.Target.Name] = p
			mu.Unlock()
			return err
		}))
	}
	var copies, again []time.Duration
	for i := 0; i < s.Runs; i++ {
		pool := newPool() // (a new process's: each put dials)
		err = eachOK(pool.Each(ctx, hosts, opt, func(ctx context.Context, rs *remote.Session) error { return rs.Run(ctx, "rm -f "+dst) }))
		pool.Close()
		clear(placed)
		if err != nil {
			return
		}
		for _, into := range []*[]time.Duration{&copies, &again} {
			pool := newPool()
			start := time.Now()
			err = put(pool)
			*into = append(*into, time.Since(start))
			pool.Close()
			if err != nil {
				return row, second, fmt.Errorf("booted: put: %w", err)
			}
		}
	}
	row.Copy, row.Unchanged = median(copies), median(again)
	fmt.Fprintf(s.Log, "  %-32s median %v of %d runs\n", fmt.Sprintf("booted: put 10 MB to %d", len(hosts)), row.Copy.Round(time.Millisecond), s.Runs)
	fmt.Fprintf(s.Log, "  %-32s median %v of %d runs\n", "booted: the same put again", row.Unchanged.Round(time.Millisecond), s.Runs)
	return row, second, nil
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
func (s *Setup) PlainGo(ctx context.Context, payload string) (row Row, err error) {
	each := func(hosts []Host, fn func(c *ssh.Client) error) error {
		var wg sync.WaitGroup
		errs := make(chan error, len(hosts))
		for _, h := range hosts {
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
	uname := func() error {
		return each(s.Hosts, func(c *ssh.Client) error {
			ss, err := c.NewSession()
			if err != nil {
				return err
			}
			defer ss.Close()
			_, err = ss.Output("uname -r")
			return err
		})
	}
	row.Tool = "plain Go x/crypto/ssh"
	if row.Command, err = s.measure("plain Go loop: uname -r", uname); err != nil {
		return
	}
	if row.Memory, err = peakMemory(uname); err != nil {
		return
	}
	row.Copy, err = s.measure(fmt.Sprintf("plain Go loop: copy 10 MB to %d (sftp)", len(s.copyHosts())), func() error {
		return each(s.copyHosts(), func(c *ssh.Client) error { return sftpCopy(c, payload, "/tmp/payload-go") })
	})
	return
}

func (s *Setup) sshOpts() []string {
	return []string{"-i", s.Key, "-o", "UserKnownHostsFile=" + s.KnownHosts, "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "GlobalKnownHostsFile=/dev/null"}
}

// PSSH runs parallel-ssh and parallel-scp with as many parallel as hosts.
func (s *Setup) PSSH(ctx context.Context, dir, payload string) (cmd, cp time.Duration, err error) {
	hostsFile := func(name string, hosts []Host) (string, error) {
		var b strings.Builder
		for _, h := range hosts {
			fmt.Fprintf(&b, "%s@%s\n", s.User, h.Addr)
		}
		return filepath.Join(dir, name), os.WriteFile(filepath.Join(dir, name), []byte(b.String()), 0o644)
	}
	hf, err := hostsFile("pssh-hosts", s.Hosts)
	if err != nil {
		return
	}
	cf, err := hostsFile("pssh-copy-hosts", s.copyHosts())
	if err != nil {
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
		return run(ctx, "parallel-scp", append(append([]string{"-h", cf, "-p", par, "-t", "120"}, x...), payload, "/tmp/payload-pssh")...)
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
	b.WriteString("[copy]\n")
	for _, h := range s.copyHosts() {
		fmt.Fprintf(&b, "%s\n", h.Name)
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
		return run(ctx, "ansible", "copy", "-i", inv, "-f", forks, "-m", "copy", "-a", "src="+payload+" dest=/tmp/payload-ansible")
	})
	return
}

// Needs are the peer tools' commands and their Debian packages.
var Needs = pkgs.Need{"parallel-ssh": "pssh", "ansible": "ansible-core"}

// MaxPeers is the most hosts the peers run on: past it, a run of
// ansible or parallel-ssh with a fork per host takes minutes and
// gigabytes, and they are left out.
const MaxPeers = 250

// Run measures every tool on the hosts (the peers that are installed,
// up to MaxPeers hosts) and prints the table to out; problems with a
// peer go to errw.
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
	sizes := []int{len(s.Hosts)}
	if len(s.Hosts) > 100 { // the same figures on the first 100 as well, to compare
		sizes = []int{100, len(s.Hosts)}
	}
	for _, n := range sizes {
		sub := *s
		sub.Hosts = s.Hosts[:n]
		fmt.Fprintf(s.Log, "bench: %d hosts\n", n)
		if err := sub.run(ctx, dir, payload, out, errw); err != nil {
			return err
		}
	}
	return nil
}

// run measures every tool on s.Hosts and prints their table.
func (s *Setup) run(ctx context.Context, dir, payload string, out, errw io.Writer) error {
	plain, err := s.PlainGo(ctx, payload)
	if err != nil { // (1,000 dials at once: once, ARP answers came too late for one)
		fmt.Fprintf(errw, "bench: %d hosts: %v (its figures are left out)\n", len(s.Hosts), err)
		plain = Row{Tool: "plain Go x/crypto/ssh (failed)"}
	}
	booted, second, err := s.Booted(ctx, payload)
	if err != nil {
		return err
	}
	rows := []Row{plain, booted, second}
	for _, peer := range []struct {
		cmd, tool string
		run       func(ctx context.Context, dir, payload string) (time.Duration, time.Duration, error)
	}{{"parallel-ssh", "parallel-ssh / parallel-scp", s.PSSH}, {"ansible", "ansible -m raw / -m copy", s.Ansible}} {
		if _, err := exec.LookPath(peer.cmd); err != nil {
			continue
		}
		if len(s.Hosts) > MaxPeers {
			fmt.Fprintf(errw, "bench: %s left out past %d hosts\n", peer.cmd, MaxPeers)
			continue
		}
		c, p, err := peer.run(ctx, dir, payload)
		if err != nil {
			fmt.Fprintf(errw, "bench: %v\n", err)
		}
		rows = append(rows, Row{Tool: peer.tool, Command: c, Copy: p})
	}
	fmt.Fprintln(out)
	Table(out, len(s.Hosts), len(s.copyHosts()), rows)
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

// Table prints rows with ratios to the first row (the plain Go loop): n
// hosts for the command, copies to c of them; an unchanged put against
// the plain loop's copy.
func Table(w io.Writer, n, c int, rows []Row) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "N=%d\ttool\tuname -r\tratio\tpeak memory\tratio\tcopy 10 MB to %d\tratio\tput unchanged\tratio\t\n", n, c)
	base := rows[0]
	ratio := func(a, b float64) string {
		if a == 0 || b == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2fx", a/b)
	}
	ms := func(d time.Duration) string {
		if d == 0 {
			return "-"
		}
		return d.Round(time.Millisecond).String()
	}
	mib := func(b uint64) string {
		if b == 0 {
			return "-"
		}
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	}
	for _, r := range rows {
		fmt.Fprintf(tw, "\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.Tool,
			ms(r.Command), ratio(float64(r.Command), float64(base.Command)),
			mib(r.Memory), ratio(float64(r.Memory), float64(base.Memory)),
			ms(r.Copy), ratio(float64(r.Copy), float64(base.Copy)),
			ms(r.Unchanged), ratio(float64(r.Unchanged), float64(base.Copy)))
	}
	tw.Flush()
}
