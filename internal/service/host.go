package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"

	"github.com/pkg/sftp"

	"booted/internal/remote"
	"booted/internal/supervise"

	"booted/internal/shell"
)

// Deploy puts the artifact in releases/VERSION on the host, uploading it
// only when the host does not have that checksum yet, and switches the
// current link to it atomically. It keeps the newest Keep releases (and the
// previous one). It returns whether it uploaded.
func (d *Def) Deploy(ctx context.Context, s *remote.Session, a *Artifact) (bool, error) {
	rel := d.release(a.Version)
	have, err := s.Output(ctx, "cat "+q(rel+"/.sha256")+" 2>/dev/null || true")
	if err != nil {
		return false, err
	}
	uploaded := false
	if strings.TrimSpace(have) != a.SHA256 {
		if err := d.upload(ctx, s, a); err != nil {
			return false, fmt.Errorf("host %s: upload %s %s: %w", s.Target.Name, d.Name, a.Version, err)
		}
		uploaded = true
	}
	script := fmt.Sprintf(`set -e
cd %s
if [ -L current ]; then old=$(readlink current); [ "$old" = releases/%s ] || ln -sfn "$old" previous; fi
ln -sfn releases/%s current.tmp
mv -T current.tmp current
cur=$(readlink current); prev=$(readlink previous 2>/dev/null || true)
ls -1t releases | tail -n +%d | while read -r r; do
	[ "releases/$r" = "$cur" ] || [ "releases/$r" = "$prev" ] || rm -rf "releases/$r"
done`, q(d.base()), a.Version, a.Version, d.Keep+1)
	if err := s.Run(ctx, script); err != nil {
		return uploaded, fmt.Errorf("host %s: switch %s to %s: %w", s.Target.Name, d.Name, a.Version, err)
	}
	return uploaded, nil
}

func (d *Def) upload(ctx context.Context, s *remote.Session, a *Artifact) error {
	rel := d.release(a.Version)
	if err := s.Run(ctx, "mkdir -p "+q(rel)); err != nil {
		return err
	}
	c, err := s.Client(ctx)
	if err != nil {
		return err
	}
	sc, err := sftp.NewClient(c)
	if err != nil {
		return fmt.Errorf("sftp: %w", err)
	}
	defer sc.Close()
	stop := context.AfterFunc(ctx, func() { sc.Close() })
	defer stop()
	src, err := os.Open(a.Path)
	if err != nil {
		return err
	}
	defer src.Close()
	tmp := path.Join(rel, d.Name+".tmp")
	dst, err := sc.Create(tmp)
	if err != nil {
		return fmt.Errorf("sftp create %s: %w", tmp, err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return fmt.Errorf("sftp write %s: %w", tmp, err)
	}
	if err := dst.Close(); err != nil {
		return err
	}
	// Check what arrived, then put it in place with its checksum.
	script := fmt.Sprintf(`set -e
cd %s
sum=$(sha256sum %s.tmp | cut -d' ' -f1)
[ "$sum" = %s ] || { echo "checksum mismatch after upload: $sum" >&2; exit 1; }
chmod 755 %s.tmp
mv -f %s.tmp %s
echo %s > .sha256`, q(rel), d.Name, a.SHA256, d.Name, d.Name, d.Name, a.SHA256)
	return s.Run(ctx, script)
}

// State is what runs of a service on a host.
type State struct {
	Running bool
	PID     int
	Version string
	// SHA256 is the checksum of the release current points to ("" if
	// unknown).
	SHA256 string
}

// Status reads the service's state on the host: from systemd where the
// host runs it, else from the supervisor's pid files.
func (d *Def) Status(ctx context.Context, s *remote.Session) (State, error) {
	out, err := s.Output(ctx, fmt.Sprintf(`cd %s 2>/dev/null || exit 0
v=$(cat run/version 2>/dev/null || echo -)
sum=$(cat current/.sha256 2>/dev/null || echo -)
if [ -d /run/systemd/system ]; then
	if systemctl is-active --quiet %s; then echo running $(systemctl show -p MainPID --value %s) $v $sum; fi
	exit 0
fi
sp=$(cat run/supervisor.pid 2>/dev/null || true)
if [ -n "$sp" ] && kill -0 "$sp" 2>/dev/null; then echo running $(cat run/pid 2>/dev/null || echo 0) $v $sum; fi`, q(d.base()), d.unit(), d.unit()))
	if err != nil {
		return State{}, err
	}
	f := strings.Fields(out)
	if len(f) >= 3 && f[0] == "running" {
		pid, _ := strconv.Atoi(f[1])
		st := State{Running: true, PID: pid, Version: f[2]}
		if len(f) == 4 && f[3] != "-" {
			st.SHA256 = f[3]
		}
		return st, nil
	}
	return State{}, nil
}

// unit is the systemd unit's name.
func (d *Def) unit() string { return "booted-" + d.Name + ".service" }

// Unit returns the systemd unit booted installs on hosts that run systemd.
func (d *Def) Unit() (string, error) {
	start, err := d.startCommand()
	if err != nil {
		return "", err
	}
	return fmt.Sprintf(`# Written by booted: the %[1]s service.
[Unit]
Description=booted service %[1]s
After=network-online.target

[Service]
WorkingDirectory=%[2]s
ExecStart=/bin/sh -c %[3]s
Restart=always
RestartSec=1
TimeoutStopSec=10
StandardOutput=append:%[4]s
StandardError=inherit

[Install]
WantedBy=multi-user.target
`, d.Name, d.current(), q("exec "+start), d.logFile()), nil
}

// Start (re)starts the current release under the supervisor and returns
// the service's PID. A service already running the current release is left
// alone unless restart is set.
func (d *Def) Start(ctx context.Context, s *remote.Session, restart bool) (State, error) {
	cur, err := s.Output(ctx, "readlink "+q(d.current())+" || true")
	if err != nil {
		return State{}, err
	}
	version := strings.TrimPrefix(strings.TrimSpace(cur), "releases/")
	if version == "" {
		return State{}, fmt.Errorf("host %s: %s is not deployed (run service:deploy first)", s.Target.Name, d.Name)
	}
	st, err := d.Status(ctx, s)
	if err != nil {
		return st, err
	}
	if st.Running && st.Version == version && !restart {
		return st, nil
	}
	if st.Running {
		if _, err := d.Stop(ctx, s); err != nil {
			return st, err
		}
	}
	if err := supervise.Ensure(ctx, s); err != nil {
		return State{}, fmt.Errorf("host %s: install supervisor: %w", s.Target.Name, err)
	}
	start, err := d.startCommand()
	if err != nil {
		return State{}, fmt.Errorf("%s/service.yaml: start: %w", d.Dir, err)
	}
	unit, err := d.Unit()
	if err != nil {
		return State{}, fmt.Errorf("%s/service.yaml: start: %w", d.Dir, err)
	}
	script := fmt.Sprintf(`set -e
cd %[1]s/releases/%[2]s
mkdir -p %[3]s /var/log/booted
echo %[2]s > %[3]s/version
if [ -d /run/systemd/system ]; then
	cat > /etc/systemd/system/%[8]s.tmp <<'BOOTED_EOF'
%[9]sBOOTED_EOF
	mv -f /etc/systemd/system/%[8]s.tmp /etc/systemd/system/%[8]s
	systemctl daemon-reload
	systemctl restart %[8]s
	systemctl show -p MainPID --value %[8]s
	exit 0
fi
# never two supervisors: one left running (a start that raced, or a
# supervisor whose service booted did not see) is stopped first
sp=$(cat %[3]s/supervisor.pid 2>/dev/null || true)
if [ -n "$sp" ] && kill -0 "$sp" 2>/dev/null; then
	kill -TERM "$sp" 2>/dev/null || true
	i=0
	while kill -0 "$sp" 2>/dev/null && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
	kill -KILL "$sp" 2>/dev/null || true
fi
rm -f %[3]s/pid
setsid %[4]s %[5]s %[3]s %[6]s %[7]s </dev/null >/dev/null 2>&1 &
i=0
while [ ! -s %[3]s/pid ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
cat %[3]s/pid`, q(d.base()), version, q(d.runDir()), supervise.Path, d.Name, q(d.logFile()), q(start), d.unit(), unit)
	out, err := s.Output(ctx, script)
	if err != nil {
		return State{}, fmt.Errorf("host %s: start %s: %w", s.Target.Name, d.Name, err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(out))
	return State{Running: true, PID: pid, Version: version}, nil
}

// Stop stops the service (TERM, then KILL after 10 s) and returns the PID it had.
func (d *Def) Stop(ctx context.Context, s *remote.Session) (int, error) {
	st, err := d.Status(ctx, s)
	if err != nil || !st.Running {
		return 0, err
	}
	script := fmt.Sprintf(`cd %s
if [ -d /run/systemd/system ]; then exec systemctl stop %s; fi
sp=$(cat run/supervisor.pid)
kill -TERM "$sp" 2>/dev/null || exit 0
i=0
while kill -0 "$sp" 2>/dev/null && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
if kill -0 "$sp" 2>/dev/null; then kill -KILL "$sp" $(cat run/pid 2>/dev/null); rm -f run/pid run/supervisor.pid; fi`, q(d.base()), d.unit())
	if err := s.Run(ctx, script); err != nil {
		return st.PID, fmt.Errorf("host %s: stop %s: %w", s.Target.Name, d.Name, err)
	}
	return st.PID, nil
}

// q quotes for the shell.
var q = shell.Quote

// ErrNoPrevious is Rollback's answer on a host that has had one release
// only: there is nothing to roll back to (nothing was changed).
var ErrNoPrevious = errors.New("no previous release to roll back to")

// Rollback switches the host back to its previous release (the one current
// pointed to before the last deploy; the two swap, so rolling back twice
// goes forward again) and restarts the service. It returns the version it
// switched to.
func (d *Def) Rollback(ctx context.Context, s *remote.Session) (string, error) {
	out, err := s.Output(ctx, fmt.Sprintf(`set -e
cd %s
prev=$(readlink previous 2>/dev/null) || { echo "no previous release to roll back to" >&2; exit 3; }
cur=$(readlink current)
ln -sfn "$prev" current.tmp
mv -T current.tmp current
ln -sfn "$cur" previous
basename "$prev"`, q(d.base())))
	if ee := (*remote.ExitError)(nil); errors.As(err, &ee) && ee.Status == 3 {
		return "", ErrNoPrevious
	}
	if err != nil {
		return "", fmt.Errorf("host %s: roll %s back: %w", s.Target.Name, d.Name, err)
	}
	return strings.TrimSpace(out), nil
}
