package bootlog

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// LogFormat is the nginx log_format for callbacks. escape=json makes every
// value a valid JSON string whatever a client sends, so one line is always
// one JSON object.
const LogFormat = `escape=json '{"time":"$time_iso8601","remote":"$remote_addr","method":"$request_method","args":"$args","status":"$status"}'`

// Token returns the token the host name of environment env proves itself
// with: HMAC-SHA256 over both, keyed with the environment's secret.
func Token(secret []byte, env, name string) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("booted/v1\x00" + env + "\x00" + name))
	return hex.EncodeToString(m.Sum(nil))
}

// Callback is one phone-home, as nginx logged it.
type Callback struct {
	Time   time.Time
	Remote netip.Addr
	Name   string
	Token  string
	// Key is the host's SSH public key.
	Key ssh.PublicKey
}

// Errors ParseLine returns.
var (
	// ErrGarbled: the line is not a callback line at all.
	ErrGarbled = errors.New("garbled line")
	// ErrBadCallback: a callback line whose name, token or key is missing or malformed.
	ErrBadCallback = errors.New("malformed callback")
)

type logLine struct {
	Time   string `json:"time"`
	Remote string `json:"remote"`
	Method string `json:"method"`
	Args   string `json:"args"`
	Status string `json:"status"`
}

// ParseLine parses one boot-log line. It never panics, whatever the input.
func ParseLine(line []byte) (Callback, error) {
	var cb Callback
	line = bytes.TrimSpace(line)
	var l logLine
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l); err != nil || dec.More() {
		return cb, fmt.Errorf("%w: not a JSON callback record", ErrGarbled)
	}
	t, err := time.Parse(time.RFC3339, l.Time)
	if err != nil {
		return cb, fmt.Errorf("%w: time %q", ErrGarbled, l.Time)
	}
	cb.Time = t
	if cb.Remote, err = netip.ParseAddr(l.Remote); err != nil {
		return cb, fmt.Errorf("%w: remote address %q", ErrGarbled, l.Remote)
	}
	q, err := url.ParseQuery(l.Args)
	if err != nil {
		return cb, fmt.Errorf("%w: query: %v", ErrBadCallback, err)
	}
	cb.Name, cb.Token = q.Get("name"), q.Get("token")
	if cb.Name == "" || len(cb.Name) > 63 || cb.Token == "" {
		return cb, fmt.Errorf("%w: name or token missing", ErrBadCallback)
	}
	k := q.Get("key")
	if k == "" {
		return cb, fmt.Errorf("%w: %s sent no host key", ErrBadCallback, cb.Name)
	}
	key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(k))
	if err != nil {
		return cb, fmt.Errorf("%w: %s sent an unreadable host key", ErrBadCallback, cb.Name)
	}
	cb.Key = key
	return cb, nil
}

// Verify reports whether cb carries the right token for its name in env.
func (cb Callback) Verify(secret []byte, env string) bool {
	want := Token(secret, env, cb.Name)
	return hmac.Equal([]byte(want), []byte(strings.ToLower(cb.Token)))
}

// Query returns the query string a host sends; it is what the phone-home
// script builds with curl, and what tests send.
func Query(name, token string, key ssh.PublicKey) string {
	v := url.Values{}
	v.Set("name", name)
	v.Set("token", token)
	v.Set("key", strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key))))
	return v.Encode()
}
