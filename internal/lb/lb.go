// Package lb runs nginx as the load balancer on the hosts of the
// loadbalancers role: its configuration, rendered from nginx/lb.conf.tmpl
// with the serving workers as the upstream, is checked with nginx -t on the
// host before it replaces the running one, so a configuration nginx refuses
// is never applied.
package lb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"text/template"

	"booted/internal/remote"
	"booted/internal/supervise"

	"booted/internal/shell"
)

// Prefix is the load balancer's directory on its host.
const Prefix = "/opt/booted/lb"

// Config is what the load balancer's configuration is rendered from.
type Config struct {
	Env     string
	Host    string
	Service string
	// Listen is the port clients connect to.
	Listen int
	// Workers are the upstream servers, address:port.
	Workers []string
}

// Render renders the template at tmplPath.
func Render(tmplPath string, c Config) ([]byte, error) {
	src, err := os.ReadFile(tmplPath)
	if err != nil {
		return nil, fmt.Errorf("load balancer template: %w", err)
	}
	t, err := template.New(tmplPath).Option("missingkey=error").Parse(string(src))
	if err != nil {
		return nil, fmt.Errorf("load balancer template %s: %w", tmplPath, err)
	}
	ws := append([]string(nil), c.Workers...)
	sort.Strings(ws)
	var b bytes.Buffer
	err = t.Execute(&b, map[string]any{"Env": c.Env, "Host": c.Host, "Service": c.Service, "Listen": c.Listen, "Workers": ws, "Prefix": Prefix})
	if err != nil {
		return nil, fmt.Errorf("load balancer template %s: %w", tmplPath, err)
	}
	return b.Bytes(), nil
}

// ErrRefused is returned when nginx -t on the host refuses a configuration;
// the running one is kept.
var ErrRefused = fmt.Errorf("nginx -t refused the new configuration; the old one is kept")

// Apply installs conf on the load balancer host: it checks it with nginx -t
// there, then reloads the running nginx (and waits until the old workers
// have finished their requests) or starts nginx under booted's supervisor.
// It returns "reloaded", "started" or "unchanged".
func Apply(ctx context.Context, s *remote.Session, conf []byte) (string, error) {
	nginx := fmt.Sprintf("nginx -p %[1]s/ -c %[1]s/nginx.conf -e %[1]s/logs/error.log", Prefix)
	// The supervisor first (it starts nginx), in the same command.
	script := supervise.EnsureScript() + fmt.Sprintf(`P=%[1]s
mkdir -p $P/run $P/logs $P/tmp
cat > $P/nginx.conf.next.$$ <<'BOOTED_EOF'
%[2]sBOOTED_EOF
running=
if [ -s $P/run/nginx.pid ] && kill -0 "$(cat $P/run/nginx.pid)" 2>/dev/null; then running=$(cat $P/run/nginx.pid); fi
if [ -n "$running" ] && cmp -s $P/nginx.conf.next.$$ $P/nginx.conf; then rm -f $P/nginx.conf.next.$$; echo unchanged; exit 0; fi
if ! out=$(nginx -t -q -p $P/ -c $P/nginx.conf.next.$$ -e $P/logs/error.log 2>&1); then
	rm -f $P/nginx.conf.next.$$
	echo "$out" >&2
	exit 3
fi
mv -f $P/nginx.conf.next.$$ $P/nginx.conf
if [ -n "$running" ]; then
	old=$(ps -o pid= --ppid "$running" | tr -d ' ' | tr '\n' ' ')
	%[3]s -s reload
	# wait (up to 10 s) for the old workers to finish their requests and exit
	i=0
	for w in $old; do
		while kill -0 "$w" 2>/dev/null && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
	done
	echo reloaded
	exit 0
fi
rm -f $P/run/sup/pid
setsid %[4]s lb-nginx $P/run/sup $P/logs/supervise.log %[5]s </dev/null >/dev/null 2>&1 &
i=0
while ! [ -s $P/run/nginx.pid ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
[ -s $P/run/nginx.pid ] || { echo "nginx did not start: $(tail -3 $P/logs/error.log)" >&2; exit 1; }
echo started`, Prefix, conf, nginx, supervise.Path, q(nginx+" -g 'daemon off;'"))
	out, err := s.Output(ctx, script)
	var ee *remote.ExitError
	if errors.As(err, &ee) && ee.Status == 3 {
		return "", fmt.Errorf("load balancer %s: %w", s.Target.Name, ErrRefused)
	}
	if err != nil {
		return "", fmt.Errorf("load balancer %s: %w", s.Target.Name, err)
	}
	return strings.TrimSpace(out), nil
}

// Stop stops the load balancer's nginx and its supervisor.
func Stop(ctx context.Context, s *remote.Session) error {
	return s.Run(ctx, fmt.Sprintf(`P=%s
sp=$(cat $P/run/sup/supervisor.pid 2>/dev/null) || exit 0
kill -TERM "$sp" 2>/dev/null || exit 0
i=0
while kill -0 "$sp" 2>/dev/null && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done`, Prefix))
}

var serverRE = regexp.MustCompile(`(?m)^\s*server\s+(\S+)\s+max_fails`)

// Routes returns the upstream servers of the configuration running on the host.
func Routes(ctx context.Context, s *remote.Session) ([]string, error) {
	out, err := s.Output(ctx, "cat "+Prefix+"/nginx.conf 2>/dev/null || true")
	if err != nil {
		return nil, err
	}
	var r []string
	for _, m := range serverRE.FindAllStringSubmatch(out, -1) {
		r = append(r, m[1])
	}
	return r, nil
}

// q quotes for the shell.
var q = shell.Quote
