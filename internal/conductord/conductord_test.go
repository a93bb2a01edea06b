package conductord_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"booted/internal/conductor"
	"booted/internal/conductord"
	"booted/internal/config"
	"booted/internal/outcome"
)

type site struct {
	env       *config.Env
	connected bool
}

func (s *site) Config() *config.Env { return s.env }
func (s *site) Connect(string, string) (*nats.Conn, jetstream.JetStream, error) {
	s.connected = true
	return nil, nil, nil
}
func (s *site) Do(context.Context, jetstream.JetStream, conductor.Job) conductor.Result {
	return conductor.Result{}
}
func (s *site) PrepareNetworks(context.Context) error { return nil }
func (s *site) ServeCallbacks(context.Context, jetstream.JetStream, string, func(string, ...any)) error {
	return nil
}

// A site the env file does not name is refused as bad input (exit 2),
// naming the file and its sites, before any connection.
func TestRun_UnknownSite(t *testing.T) {
	s := &site{env: &config.Env{Name: "e", Path: "envs/e.yaml", Sites: map[string]*config.Site{"west": {}, "east": {}}}}
	var out, errw bytes.Buffer
	err := conductord.Run(context.Background(), s, "north", 4, &out, &errw)
	if err == nil || !outcome.Refused(err) || err.Error() != `conductor:run: envs/e.yaml has no site "north" (its sites: east, west)` {
		t.Fatalf("unknown site: %v", err)
	}
	if s.connected {
		t.Error("it connected to NATS for a site that does not exist")
	}
}

// A site without a network of its own runs where it was started.
func TestEnterSite_NoNetworkStaysHere(t *testing.T) {
	env := &config.Env{Name: "e", NATS: config.NATS{URLs: []string{"nats://127.0.0.1:4222"}}, Sites: map[string]*config.Site{"west": {Roles: []string{"edge"}}}}
	if err := conductord.EnterSite(env, "west", &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
}
