package bootlog

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func testKey(t testing.TB) ssh.PublicKey {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// line builds what nginx writes for a GET with the given query string.
func line(remote, args string) string {
	b, _ := json.Marshal(map[string]string{"time": "2026-11-22T10:00:00+00:00", "remote": remote, "method": "GET", "args": args, "status": "200"})
	return string(b)
}

func testSigner(t testing.TB) ssh.Signer {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestParseLine(t *testing.T) {
	key := testKey(t)
	token := NewToken()
	good := line("10.77.0.11", Query("w1", token, key))
	cb, err := ParseLine([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if cb.Name != "w1" || cb.Remote.String() != "10.77.0.11" || string(cb.Key.Marshal()) != string(key.Marshal()) || cb.Failed {
		t.Errorf("parsed %+v", cb)
	}
	if !TokenMatches(cb.Token, HashToken(token)) {
		t.Error("good token rejected")
	}
	if TokenMatches(NewToken(), HashToken(token)) || TokenMatches("", HashToken(token)) || TokenMatches(token, "") {
		t.Error("a token matched another's hash, or an empty one")
	}
	for name, in := range map[string]string{
		"Empty":     "",
		"NotJSON":   `10.0.0.1 - - [22/Nov/2026] "GET /booted/?name=x"`,
		"TwoJSON":   good + good,
		"BadTime":   strings.Replace(good, "2026-11-22T10:00:00+00:00", "yesterday", 1),
		"BadRemote": strings.Replace(good, "10.77.0.11", "not-an-ip", 1),
		"Extra":     strings.Replace(good, `"status"`, `"x":"1","status"`, 1),
	} {
		if _, err := ParseLine([]byte(in)); !errors.Is(err, ErrGarbled) {
			t.Errorf("%s: err = %v, want ErrGarbled", name, err)
		}
	}
	for name, args := range map[string]string{
		"NoName":    "token=abc&key=x",
		"NoKey":     "name=w1&token=abc",
		"BadKey":    "name=w1&token=abc&key=ssh-ed25519+AAAAnotakey",
		"BadPct":    "name=w1%zz&token=abc",
		"NoProof":   "name=w1&key=" + url.QueryEscape(strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key)))),
		"BadSig":    "name=w1&token=abc&time=1&sig=bm90LWEtc2lnbmF0dXJl&key=" + url.QueryEscape(strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key)))),
		"SigNoTime": "name=w1&sig=abc&key=" + url.QueryEscape(strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key)))),
	} {
		if _, err := ParseLine([]byte(line("10.0.0.1", args))); !errors.Is(err, ErrBadCallback) {
			t.Errorf("%s: err = %v, want ErrBadCallback", name, err)
		}
	}
}

// Ensure a signed callback verifies with its key, for its environment,
// name and time only, and that a failure report carries its log.
func TestSignedCallback(t *testing.T) {
	signer, other := testSigner(t), testSigner(t)
	q, err := SignedQuery("local", "w1", "", signer, 1700000000, false, "")
	if err != nil {
		t.Fatal(err)
	}
	cb, err := ParseLine([]byte(line("10.77.0.11", q)))
	if err != nil {
		t.Fatal(err)
	}
	if !cb.VerifySig("local", signer.PublicKey()) || cb.SignedAt != 1700000000 {
		t.Errorf("a good signature did not verify: %+v", cb)
	}
	if cb.VerifySig("prod", signer.PublicKey()) || cb.VerifySig("local", other.PublicKey()) {
		t.Error("a signature verified for another environment or key")
	}
	tampered := strings.Replace(q, "time=1700000000", "time=1700000001", 1)
	if cb, err := ParseLine([]byte(line("10.77.0.11", tampered))); err != nil || cb.VerifySig("local", signer.PublicKey()) {
		t.Errorf("a signature verified for another time (err %v)", err)
	}
	renamed := strings.Replace(q, "name=w1", "name=w2", 1)
	if cb, err := ParseLine([]byte(line("10.77.0.11", renamed))); err != nil || cb.VerifySig("local", signer.PublicKey()) {
		t.Errorf("a signature verified for another host (err %v)", err)
	}
	q, _ = SignedQuery("local", "w1", "", signer, 1700000000, true, "step 3 failed\ndisk full")
	b, _ := json.Marshal(map[string]string{"time": "2026-11-22T10:00:00+00:00", "remote": "10.77.0.11", "method": "GET", "uri": FailedPath, "args": q, "status": "200"})
	cb, err = ParseLine(b)
	if err != nil || !cb.Failed || cb.Log != "step 3 failed\ndisk full" || !cb.VerifySig("local", signer.PublicKey()) {
		t.Errorf("failure report: %+v, %v", cb, err)
	}
	// A callback's signature is not good for a failure report, nor the reverse.
	cb.Failed = false
	if cb.VerifySig("local", signer.PublicKey()) {
		t.Error("a failure report's signature verified as a callback's")
	}
}

// FuzzParseLine checks that no input makes the parser panic, and that what
// it accepts is a complete callback.
func FuzzParseLine(f *testing.F) {
	key := testKey(f)
	f.Add([]byte(line("10.77.0.11", Query("w1", NewToken(), key))))
	f.Add([]byte(line("::1", "name=a&token=b&key=c")))
	f.Add([]byte(`{"time":"x"}`))
	f.Add([]byte("\x00\xff{"))
	f.Fuzz(func(t *testing.T, b []byte) {
		cb, err := ParseLine(b)
		if err != nil {
			return
		}
		if cb.Name == "" || (cb.Token == "" && cb.Sig == nil) || (cb.Key == nil && !cb.Failed) || !cb.Remote.IsValid() || cb.Time.IsZero() {
			t.Fatalf("accepted an incomplete callback %+v from %q", cb, b)
		}
	})
}
