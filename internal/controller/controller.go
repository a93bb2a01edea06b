// Package controller runs the controller's nginx for one environment: the
// server hosts phone home to (each callback becomes a line of the boot log)
// and that serves their rendered kickstart files.
//
// nginx runs as a daemon with its own prefix under inventory/ENV/nginx and
// is found again through its pid file, so that every booted command (and the
// monitor daemon) shares it.
package controller

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/template"
	"time"

	"booted/internal/bootlog"
	"booted/internal/pidfile"
	"booted/internal/pkgs"
)

// Controller is the controller nginx of one environment.
type Controller struct {
	Env string
	// Listen is the address:port nginx listens on.
	Listen string
	// Dir holds nginx.conf, the pid file, the error log and temp files.
	Dir string
	// BootLog is the log callbacks are written to.
	BootLog string
	// KickstartDir is served under /kickstart/.
	KickstartDir string
	// MetalDir holds what bare-metal nodes boot from, served under /metal/
	// (default: next to KickstartDir).
	MetalDir string
	// Template is nginx/controller.conf.tmpl.
	Template string
	// Now is the clock used to name rotated logs; nil means time.Now.
	Now func() time.Time
}

// debianNginx is where Debian's nginx-light puts nginx.
const debianNginx = "/usr/sbin/nginx"

func nginxBin() string {
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	return debianNginx
}

func (c *Controller) conf() string { return filepath.Join(c.Dir, "nginx.conf") }

func (c *Controller) metalDir() string {
	if c.MetalDir != "" {
		return c.MetalDir
	}
	return filepath.Join(filepath.Dir(c.KickstartDir), "metal")
}

// MetadataDir holds the instances' metadata, one directory per address
// (inventory/ENV/metadata), served at /latest/ to that address alone.
func (c *Controller) MetadataDir() string {
	return filepath.Join(filepath.Dir(c.KickstartDir), "metadata")
}

// Render returns the nginx configuration.
func (c *Controller) Render() ([]byte, error) {
	src, err := os.ReadFile(c.Template)
	if err != nil {
		return nil, fmt.Errorf("controller nginx template: %w", err)
	}
	t, err := template.New(filepath.Base(c.Template)).Option("missingkey=error").Parse(string(src))
	if err != nil {
		return nil, fmt.Errorf("controller nginx template %s: %w", c.Template, err)
	}
	var b bytes.Buffer
	err = t.Execute(&b, map[string]string{
		"Env": c.Env, "Dir": c.Dir, "Listen": c.Listen, "BootLog": c.BootLog,
		"KickstartDir": c.KickstartDir, "MetalDir": c.metalDir(), "MetadataDir": c.MetadataDir(), "LogFormat": bootlog.LogFormat,
	})
	if err != nil {
		return nil, fmt.Errorf("controller nginx template %s: %w", c.Template, err)
	}
	return b.Bytes(), nil
}

// PID returns the pid of the running nginx master, or 0.
func (c *Controller) PID() int { return pidfile.Read(filepath.Join(c.Dir, "nginx.pid"), c.conf()) }

// writeConf renders the configuration, checks it with nginx -t and only
// then puts it in place; a configuration that fails the check is never used.
func (c *Controller) writeConf(ctx context.Context) error {
	for _, d := range []string{filepath.Dir(c.BootLog), c.Dir, filepath.Join(c.Dir, "tmp"), c.KickstartDir, c.metalDir(), c.MetadataDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
		if err := os.Chmod(d, 0o700); err != nil {
			return err
		}
	}
	if err := privateLog(c.BootLog); err != nil {
		return err
	}
	if _, err := os.Stat(c.seeds()); err != nil { // included: it must exist
		if err := os.WriteFile(c.seeds(), nil, 0o600); err != nil {
			return err
		}
	}
	conf, err := c.Render()
	if err != nil {
		return err
	}
	next := c.conf() + ".next"
	if err := os.WriteFile(next, conf, 0o600); err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, nginxBin(), "-t", "-q", "-p", c.Dir, "-c", next, "-e", filepath.Join(c.Dir, "error.log")).CombinedOutput()
	if err != nil {
		return fmt.Errorf("controller nginx of %s: the new configuration fails nginx -t (kept the old one): %s", c.Env, bytes.TrimSpace(out))
	}
	return os.Rename(next, c.conf())
}

// Ensure starts nginx if it is not running, and reloads a running one
// whose included file (metal/seeds.conf: which node may fetch what) changed
// since it read it.
func (c *Controller) Ensure(ctx context.Context) error {
	if pid := c.PID(); pid != 0 {
		return c.reloadIncluded(ctx, pid)
	}
	if err := c.writeConf(ctx); err != nil {
		return err
	}
	return c.start(ctx)
}

func (c *Controller) seeds() string  { return filepath.Join(c.metalDir(), "seeds.conf") }
func (c *Controller) loaded() string { return filepath.Join(c.Dir, "seeds.conf.loaded") }

// markLoaded keeps a copy of the included file as nginx read it.
func (c *Controller) markLoaded() {
	b, _ := os.ReadFile(c.seeds())
	os.WriteFile(c.loaded(), b, 0o600)
}

func (c *Controller) reloadIncluded(ctx context.Context, pid int) error {
	cur, _ := os.ReadFile(c.seeds())
	was, _ := os.ReadFile(c.loaded())
	if bytes.Equal(cur, was) {
		return nil
	}
	out, err := exec.CommandContext(ctx, nginxBin(), "-t", "-q", "-p", c.Dir, "-c", c.conf(), "-e", filepath.Join(c.Dir, "error.log")).CombinedOutput()
	if err != nil {
		return fmt.Errorf("controller nginx of %s: %s fails nginx -t (nginx keeps the old one): %s", c.Env, c.seeds(), bytes.TrimSpace(out))
	}
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		return fmt.Errorf("controller nginx of %s (pid %d): reload: %w", c.Env, pid, err)
	}
	c.markLoaded()
	return nil
}

func (c *Controller) start(ctx context.Context) error {
	c.markLoaded()
	out, err := exec.CommandContext(ctx, nginxBin(), "-p", c.Dir, "-c", c.conf(), "-e", filepath.Join(c.Dir, "error.log")).CombinedOutput()
	if err != nil {
		return fmt.Errorf("start controller nginx of %s on %s: %v: %s", c.Env, c.Listen, err, bytes.TrimSpace(out))
	}
	return c.waitListening(ctx)
}

func (c *Controller) waitListening(ctx context.Context) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		d := net.Dialer{Timeout: 200 * time.Millisecond}
		conn, err := d.DialContext(ctx, "tcp", c.Listen)
		if err == nil {
			conn.Close()
			if c.PID() != 0 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("controller nginx of %s does not answer on %s (see %s): %v", c.Env, c.Listen, filepath.Join(c.Dir, "error.log"), err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Restart starts a new boot log, keeping the old one as BOOTLOG.TIMESTAMP
// (returned, or "" when there was none), and (re)starts nginx with a fresh
// configuration. A running nginx is restarted gracefully (it reopens its
// logs and reloads), so that no callback is refused meanwhile.
func (c *Controller) Restart(ctx context.Context) (string, error) {
	if err := c.writeConf(ctx); err != nil {
		return "", err
	}
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	rotated := ""
	if st, err := os.Stat(c.BootLog); err == nil && st.Size() > 0 {
		rotated = bootlog.RotatedName(c.BootLog, now())
		if err := os.Rename(c.BootLog, rotated); err != nil {
			return "", err
		}
	}
	// The new log exists, root's and private, before nginx opens it.
	if err := privateLog(c.BootLog); err != nil {
		return rotated, err
	}
	pid := c.PID()
	if pid == 0 {
		return rotated, c.start(ctx)
	}
	if err := syscall.Kill(pid, syscall.SIGUSR1); err != nil { // reopen the logs
		return rotated, fmt.Errorf("controller nginx of %s (pid %d): reopen logs: %w", c.Env, pid, err)
	}
	c.markLoaded()
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil { // reload the configuration
		return rotated, fmt.Errorf("controller nginx of %s (pid %d): reload: %w", c.Env, pid, err)
	}
	// Wait until no nginx process writes to the old log any more.
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := os.Stat(c.BootLog)
		if err == nil && (rotated == "" || !holdsOpen(pid, rotated)) {
			return rotated, c.waitListening(ctx)
		}
		if time.Now().After(deadline) {
			return rotated, fmt.Errorf("controller nginx of %s (pid %d) did not reopen %s", c.Env, pid, c.BootLog)
		}
		select {
		case <-ctx.Done():
			return rotated, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// privateLog makes sure path exists, owned by root and readable by root
// only (it holds enrollment tokens).
func privateLog(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Chmod(0o600); err != nil {
		return err
	}
	if os.Geteuid() == 0 {
		return f.Chown(0, 0)
	}
	return nil
}

// holdsOpen reports whether the nginx master pid or one of its workers has
// path open.
func holdsOpen(pid int, path string) bool {
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		n, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		if n != pid {
			stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", n))
			i := bytes.LastIndexByte(stat, ')')
			if err != nil || i < 0 {
				continue
			}
			f := strings.Fields(string(stat[i+1:]))
			if len(f) < 2 || f[1] != strconv.Itoa(pid) {
				continue
			}
		}
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", n))
		for _, fd := range fds {
			if l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", n, fd.Name())); err == nil && l == path {
				return true
			}
		}
	}
	return false
}

// Stop stops nginx (gracefully, then by force after 5 s).
func (c *Controller) Stop(ctx context.Context) error {
	if err := pidfile.Stop(ctx, filepath.Join(c.Dir, "nginx.pid"), c.conf(), syscall.SIGQUIT, 5*time.Second); err != nil {
		return fmt.Errorf("controller nginx would not stop: %w", err)
	}
	return nil
}

// Needs are the commands the controller runs, and their Debian packages.
var Needs = pkgs.Need{debianNginx: "nginx-light"}
