package conductor

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// CallbacksStream keeps the callbacks the sites' conductors took from
// their hosts (each a line of their site's boot log), for the controller
// to record as it records its own boot log's: in order, by sequence.
const CallbacksStream = "BOOTED_CALLBACKS"

// CallbackSubject is where a site's conductors publish its callbacks.
func CallbackSubject(env, site string) string { return "booted.callbacks." + env + "." + site }

// Callback is one callback a site's conductor published: the stream's
// sequence number, the site (its subject's), and the boot log's line.
type Callback struct {
	Seq  uint64
	Site string
	Line []byte
}

// PublishCallback publishes one line of site's boot log; id names it
// (its place in the log) so that a line published twice (a conductor that
// died before saying how far it got, another after it) is kept once; with
// the line's hash, so that no other site can have it dropped (msgID).
func PublishCallback(ctx context.Context, js jetstream.JetStream, env, site, id string, line []byte) error {
	return retry(ctx, func(ctx context.Context) error {
		_, err := js.Publish(ctx, CallbackSubject(env, site), line, jetstream.WithMsgID(msgID(env+"."+site+"."+id, line)))
		return err
	})
}

// Callbacks returns env's callbacks after sequence number after, oldest
// first (at most max).
func Callbacks(ctx context.Context, js jetstream.JetStream, env string, after uint64, max int) ([]Callback, error) {
	st, err := js.Stream(ctx, CallbacksStream)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", CallbacksStream, err)
	}
	if st.CachedInfo().State.LastSeq < after {
		after = 0 // the stream was made again: its numbers start over
	}
	prefix := "booted.callbacks." + env + "."
	var out []Callback
	for seq := after + 1; len(out) < max; {
		m, err := st.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(prefix+"*"))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return out, fmt.Errorf("stream %s: message %d on: %w", CallbacksStream, seq, err)
		}
		out = append(out, Callback{Seq: m.Sequence, Site: m.Subject[len(prefix):], Line: m.Data})
		seq = m.Sequence + 1
	}
	return out, nil
}

// callbacksConfig is CallbacksStream's: kept a day, deduplicated over ten
// minutes.
func callbacksConfig(replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{Name: CallbacksStream, Subjects: []string{"booted.callbacks.>"},
		Retention: jetstream.LimitsPolicy, Replicas: replicas, Duplicates: 10 * time.Minute, MaxAge: 24 * time.Hour}
}
