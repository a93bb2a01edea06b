package bootlog

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hiddeco/sshsig"
	"golang.org/x/crypto/ssh"
)

// LogFormat is the nginx log_format for callbacks. escape=json makes every
// value a valid JSON string whatever a client sends, so one line is always
// one JSON object.
const LogFormat = `escape=json '{"time":"$time_iso8601","remote":"$remote_addr","method":"$request_method","uri":"$uri","args":"$args","status":"$status"}'`

// FailedPath is where a host reports a failed install or boot (Foreman's
// /unattended/failed); CallbackPath is where it phones home.
const (
	CallbackPath  = "/booted/"
	FailedPath    = "/booted/failed"
	InstalledPath = "/booted/installed"
)

// Namespace is the ssh-keygen -Y namespace of booted's callback signatures.
const Namespace = "booted-callback"

// NewToken returns a fresh enrollment token: 32 random bytes, hex.
func NewToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b)
}

// HashToken is what the inventory keeps of a token.
func HashToken(token string) string {
	h := sha256.Sum256([]byte(strings.ToLower(strings.TrimSpace(token))))
	return hex.EncodeToString(h[:])
}

// TokenMatches reports whether token is the one hash was made of.
func TokenMatches(token, hash string) bool {
	return token != "" && hash != "" && subtle.ConstantTimeCompare([]byte(HashToken(token)), []byte(hash)) == 1
}

// Callback is one phone-home (or failure report), as nginx logged it.
type Callback struct {
	// Time is when nginx got it; Remote is where from.
	Time   time.Time
	Remote netip.Addr
	Name   string
	// Token is the enrollment token, sent once per provisioning ("" after).
	Token string
	// Key is the host's SSH public key.
	Key ssh.PublicKey
	// SignedAt is the host's time in the signed message; Sig signs
	// Message(env, name, SignedAt) with the host's key (nil: not signed).
	SignedAt int64
	Sig      *sshsig.Signature
	// Failed marks a failure report; Log is the tail of the failed step's
	// log.
	Failed bool
	Log    string
	// Installed marks an installer's report that the disk is written (a
	// bare-metal node: booted then turns its netboot off).
	Installed bool
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
	URI    string `json:"uri"`
	Args   string `json:"args"`
	Status string `json:"status"`
}

// maxLog bounds the log tail a failure report carries.
const maxLog = 4096

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
	cb.Failed = strings.TrimSuffix(l.URI, "/") == FailedPath
	cb.Installed = strings.TrimSuffix(l.URI, "/") == InstalledPath
	cb.Name, cb.Token = q.Get("name"), strings.TrimSpace(q.Get("token"))
	if cb.Name == "" || len(cb.Name) > 63 {
		return cb, fmt.Errorf("%w: name missing", ErrBadCallback)
	}
	if k := strings.TrimSpace(q.Get("key")); k != "" {
		if cb.Key, _, _, _, err = ssh.ParseAuthorizedKey([]byte(k)); err != nil {
			return cb, fmt.Errorf("%w: %s sent an unreadable host key", ErrBadCallback, cb.Name)
		}
	}
	if s := q.Get("sig"); s != "" {
		if cb.SignedAt, err = strconv.ParseInt(q.Get("time"), 10, 64); err != nil {
			return cb, fmt.Errorf("%w: %s sent a signature without its time", ErrBadCallback, cb.Name)
		}
		blob, err := base64.StdEncoding.DecodeString(strings.Map(dropSpace, s))
		if err != nil {
			return cb, fmt.Errorf("%w: %s sent an unreadable signature", ErrBadCallback, cb.Name)
		}
		if cb.Sig, err = sshsig.ParseSignature(blob); err != nil {
			return cb, fmt.Errorf("%w: %s sent an unreadable signature: %v", ErrBadCallback, cb.Name, err)
		}
	}
	if cb.Installed {
		if cb.Token == "" {
			return cb, fmt.Errorf("%w: %s's install report has no token", ErrBadCallback, cb.Name)
		}
		return cb, nil
	}
	if cb.Failed {
		cb.Log = q.Get("log")
		if len(cb.Log) > maxLog {
			cb.Log = cb.Log[len(cb.Log)-maxLog:]
		}
		if cb.Token == "" && cb.Sig == nil {
			return cb, fmt.Errorf("%w: %s's failure report has neither a token nor a signature", ErrBadCallback, cb.Name)
		}
		return cb, nil
	}
	if cb.Key == nil {
		return cb, fmt.Errorf("%w: %s sent no host key", ErrBadCallback, cb.Name)
	}
	if cb.Token == "" && cb.Sig == nil {
		return cb, fmt.Errorf("%w: %s sent neither a token nor a signature", ErrBadCallback, cb.Name)
	}
	return cb, nil
}

func dropSpace(r rune) rune {
	if r == ' ' || r == '\n' || r == '\r' || r == '\t' {
		return -1
	}
	return r
}

// Message is what a host signs: its environment, its name and the time,
// so that a signature is good for one host of one environment once (the
// discoverer refuses times older than the last it took).
func Message(failed bool, env, name string, at int64) string {
	kind := "booted-callback"
	if failed {
		kind = "booted-failed"
	}
	return fmt.Sprintf("%s %s %s %d", kind, env, name, at)
}

// VerifySig reports whether cb is signed, for env, by key.
func (cb Callback) VerifySig(env string, key ssh.PublicKey) bool {
	if cb.Sig == nil || key == nil {
		return false
	}
	msg := Message(cb.Failed, env, cb.Name, cb.SignedAt)
	return sshsig.Verify(strings.NewReader(msg), cb.Sig, key, cb.Sig.HashAlgorithm, Namespace) == nil
}

// Query returns the query string a host sends to enroll: its name, token
// and key. It is what the phone-home script builds, and what tests send.
func Query(name, token string, key ssh.PublicKey) string {
	v := url.Values{}
	v.Set("name", name)
	v.Set("token", token)
	v.Set("key", strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key))))
	return v.Encode()
}

// SignedQuery returns the query string of a callback signed by signer at
// at (a host proving itself with its pinned key), with token if given and
// the failure report's log if failed.
func SignedQuery(env, name, token string, signer ssh.Signer, at int64, failed bool, log string) (string, error) {
	sig, err := sshsig.Sign(strings.NewReader(Message(failed, env, name, at)), signer, sshsig.HashSHA512, Namespace)
	if err != nil {
		return "", err
	}
	v := url.Values{}
	v.Set("name", name)
	if token != "" {
		v.Set("token", token)
	}
	v.Set("key", strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey()))))
	v.Set("time", strconv.FormatInt(at, 10))
	v.Set("sig", base64.StdEncoding.EncodeToString(sig.Marshal()))
	if failed {
		v.Set("log", log)
	}
	return v.Encode(), nil
}
