package discovery_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"booted/internal/bootlog"
	"booted/internal/discovery"
	"booted/internal/inventory"
)

func newSigner(t *testing.T) ssh.Signer {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// trust is a discoverer and its log, and a way to append callbacks.
type trust struct {
	t   *testing.T
	d   *discovery.Discoverer
	log string
}

func newTrust(t *testing.T) *trust {
	log := filepath.Join(t.TempDir(), "booted.log")
	os.WriteFile(log, nil, 0o600)
	return &trust{t: t, d: newDiscoverer(t, log), log: log}
}

// send appends a callback line (nginx's, now) and catches up.
func (tr *trust) send(uri, remote, args string) {
	tr.t.Helper()
	b, _ := json.Marshal(map[string]string{"time": time.Now().UTC().Format(time.RFC3339), "remote": remote, "method": "GET", "uri": uri, "args": args, "status": "200"})
	f, err := os.OpenFile(tr.log, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		tr.t.Fatal(err)
	}
	f.Write(append(b, '\n'))
	f.Close()
	if err := tr.d.CatchUp(context.Background()); err != nil {
		tr.t.Fatal(err)
	}
}

func (tr *trust) signed(name, token string, s ssh.Signer, at int64) string {
	q, err := bootlog.SignedQuery("local", name, token, s, at, false, "")
	if err != nil {
		tr.t.Fatal(err)
	}
	return q
}

func (tr *trust) host(name string) inventory.Host {
	h, _ := tr.d.Store.Host(context.Background(), "local", name)
	return h
}

func (tr *trust) counter(name string) int64 {
	c, _ := tr.d.Store.Counters(context.Background(), "local")
	return c[name]
}

func (tr *trust) events(kind string) []inventory.Event {
	evs, _ := tr.d.Store.Events(context.Background(), "local", "", 1000)
	var out []inventory.Event
	for _, e := range evs {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

func authorized(k ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

// Ensure a token is single-use: the first callback pins its key and
// address; the same token replayed with another key (the reported attack:
// w1's token and an attacker's key, from another host) is refused, raised
// as a host-key-mismatch alert, and leaves w1 as it was; replayed with the
// same key while the host is known it does nothing.
func TestTrust_TokenIsSingleUse(t *testing.T) {
	tr := newTrust(t)
	ctx := context.Background()
	tok := enroll(t, tr.d, "w1")["w1"]
	w1, thief := newSigner(t), newSigner(t)
	tr.send("/booted/", "10.77.0.10", tr.signed("w1", tok, w1, time.Now().Unix()))
	h := tr.host("w1")
	if h.State != inventory.Booted || h.HostKey != authorized(w1.PublicKey()) || h.Addr != "10.77.0.10" {
		t.Fatalf("w1 after enrolling: %+v", h)
	}
	tr.d.Store.Advance(ctx, "local", "w1", inventory.Serving, "")
	for _, args := range []string{
		bootlog.Query("w1", tok, thief.PublicKey()),    // token and another key
		tr.signed("w1", tok, thief, time.Now().Unix()), // token, another key, signed by it
		bootlog.Query("w1", tok, w1.PublicKey()),       // token and w1's key, from elsewhere
		tr.signed("w1", "", thief, time.Now().Unix()),  // another key alone
	} {
		tr.send("/booted/", "10.77.0.11", args)
	}
	h = tr.host("w1")
	if h.State != inventory.Serving || h.HostKey != authorized(w1.PublicKey()) || h.Addr != "10.77.0.10" {
		t.Errorf("w1 changed by replayed callbacks: %+v", h)
	}
	if n := len(tr.events(discovery.AlertKeyMismatch)); n != 4 || tr.counter(discovery.CountMismatch) != 4 {
		t.Errorf("%d host-key-mismatch alerts (counter %d), want 4", n, tr.counter(discovery.CountMismatch))
	}
	// the very same enrollment line again: nothing happens
	tr.send("/booted/", "10.77.0.10", bootlog.Query("w1", tok, w1.PublicKey()))
	if h := tr.host("w1"); h.State != inventory.Serving {
		t.Errorf("a replayed enrollment moved w1 to %s", h.State)
	}
	if tr.counter(discovery.CountReplayed) != 1 {
		t.Errorf("replayed = %d, want 1", tr.counter(discovery.CountReplayed))
	}
}

// Ensure a reboot proves itself with the pinned key: taken once, from the
// pinned address; an older signed callback is a replay; a new key comes
// only with a new provisioning's token, which re-pins (and the old key is
// refused after).
func TestTrust_RebootAndReprovision(t *testing.T) {
	tr := newTrust(t)
	ctx := context.Background()
	tok := enroll(t, tr.d, "w1")["w1"]
	w1 := newSigner(t)
	now := time.Now().Unix()
	tr.send("/booted/", "10.77.0.10", tr.signed("w1", tok, w1, now-100))
	tr.d.Store.Advance(ctx, "local", "w1", inventory.Ready, "")
	reboot := tr.signed("w1", "", w1, now)
	tr.send("/booted/", "10.77.0.10", reboot)
	if h := tr.host("w1"); h.State != inventory.Booted {
		t.Fatalf("a signed reboot callback: w1 is %s, want booted", h.State)
	}
	tr.d.Store.Advance(ctx, "local", "w1", inventory.Ready, "")
	tr.send("/booted/", "10.77.0.10", reboot)                              // the same again
	tr.send("/booted/", "10.77.0.10", tr.signed("w1", "", w1, now-50))     // an older one
	tr.send("/booted/", "10.77.0.10", tr.signed("w1", "", w1, now-100000)) // far older than nginx's clock
	if h := tr.host("w1"); h.State != inventory.Ready {
		t.Errorf("replayed reboot callbacks moved w1 to %s", h.State)
	}
	if tr.counter(discovery.CountReplayed) != 2 || tr.counter(discovery.CountExpired) != 1 {
		t.Errorf("replayed %d (want 2), expired %d (want 1)", tr.counter(discovery.CountReplayed), tr.counter(discovery.CountExpired))
	}
	// A rebuild: a new token; the new key is pinned, the old one refused.
	rebuilt := newSigner(t)
	tok2 := enroll(t, tr.d, "w1")["w1"]
	tr.send("/booted/", "10.77.0.10", tr.signed("w1", tok2, rebuilt, now+10))
	if h := tr.host("w1"); h.State != inventory.Booted || h.HostKey != authorized(rebuilt.PublicKey()) {
		t.Fatalf("after a new provisioning: %+v", h)
	}
	tr.send("/booted/", "10.77.0.10", tr.signed("w1", "", w1, now+20))
	if h := tr.host("w1"); h.HostKey != authorized(rebuilt.PublicKey()) {
		t.Errorf("the old key came back: %+v", h)
	}
	if n := len(tr.events(discovery.AlertKeyMismatch)); n != 1 {
		t.Errorf("%d host-key-mismatch alerts for the old key, want 1", n)
	}
}

// Ensure an enrollment token is good only until it expires and only from
// the address the provider gave the host.
func TestTrust_ExpiryAndAddress(t *testing.T) {
	tr := newTrust(t)
	ctx := context.Background()
	tokens := map[string]string{"w1": bootlog.NewToken(), "w2": bootlog.NewToken()}
	tr.d.Store.Update(ctx, func(tx *inventory.Tx) error {
		tx.Issue("local", "w1", bootlog.HashToken(tokens["w1"]), time.Now().Add(-time.Second), "")
		tx.Issue("local", "w2", bootlog.HashToken(tokens["w2"]), time.Now().Add(time.Hour), "10.77.0.12")
		return nil
	})
	k := newKey(t)
	tr.send("/booted/", "10.77.0.11", bootlog.Query("w1", tokens["w1"], k))
	tr.send("/booted/", "10.77.0.99", bootlog.Query("w2", tokens["w2"], k))
	if h1, h2 := tr.host("w1"), tr.host("w2"); h1.Name != "" || h2.Name != "" {
		t.Errorf("an expired token or a token from the wrong address made hosts: %+v %+v", h1, h2)
	}
	if tr.counter(discovery.CountExpired) != 1 || tr.counter(discovery.CountForged) != 1 {
		t.Errorf("expired %d, forged %d; want 1 each", tr.counter(discovery.CountExpired), tr.counter(discovery.CountForged))
	}
	tr.send("/booted/", "10.77.0.12", bootlog.Query("w2", tokens["w2"], k))
	if h := tr.host("w2"); h.State != inventory.Booted {
		t.Errorf("w2 from its own address: %+v", h)
	}
}

// Ensure hosts:clear (Forget) and a second read of the logs find a pinned
// host again, as pinned, without letting its token in once more.
func TestTrust_ForgetAndReread(t *testing.T) {
	tr := newTrust(t)
	ctx := context.Background()
	tok := enroll(t, tr.d, "w1", "w2")
	w1, w2 := newSigner(t), newSigner(t)
	tr.send("/booted/", "10.77.0.10", tr.signed("w1", tok["w1"], w1, time.Now().Unix()))
	tr.send("/booted/", "10.77.0.11", bootlog.Query("w2", tok["w2"], w2.PublicKey())) // unsigned (an old OpenSSH)
	if n, err := tr.d.Forget(ctx, "hosts:clear"); err != nil || n != 2 {
		t.Fatalf("forgot %d, %v", n, err)
	}
	if err := tr.d.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	for n, s := range map[string]ssh.Signer{"w1": w1, "w2": w2} {
		if h := tr.host(n); h.State != inventory.Booted || h.HostKey != authorized(s.PublicKey()) {
			t.Errorf("%s after hosts:clear and a second read: %+v", n, h)
		}
	}
}

// Ensure a failure report, with the host's token or signed with its pinned
// key, fails the host at once with the log's tail; one without either is
// ignored.
func TestTrust_FailureReport(t *testing.T) {
	tr := newTrust(t)
	ctx := context.Background()
	tok := enroll(t, tr.d, "w1", "w2")
	tr.d.Store.Advance(ctx, "local", "w1", inventory.Booting, "")
	tr.send(bootlog.FailedPath, "10.77.0.10", "name=w1&token="+tok["w1"]+"&log=installing%0Adisk+full")
	if h := tr.host("w1"); h.State != inventory.Failed || h.Reason != "reported failed: installing | disk full" {
		t.Errorf("w1 after its failure report: %+v", h)
	}
	w2 := newSigner(t)
	tr.send("/booted/", "10.77.0.11", tr.signed("w2", tok["w2"], w2, time.Now().Unix()-5))
	q, _ := bootlog.SignedQuery("local", "w2", "", w2, time.Now().Unix(), true, "firstboot: exit 3")
	tr.send(bootlog.FailedPath, "10.77.0.11", q)
	if h := tr.host("w2"); h.State != inventory.Failed || !strings.Contains(h.Reason, "firstboot: exit 3") {
		t.Errorf("w2 after its signed failure report: %+v", h)
	}
	// What a host reports reaches the operator's terminal (hosts:list,
	// the discoverer's log) without escape sequences in it.
	tr.d.Store.Advance(ctx, "local", "w2", inventory.Booting, "")
	q, _ = bootlog.SignedQuery("local", "w2", "", w2, time.Now().Unix()+1, true, "\x1b]0;owned\x07\x1b[2Jexit 4\r")
	tr.send(bootlog.FailedPath, "10.77.0.11", q)
	if h := tr.host("w2"); h.Reason != "reported failed: exit 4" {
		t.Errorf("w2's reason from a report with escapes: %q", h.Reason)
	}
	tr.d.Store.Advance(ctx, "local", "w2", inventory.Booting, "")
	tr.send(bootlog.FailedPath, "10.77.0.66", "name=w2&token="+bootlog.NewToken()+"&log=forged")
	if h := tr.host("w2"); h.State != inventory.Booting {
		t.Errorf("a forged failure report moved w2 to %s", h.State)
	}
}

// A host-key-mismatch alert stays in sight however many junk callbacks
// (each an event) came after it: hosts:logged read the newest 2,000 events
// only.
func TestAlerts_NotPushedOutByJunk(t *testing.T) {
	tr := newTrust(t)
	ctx := context.Background()
	err := tr.d.Store.Update(ctx, func(tx *inventory.Tx) error {
		if err := tx.Record(inventory.Event{Env: "local", Host: "w1", Kind: discovery.AlertKeyMismatch, Detail: "callback for w1 with another key"}); err != nil {
			return err
		}
		for i := 0; i < 2500; i++ {
			if err := tx.Record(inventory.Event{Env: "local", Kind: "callback-refused", Detail: "junk"}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if a, err := discovery.Alerts(ctx, tr.d.Store, "local", 10); err != nil || len(a) != 1 || a[0].Host != "w1" {
		t.Fatalf("alerts after 2,500 junk events: %+v %v", a, err)
	}
}

// A host whose instance was deleted (hosts:rebuild, a terminated instance
// of a node leased again) has its pinned key revoked: while its new
// provisioning is pending, a callback signed with the old key (whoever
// kept a copy of it) is refused with a host-key alert, not marked booted;
// the new provisioning's token pins the new key.
func TestTrust_DeletedHostsKeyRefused(t *testing.T) {
	tr := newTrust(t)
	ctx := context.Background()
	tok := enroll(t, tr.d, "w1")["w1"]
	old := newSigner(t)
	now := time.Now().Unix()
	tr.send("/booted/", "10.77.0.10", tr.signed("w1", tok, old, now-100))
	tr.d.Store.Advance(ctx, "local", "w1", inventory.Ready, "")
	// deleted and provisioned again (what lifecycle's DeleteWith and Start do)
	if err := tr.d.Store.Update(ctx, func(tx *inventory.Tx) error { return tx.Revoke("local", "w1") }); err != nil {
		t.Fatal(err)
	}
	tr.d.Store.Advance(ctx, "local", "w1", inventory.Terminated, "rebuild")
	tok2 := enroll(t, tr.d, "w1")["w1"]
	tr.d.Store.Advance(ctx, "local", "w1", inventory.Booting, "")
	tr.send("/booted/", "10.77.0.10", tr.signed("w1", "", old, now))
	if h := tr.host("w1"); h.State != inventory.Booting {
		t.Fatalf("a callback signed with the deleted instance's key moved w1 to %s", h.State)
	}
	if al := tr.events(discovery.AlertKeyMismatch); len(al) != 1 || !strings.Contains(al[0].Detail, "before its instance was deleted") {
		t.Errorf("alerts %+v, want one naming the deleted instance's key", al)
	}
	fresh := newSigner(t)
	tr.send("/booted/", "10.77.0.10", tr.signed("w1", tok2, fresh, now+10))
	if h := tr.host("w1"); h.State != inventory.Booted || h.HostKey != authorized(fresh.PublicKey()) {
		t.Fatalf("the new provisioning's callback: %+v", h)
	}
	// pinned anew: its own signed reboots are taken again
	tr.d.Store.Advance(ctx, "local", "w1", inventory.Ready, "")
	tr.send("/booted/", "10.77.0.10", tr.signed("w1", "", fresh, now+20))
	if h := tr.host("w1"); h.State != inventory.Booted {
		t.Errorf("a signed reboot with the new key: w1 is %s", h.State)
	}
}
