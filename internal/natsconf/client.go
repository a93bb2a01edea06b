package natsconf

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"booted/internal/conductor"
	"booted/internal/config"
)

// Client is how a process of an environment connects to its NATS
// cluster: as the controller (Site ""), or as a site's conductor (its
// credentials, its own inbox); over TLS checked against nats.ca (or
// nats:config's CA).
type Client struct {
	Env   *config.Env
	Files Files
	// Name is the connection's name, as the servers show it.
	Name string
	Site string
	// Wait keeps trying when no server answers yet (a conductor), and
	// notices a connection gone silent within 30 s; else a connection
	// that cannot be made fails at once (a target).
	Wait bool
	// Credentials overrides the env file's (BOOTED_NATS_CREDENTIALS).
	Credentials string
	// Log is where the connection's troubles are said.
	Log io.Writer
}

// credentials returns the credentials file the client uses, and the
// setting that names it (for errors): BOOTED_NATS_CREDENTIALS; a site's
// sites.SITE.credentials, else nats:config's key for the site; the
// controller's nats.credentials, else nats:config's key for it; else
// nats.credentials.
func (c Client) credentials() (field, path string) {
	n := c.Env.NATS
	field, path = "nats.credentials", n.Credentials
	if path == "" {
		path = ifExists(c.Files.Controller())
	}
	if c.Site != "" {
		field, path = "sites."+c.Site+".credentials", c.Env.Sites[c.Site].Credentials
		if path == "" {
			path = ifExists(c.Files.Site(c.Site))
		}
		if path == "" {
			field, path = "nats.credentials", n.Credentials
		}
	}
	if c.Credentials != "" {
		field, path = "BOOTED_NATS_CREDENTIALS", c.Credentials
	}
	return field, path
}

// Connect connects to the env file's NATS cluster.
func (c Client) Connect() (*nats.Conn, jetstream.JetStream, error) {
	n := c.Env.NATS
	name := c.Name
	opts := []nats.Option{nats.Name(name), nats.MaxReconnects(-1), nats.ReconnectWait(250 * time.Millisecond), nats.Timeout(5 * time.Second),
		nats.RetryOnFailedConnect(c.Wait),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { fmt.Fprintf(c.Log, "%s: nats: %v\n", name, err) }),
		nats.ReconnectErrHandler(onceEach(func(err error) { fmt.Fprintf(c.Log, "%s: nats: %v (trying again)\n", name, err) })),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil: closed here
				fmt.Fprintf(c.Log, "%s: nats: disconnected: %v\n", name, err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			fmt.Fprintf(c.Log, "%s: nats: connected again, to %s\n", name, nc.ConnectedUrlRedacted())
		})}
	if c.Wait { // a conductor: a connection gone silent is noticed within 30 s, not minutes
		opts = append(opts, nats.PingInterval(10*time.Second), nats.MaxPingsOutstanding(3))
	}
	if c.Site != "" {
		opts = append(opts, nats.CustomInboxPrefix(conductor.InboxPrefix(c.Env.Name, c.Site)))
	}
	if field, cred := c.credentials(); cred != "" {
		b, err := os.ReadFile(cred)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %s: %w", c.Env.Path, field, err)
		}
		if strings.Contains(string(b), "BEGIN NATS USER JWT") {
			opts = append(opts, nats.UserCredentials(cred))
		} else {
			o, err := nats.NkeyOptionFromSeed(cred)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %s %s: %w", c.Env.Path, field, cred, err)
			}
			opts = append(opts, o)
		}
	}
	ca := n.CA
	if ca == "" {
		ca = ifExists(c.Files.CA())
	}
	if ca != "" {
		opts = append(opts, nats.RootCAs(ca))
	}
	nc, err := nats.Connect(strings.Join(n.URLs, ","), opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: NATS %s: %w", c.Env.Path, strings.Join(n.URLs, ","), err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// onceEach calls fn with an error unlike the last one it was called with
// (a connection refused every 250 ms is said once).
func onceEach(fn func(error)) func(*nats.Conn, error) {
	var mu sync.Mutex
	last := ""
	return func(_ *nats.Conn, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil && err.Error() != last {
			last = err.Error()
			fn(err)
		}
	}
}

func ifExists(path string) string {
	if _, err := os.Stat(path); err != nil {
		return ""
	}
	return path
}
