// Package service builds, deploys, starts, stops and tests versioned
// services (services/NAME/service.yaml) on hosts over SSH.
//
// A version (a git tag or commit of the service's source) is built once on
// the controller into a static binary with a SHA-256 checksum, cached by
// version. On a host it lives in /opt/booted/NAME/releases/VERSION and the
// link /opt/booted/NAME/current is switched to it atomically.
package service

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"text/template"
	"time"

	"go.yaml.in/yaml/v3"

	"booted/internal/config"
)

// Def is a service.yaml.
type Def struct {
	Name string `yaml:"name"`
	// Repo holds the source; empty means the project's own repository.
	Repo string `yaml:"repo"`
	// Path is the source directory inside Repo.
	Path     string `yaml:"path"`
	Port     int    `yaml:"port"`
	BuildCmd string `yaml:"build"`
	StartCmd string `yaml:"start"`
	// Health is checked after a start.
	Health struct {
		Path    string          `yaml:"path"`
		Timeout config.Duration `yaml:"timeout"`
	} `yaml:"health"`
	// Keep is how many releases a host keeps; zero means 3.
	Keep   int     `yaml:"keep"`
	Checks []Check `yaml:"checks"`

	// Dir is the directory service.yaml was read from.
	Dir string `yaml:"-"`
}

// Check is one request service:test makes to each worker.
type Check struct {
	Name   string `yaml:"name"`
	Method string `yaml:"method"`
	Path   string `yaml:"path"`
	// Data is the request body.
	Data   string `yaml:"data"`
	Status int    `yaml:"status"`
	// Body, if set, must equal the response body.
	Body string `yaml:"body"`
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)

// Load reads services/NAME/service.yaml under root.
func Load(root, name string) (*Def, error) {
	if !nameRE.MatchString(name) {
		return nil, fmt.Errorf("service name %q: use lower-case letters, digits, '-' and '_'", name)
	}
	dir := filepath.Join(root, "services", name)
	path := filepath.Join(dir, "service.yaml")
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("service %q: %s does not exist (services are the directories of %s with a service.yaml)", name, path, filepath.Join(root, "services"))
	}
	if err != nil {
		return nil, err
	}
	d := &Def{Dir: dir}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(d); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var errs []error
	bad := func(f, msg string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s: %s", path, f, fmt.Sprintf(msg, a...)))
	}
	if d.Name != name {
		bad("name", "%q must be the directory's name, %q", d.Name, name)
	}
	if d.Port < 1 || d.Port > 65535 {
		bad("port", "%d is not a TCP port", d.Port)
	}
	if d.BuildCmd == "" {
		bad("build", "missing: the command that builds the binary into {{.Output}}")
	}
	if d.StartCmd == "" {
		bad("start", "missing: the command that runs the service")
	}
	if d.Path == "" {
		d.Path = filepath.Join("services", name)
	}
	if d.Keep == 0 {
		d.Keep = 3
	}
	if d.Keep < 2 {
		bad("keep", "keep at least 2 releases, so that a rollback has somewhere to go")
	}
	if d.Health.Timeout == 0 {
		d.Health.Timeout = config.Duration(10 * time.Second)
	}
	for i, c := range d.Checks {
		if c.Name == "" || c.Path == "" || c.Status == 0 {
			bad(fmt.Sprintf("checks[%d]", i), "a check needs a name, a path and the status to expect")
		}
		if d.Checks[i].Method == "" {
			d.Checks[i].Method = "GET"
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return d, nil
}

// render expands {{.Version}}, {{.Output}}, {{.Port}} in a command.
func render(cmd string, data map[string]any) (string, error) {
	t, err := template.New("cmd").Option("missingkey=error").Parse(cmd)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	if err := t.Execute(&b, data); err != nil {
		return "", err
	}
	return b.String(), nil
}

// Remote paths of a service on a host.
func (d *Def) base() string            { return "/opt/booted/" + d.Name }
func (d *Def) release(v string) string { return d.base() + "/releases/" + v }
func (d *Def) current() string         { return d.base() + "/current" }
func (d *Def) runDir() string          { return d.base() + "/run" }
func (d *Def) logFile() string         { return "/var/log/booted/" + d.Name + ".log" }

// LogFile is where the service's output goes on a host.
func (d *Def) LogFile() string { return d.logFile() }
func (d *Def) startCommand() (string, error) {
	return render(d.StartCmd, map[string]any{"Port": d.Port, "Name": d.Name})
}
