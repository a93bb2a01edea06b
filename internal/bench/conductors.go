package bench

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"booted/internal/outcome"
	"booted/internal/report"
)

// conductorsRow is one figure of bench:conductors.
type conductorsRow struct {
	What  string `json:"what"`
	Hosts int    `json:"hosts"`
	Runs  int    `json:"runs"`
	// First is the first run's wall time (every SSH connection made);
	// Median and Min those of the runs after it (a conductor keeps its
	// connections to its site's hosts between runs; a target process
	// makes them again each time).
	First  float64 `json:"firstSeconds"`
	Median float64 `json:"medianSeconds"`
	Min    float64 `json:"minSeconds"`
	// ControllerRSS is the target process's peak RSS (MB, the largest of
	// the runs); ConductorRSS each conductor's over all its runs.
	ControllerRSS float64   `json:"controllerRssMB"`
	ConductorRSS  []float64 `json:"conductorRssMB,omitempty"`
	// ControllerCPU is the target process's CPU seconds (user and
	// system) in its median run; ConductorsCPU all conductors' together,
	// per run (their total over the runs, divided by the runs).
	ControllerCPU float64 `json:"controllerCpuSeconds"`
	ConductorsCPU float64 `json:"conductorsCpuSeconds,omitempty"`
	// DBBytes is the inventory's size after the runs.
	DBBytes int64  `json:"inventoryBytes"`
	Note    string `json:"note,omitempty"`
}

// cpu is a finished process's CPU seconds, user and system.
func cpu(st *os.ProcessState) float64 {
	if st == nil {
		return 0
	}
	return (st.UserTime() + st.SystemTime()).Seconds()
}

// Conductors measures hosts:run on n hosts done in the target's own
// process against the same run split over sites (10 from 100 hosts, else
// 2), each with a conductor (a NATS server made by nats:config, TLS and
// nkeys): wall time, CPU seconds and peak RSS of the target and of the
// conductors, and the inventory's size. The hosts are static
// hosts that are one sshd of the bench's on 127.0.0.1 (each its own SSH
// connection and session, as n machines would be); everything it starts
// runs in a temporary project and is stopped (by PID) and removed after.
// The first run is shown apart: a conductor keeps its SSH connections to
// its site's hosts between runs, a target process makes them each time.
// BOOTED_BENCH_RUNS sets the runs after it (5).
func Conductors(ctx context.Context, r Opts, n int) error {
	if n < 2 || n > 10000 {
		return outcome.Refuse("bench:conductors: %d hosts: use 2 to 10000", n)
	}
	nsites := 2
	if n >= 100 {
		nsites = 10
	}
	root, err := filepath.Abs(r.Root)
	if err != nil {
		return err
	}
	for _, c := range []string{"nats-server", "/usr/sbin/sshd", "ssh-keygen"} {
		if _, err := exec.LookPath(c); err != nil {
			return fmt.Errorf("bench:conductors needs %s (go run mage.go test installs it): %w", c, err)
		}
	}
	tmp, err := os.MkdirTemp("", "booted-bench-conductors-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	say := func(f string, a ...any) { fmt.Fprintf(r.Err, "bench:conductors: "+f+"\n", a...) }
	bin := filepath.Join(tmp, "booted")
	say("compiling the command (go run mage.go -compile)")
	cmd := exec.CommandContext(ctx, "go", "run", "mage.go", "-compile", bin)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("bench:conductors: go run mage.go -compile: %v: %s", err, report.TailLines(string(out), 5))
	}
	proj := filepath.Join(tmp, "project")
	for _, d := range []string{"envs", "inventory"} {
		if err := os.MkdirAll(filepath.Join(proj, d), 0o700); err != nil {
			return err
		}
	}
	// The hosts: one sshd on a free port that takes n connections at once.
	keygen := func(path string) error {
		out, err := exec.CommandContext(ctx, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ssh-keygen %s: %v: %s", path, err, out)
		}
		return nil
	}
	key, hostKey := filepath.Join(tmp, "id_ed25519"), filepath.Join(tmp, "ssh_host_ed25519_key")
	if err := keygen(key); err != nil {
		return err
	}
	if err := keygen(hostKey); err != nil {
		return err
	}
	pub, _ := os.ReadFile(key + ".pub")
	hostPub, _ := os.ReadFile(hostKey + ".pub")
	os.WriteFile(filepath.Join(tmp, "authorized_keys"), pub, 0o600)
	sshPort, err := freePort()
	if err != nil {
		return err
	}
	natsPort, err := freePort()
	if err != nil {
		return err
	}
	os.MkdirAll("/run/sshd", 0o755)
	sshdConf := filepath.Join(tmp, "sshd_config")
	os.WriteFile(sshdConf, []byte(fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %s
AuthorizedKeysFile %s
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
MaxStartups %d
MaxSessions 10
PidFile none
`, sshPort, hostKey, filepath.Join(tmp, "authorized_keys"), n+100)), 0o600)
	var procs []*exec.Cmd // stopped at the end, by PID
	defer func() {
		for _, p := range procs {
			if p.ProcessState == nil {
				p.Process.Signal(syscall.SIGTERM)
				done := make(chan struct{})
				go func() { p.Wait(); close(done) }()
				select {
				case <-done:
				case <-time.After(10 * time.Second):
					p.Process.Kill()
					<-done
				}
			}
		}
	}()
	start := func(name string, args []string, env ...string) (*exec.Cmd, error) {
		c := exec.Command(name, args...)
		c.Dir = proj
		c.Env = append(os.Environ(), env...)
		log, err := os.Create(filepath.Join(tmp, filepath.Base(name)+fmt.Sprint(len(procs))+".log"))
		if err != nil {
			return nil, err
		}
		defer log.Close()
		c.Stdout, c.Stderr = log, log
		if err := c.Start(); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		procs = append(procs, c)
		return c, nil
	}
	// Its root's home is empty (in a mount namespace of its own), as on a
	// fresh machine: this machine's shell profile (pyenv, say) would cost
	// each session more than booted does.
	if _, err := start("unshare", []string{"--mount", "--propagation", "private", "--", "sh", "-c",
		`mount -t tmpfs -o mode=0700 none "$HOME" && exec /usr/sbin/sshd -D -e -f "$0"`, sshdConf}, "HOME=/root"); err != nil {
		return err
	}
	if err := waitListening(ctx, fmt.Sprintf("127.0.0.1:%d", sshPort)); err != nil {
		return fmt.Errorf("bench:conductors: the hosts' sshd: %w", err)
	}
	os.WriteFile(filepath.Join(tmp, "known_hosts"), []byte(fmt.Sprintf("[127.0.0.1]:%d %s", sshPort, hostPub)), 0o600)

	// Two environments of the same hosts: one without sites, one whose
	// hosts are split over sites a and b.
	var hosts, names []string
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("h%04d", i)
		names = append(names, name)
		hosts = append(hosts, fmt.Sprintf("      - {name: %s, address: 127.0.0.1, port: %d}", name, sshPort))
	}
	body := fmt.Sprintf(`version: 1
provider:
  type: static
  static:
    known_hosts: %s
    hosts:
%s
ssh:
  user: root
  key: %s
timeouts: {ssh: 60s, ping: 5s, command: 5m}
roles:
  workers:
    hosts: [%s]
    min: 0
    max: %d
`, filepath.Join(tmp, "known_hosts"), strings.Join(hosts, "\n"), key, strings.Join(names, ", "), n)
	os.WriteFile(filepath.Join(proj, "envs", "inproc.yaml"), []byte(body), 0o644)
	var siteNames, siteLines []string
	for i := range nsites {
		name := string(rune('a' + i))
		siteNames = append(siteNames, name)
		siteLines = append(siteLines, fmt.Sprintf("  %s: {hosts: [%s]}", name, strings.Join(names[i*n/nsites:(i+1)*n/nsites], ", ")))
	}
	os.WriteFile(filepath.Join(proj, "envs", "sites.yaml"), []byte(body+fmt.Sprintf(`nats:
  urls: [tls://127.0.0.1:%d]
sites:
%s
`, natsPort, strings.Join(siteLines, "\n"))), 0o644)
	env := []string{"BOOTED_ROOT=" + proj, "BOOTED_INVENTORY=" + filepath.Join(proj, "inventory"), "BOOTED_OUTPUT=text"}
	booted := func(args ...string) ([]byte, *os.ProcessState, error) {
		c := exec.CommandContext(ctx, bin, args...)
		c.Dir, c.Env = proj, append(os.Environ(), env...)
		out, err := c.CombinedOutput()
		if err != nil {
			return out, c.ProcessState, fmt.Errorf("bench:conductors: booted %s: %v: %s", strings.Join(args, " "), err, report.TailLines(string(out), 5))
		}
		return out, c.ProcessState, nil
	}
	// runs times hosts:run on envName, after a first run timed apart.
	measure := func(what, envName, note string) (conductorsRow, error) {
		say("%s: hosts:run %s true, once and %d times more", what, envName, r.BenchRuns)
		row := conductorsRow{What: what, Hosts: n, Runs: r.BenchRuns, Note: note}
		t0 := time.Now()
		_, st, err := booted("hosts:run", envName, "true")
		if err != nil {
			return row, err
		}
		row.First, row.ControllerRSS = time.Since(t0).Seconds(), maxRSS(st)
		type run struct {
			wall time.Duration
			cpu  float64
		}
		var runs []run
		for i := 0; i < r.BenchRuns; i++ {
			t0 := time.Now()
			_, st, err := booted("hosts:run", envName, "true")
			if err != nil {
				return row, err
			}
			runs = append(runs, run{time.Since(t0), cpu(st)})
			row.ControllerRSS = max(row.ControllerRSS, maxRSS(st))
		}
		slices.SortFunc(runs, func(a, b run) int { return int(a.wall - b.wall) })
		row.Median, row.Min, row.ControllerCPU = runs[len(runs)/2].wall.Seconds(), runs[0].wall.Seconds(), runs[len(runs)/2].cpu
		if st, err := os.Stat(filepath.Join(proj, "inventory", "booted.db")); err == nil {
			row.DBBytes = st.Size()
		}
		return row, nil
	}
	var rows []conductorsRow
	row, err := measure("in-process", "inproc", "BOOTED_PARALLEL 64 (the default)")
	if err != nil {
		return err
	}
	rows = append(rows, row)

	// The cluster and the conductors, as a user makes them.
	if _, _, err := booted("nats:config", "sites"); err != nil {
		return err
	}
	if _, err := start("nats-server", []string{"-c", filepath.Join(proj, "inventory", "sites", "nats", "server-1.conf")}); err != nil {
		return err
	}
	if err := waitListening(ctx, fmt.Sprintf("127.0.0.1:%d", natsPort)); err != nil {
		return fmt.Errorf("bench:conductors: nats-server: %w", err)
	}
	var conductors []*exec.Cmd
	for _, site := range siteNames {
		c, err := start(bin, []string{"conductor:run", "sites", site}, append(env, "BOOTED_PARALLEL=32")...)
		if err != nil {
			return err
		}
		conductors = append(conductors, c)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, _, err := booted("conductors:list", "sites")
		if err == nil && strings.Count(string(out), " ago ") == nsites {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench:conductors: the %d conductors did not beat within 60 s (logs in %s): %v %s", nsites, tmp, err, report.TailLines(string(out), 5))
		}
		time.Sleep(500 * time.Millisecond)
	}
	row, err = measure(fmt.Sprintf("%d sites, a conductor each", nsites), "sites", "NATS JetStream (1 server, TLS, nkeys); each conductor BOOTED_PARALLEL 32")
	if err != nil {
		return err
	}
	for _, c := range conductors {
		c.Process.Signal(syscall.SIGTERM)
		c.Wait()
		row.ConductorRSS = append(row.ConductorRSS, maxRSS(c.ProcessState))
		row.ConductorsCPU += cpu(c.ProcessState) / float64(r.BenchRuns+1)
	}
	rows = append(rows, row)
	return report.Rows(r.Out, r.JSON, rows, []string{"HOSTS:RUN 'true'", "HOSTS", "FIRST", "RUNS", "MEDIAN", "MIN", "TARGET CPU", "TARGET RSS", "CONDUCTORS CPU", "CONDUCTORS RSS (MAX)", "INVENTORY", "NOTE"}, func(x conductorsRow) []string {
		ccpu, crss := "-", "-"
		if len(x.ConductorRSS) > 0 {
			ccpu, crss = fmt.Sprintf("%.1f s", x.ConductorsCPU), fmt.Sprintf("%.0f MB", slices.Max(x.ConductorRSS))
		}
		return []string{x.What, fmt.Sprint(x.Hosts), seconds(x.First), fmt.Sprint(x.Runs), seconds(x.Median), seconds(x.Min),
			fmt.Sprintf("%.1f s", x.ControllerCPU), fmt.Sprintf("%.0f MB", x.ControllerRSS), ccpu, crss, fmt.Sprintf("%.1f MB", float64(x.DBBytes)/1e6), x.Note}
	})
}

// maxRSS is a finished process's peak resident set, in MB.
func maxRSS(st *os.ProcessState) float64 {
	if st == nil {
		return 0
	}
	if ru, ok := st.SysUsage().(*syscall.Rusage); ok {
		return float64(ru.Maxrss) / 1024 // KB on Linux
	}
	return 0
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitListening waits (15 s at most) for addr to take connections.
func waitListening(ctx context.Context, addr string) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("nothing listens on %s after 15 s: %w", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
