// Package natsconf makes the trust of an environment's NATS cluster: a
// certificate authority and the servers' TLS certificate, an nkey for the
// controller and one per site, and each server's configuration, whose
// users are those nkeys: the controller may do everything, a site's
// conductors only their site's work (conductor.Permissions). Keys and
// seeds are written 0600 and never printed.
package natsconf

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nkeys"

	"booted/internal/atomicfile"
	"booted/internal/conductor"
	"booted/internal/tlsca"
)

// Files are where an environment's NATS trust lives (under its inventory
// directory, DIR).
type Files struct{ Dir string }

// CA is the certificate that signed the servers'.
func (f Files) CA() string { return filepath.Join(f.Dir, "ca.pem") }

// Controller is the controller's nkey seed.
func (f Files) Controller() string { return filepath.Join(f.Dir, "controller.nk") }

// Site is the nkey seed of site's conductors.
func (f Files) Site(site string) string { return filepath.Join(f.Dir, "site-"+site+".nk") }

// Server is the configuration of server i (from 1).
func (f Files) Server(i int) string { return filepath.Join(f.Dir, fmt.Sprintf("server-%d.conf", i)) }

// Spec is what the configuration is made from.
type Spec struct {
	Env string
	// URLs are the servers' client URLs (tls:// or nats://), one per
	// server; Routes their cluster URLs (nats-route://HOST:PORT), the
	// same count; empty: each client port + 2000 (4222 → 6222).
	URLs, Routes []string
	Sites        []string
}

// Make writes the files of spec under f.Dir: the CA, the servers'
// certificate, the controller's and each site's seed (each made once and
// kept after), and every server's configuration (written again each time).
// It returns the server configurations' paths.
func Make(f Files, spec Spec) ([]string, error) {
	if len(spec.URLs) == 0 {
		return nil, errors.New("nats.urls: none; give the servers' URLs (tls://HOST:4222)")
	}
	routes := spec.Routes
	if len(routes) == 0 {
		for _, u := range spec.URLs {
			h, p, err := hostPort(u)
			if err != nil {
				return nil, err
			}
			routes = append(routes, "nats-route://"+net.JoinHostPort(h, strconv.Itoa(p+2000)))
		}
	}
	if len(routes) != len(spec.URLs) {
		return nil, fmt.Errorf("nats.routes: %d for %d servers (nats.urls); give one per server, in the same order", len(routes), len(spec.URLs))
	}
	if err := os.MkdirAll(f.Dir, 0o700); err != nil {
		return nil, err
	}
	var hosts []string
	for _, u := range append(append([]string{}, spec.URLs...), routes...) {
		h, _, err := hostPort(u)
		if err != nil {
			return nil, err
		}
		hosts = append(hosts, h)
	}
	if err := (tlsca.Files{Dir: f.Dir}).Ensure("booted NATS", hosts, 2*365*24*time.Hour); err != nil {
		return nil, err
	}
	ctl, err := seed(f.Controller())
	if err != nil {
		return nil, err
	}
	var users strings.Builder
	fmt.Fprintf(&users, "    # the controller (%s): everything\n    { nkey: %s }\n", f.Controller(), ctl)
	for _, site := range spec.Sites {
		pub, err := seed(f.Site(site))
		if err != nil {
			return nil, err
		}
		p, s := conductor.Permissions(spec.Env, site)
		fmt.Fprintf(&users, "    # site %s's conductors (%s): its jobs alone\n    { nkey: %s, permissions: { publish: { allow: %s }, subscribe: { allow: %s } } }\n",
			site, f.Site(site), pub, list(p), list(s))
	}
	var out []string
	for i, u := range spec.URLs {
		h, p, _ := hostPort(u)
		rh, rp, _ := hostPort(routes[i])
		var peers []string
		for j, r := range routes {
			if j != i {
				peers = append(peers, strconv.Quote(r))
			}
		}
		tls := ""
		if strings.HasPrefix(u, "tls://") {
			tls = fmt.Sprintf("tls { cert_file: %q, key_file: %q, ca_file: %q, timeout: 5 }\n", tlsca.Files{Dir: f.Dir}.Cert(), tlsca.Files{Dir: f.Dir}.Key(), f.CA())
		}
		cluster := ""
		if len(spec.URLs) > 1 { // one server alone is no cluster
			cluster = fmt.Sprintf(`cluster {
  name: booted-%s
  listen: %q
  routes: [%s]
  tls { cert_file: %q, key_file: %q, ca_file: %q, timeout: 5 }
}
`, spec.Env, net.JoinHostPort(rh, strconv.Itoa(rp)), strings.Join(peers, ", "),
				tlsca.Files{Dir: f.Dir}.Cert(), tlsca.Files{Dir: f.Dir}.Key(), f.CA())
		}
		conf := fmt.Sprintf(`# NATS server %d of environment %s, written by booted's nats:config
# (run: nats-server -c %s).
server_name: %s-%d
listen: %q
%sjetstream { store_dir: %q }
%sauthorization {
  users: [
%s  ]
}
`, i+1, spec.Env, f.Server(i+1), spec.Env, i+1, net.JoinHostPort(h, strconv.Itoa(p)), tls, filepath.Join(f.Dir, fmt.Sprintf("server-%d", i+1)),
			cluster, users.String())
		if err := atomicfile.Write(f.Server(i+1), []byte(conf), 0o600); err != nil {
			return nil, err
		}
		out = append(out, f.Server(i+1))
	}
	return out, nil
}

func list(subjects []string) string {
	q := make([]string, len(subjects))
	for i, s := range subjects {
		q[i] = strconv.Quote(s) // quoted: a bare $NAME is a variable to nats-server
	}
	return "[" + strings.Join(q, ", ") + "]"
}

func hostPort(u string) (string, int, error) {
	p, err := url.Parse(u)
	if err != nil || p.Hostname() == "" || p.Port() == "" {
		return "", 0, fmt.Errorf("%q: a URL with a host and a port (tls://HOST:4222)", u)
	}
	n, err := strconv.Atoi(p.Port())
	return p.Hostname(), n, err
}

// seed makes path's nkey user seed (once) and returns its public key.
func seed(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil {
		kp, err := nkeys.FromSeed(b)
		if err != nil {
			return "", fmt.Errorf("%s: not an nkey seed (%v); remove it to make a new one", path, err)
		}
		return kp.PublicKey()
	}
	kp, err := nkeys.CreateUser()
	if err != nil {
		return "", err
	}
	s, err := kp.Seed()
	if err != nil {
		return "", err
	}
	if err := atomicfile.Write(path, s, 0o600); err != nil {
		return "", err
	}
	return kp.PublicKey()
}
