package bootlog

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
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

func TestParseLine(t *testing.T) {
	secret := []byte("s3cret")
	key := testKey(t)
	good := line("10.77.0.11", Query("w1", Token(secret, "local", "w1"), key))
	cb, err := ParseLine([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if cb.Name != "w1" || cb.Remote.String() != "10.77.0.11" || string(cb.Key.Marshal()) != string(key.Marshal()) {
		t.Errorf("parsed %+v", cb)
	}
	if !cb.Verify(secret, "local") {
		t.Error("good token rejected")
	}
	if cb.Verify(secret, "prod") || cb.Verify([]byte("other"), "local") {
		t.Error("token accepted for another env or secret")
	}
	forged := line("10.77.0.11", Query("w2", Token(secret, "local", "w1"), key))
	cb, err = ParseLine([]byte(forged))
	if err != nil || cb.Verify(secret, "local") {
		t.Errorf("w1's token accepted for w2 (err %v)", err)
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
		"NoName":  "token=abc&key=x",
		"NoKey":   "name=w1&token=abc",
		"BadKey":  "name=w1&token=abc&key=ssh-ed25519+AAAAnotakey",
		"BadPct":  "name=w1%zz&token=abc",
		"NoToken": "name=w1&key=x",
	} {
		if _, err := ParseLine([]byte(line("10.0.0.1", args))); !errors.Is(err, ErrBadCallback) {
			t.Errorf("%s: err = %v, want ErrBadCallback", name, err)
		}
	}
}

// FuzzParseLine checks that no input makes the parser panic, and that what
// it accepts is a complete callback.
func FuzzParseLine(f *testing.F) {
	key := testKey(f)
	f.Add([]byte(line("10.77.0.11", Query("w1", Token([]byte("k"), "local", "w1"), key))))
	f.Add([]byte(line("::1", "name=a&token=b&key=c")))
	f.Add([]byte(`{"time":"x"}`))
	f.Add([]byte("\x00\xff{"))
	f.Fuzz(func(t *testing.T, b []byte) {
		cb, err := ParseLine(b)
		if err != nil {
			return
		}
		if cb.Name == "" || cb.Token == "" || cb.Key == nil || !cb.Remote.IsValid() || cb.Time.IsZero() {
			t.Fatalf("accepted an incomplete callback %+v from %q", cb, b)
		}
	})
}
