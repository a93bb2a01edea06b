// Package supervise is booted's process supervisor on hosts without
// systemd: a small POSIX sh script, installed once per host, that runs a
// command, restarts it when it dies (1 s apart, backing off to 30 s while
// it keeps dying at once) and stops it on TERM. Services and the load
// balancer's nginx run under it.
package supervise

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path"
)

// Runner runs a shell command on a host.
type Runner interface {
	Run(ctx context.Context, cmd string) error
}

// supervisor runs a service, restarts it when it dies (1 s apart, up to
// 30 s when it keeps dying at once), and stops it (TERM) when told to.
const supervisor = `#!/bin/sh
# booted-supervise NAME RUNDIR LOG COMMAND, written by booted.
name=$1 run=$2 log=$3 cmd=$4
mkdir -p "$run" "$(dirname "$log")"
echo $$ > "$run/supervisor.pid"
stopping=0 child=
trap 'stopping=1; [ -n "$child" ] && kill -TERM "$child" 2>/dev/null' TERM INT HUP
delay=1
while :; do
	started=$(date +%s)
	sh -c "exec $cmd" </dev/null >>"$log" 2>&1 &
	child=$!
	echo "$child" > "$run/pid"
	wait "$child"; rc=$?
	while kill -0 "$child" 2>/dev/null; do wait "$child"; rc=$?; done
	[ "$stopping" = 1 ] && break
	echo "$(date -u +%FT%TZ) booted-supervise: $name exited ($rc); restarting in ${delay}s" >>"$log"
	sleep "$delay" & s=$!; wait $s; kill $s 2>/dev/null
	[ "$stopping" = 1 ] && break
	if [ $(( $(date +%s) - started )) -gt 10 ]; then delay=1; elif [ "$delay" -lt 30 ]; then delay=$((delay * 2)); fi
done
rm -f "$run/pid" "$run/supervisor.pid"
`

// Path is where booted's supervisor script lives on hosts.
const Path = "/opt/booted/bin/booted-supervise"

// Ensure writes the supervisor script if the host's copy differs.
func Ensure(ctx context.Context, s Runner) error {
	return s.Run(ctx, EnsureScript())
}

// EnsureScript is the shell step Ensure runs (set -e), for callers that
// put it in front of their own script (one command, one round trip).
func EnsureScript() string {
	h := sha256.Sum256([]byte(supervisor))
	want := hex.EncodeToString(h[:])
	return fmt.Sprintf(`set -e
if [ "$(sha256sum %[1]s 2>/dev/null | cut -d' ' -f1)" != %[2]s ]; then
	mkdir -p %[3]s
	cat > %[1]s.tmp <<'BOOTED_EOF'
%[4]sBOOTED_EOF
	chmod 755 %[1]s.tmp
	mv -f %[1]s.tmp %[1]s
fi
`, Path, want, path.Dir(Path), supervisor)
}
