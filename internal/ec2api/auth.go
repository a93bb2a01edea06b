package ec2api

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// maxSkew is how far a request's signing time may be from the server's.
const maxSkew = 15 * time.Minute

// Secrets finds the user and secret of an access key ID.
type Secrets interface {
	Secret(accessKey string) (user, secret string, err error)
}

// Authenticate checks r's Signature Version 4 for service (the
// Authorization header, as the AWS CLI, boto3 and curl --aws-sigv4 send
// it) by signing the same request again with the AWS SDK's signer and the
// stored secret; it returns the user.
func Authenticate(ctx context.Context, r *http.Request, body []byte, secrets Secrets, now time.Time, service string) (string, *Error) {
	fail := func(format string, a ...any) (string, *Error) {
		return "", &Error{Status: http.StatusUnauthorized, Code: "AuthFailure", Message: fmt.Sprintf(format, a...)}
	}
	h := r.Header.Get("Authorization")
	const algo = "AWS4-HMAC-SHA256 "
	if !strings.HasPrefix(h, algo) {
		return fail("AWS was not able to validate the provided access credentials: sign requests with Signature Version 4")
	}
	fields := authFields(h)
	scope := strings.Split(fields["Credential"], "/")
	if len(scope) != 5 || scope[4] != "aws4_request" || fields["SignedHeaders"] == "" || fields["Signature"] == "" {
		return fail("AWS was not able to validate the provided access credentials: a malformed Authorization header")
	}
	if scope[3] != service {
		return fail("AWS was not able to validate the provided access credentials: signed for service %q; this endpoint is %q", scope[3], service)
	}
	akid, day, region := scope[0], scope[1], scope[2]
	user, secret, err := secrets.Secret(akid)
	if err != nil {
		return fail("AWS was not able to validate the provided access credentials")
	}
	at, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil || at.Format("20060102") != day {
		return fail("AWS was not able to validate the provided access credentials: X-Amz-Date missing or not the credential's day")
	}
	if d := now.Sub(at); d > maxSkew || d < -maxSkew {
		return fail("Signature expired or not yet valid: signed at %s, the server's time is %s", at.Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	// The same request, with the headers the client signed and nothing else.
	u := url.URL{Scheme: "http", Host: r.Host, Path: r.URL.Path, RawQuery: r.URL.RawQuery}
	again, err := http.NewRequestWithContext(ctx, r.Method, u.String(), nil)
	if err != nil {
		return fail("AWS was not able to validate the provided access credentials")
	}
	again.Host = r.Host
	for _, name := range strings.Split(fields["SignedHeaders"], ";") {
		switch name {
		case "host":
			continue
		case "content-length": // the signer signs it from ContentLength, when given
			again.ContentLength = r.ContentLength
			continue
		}
		for _, v := range r.Header.Values(name) {
			again.Header.Add(name, v)
		}
	}
	sum := sha256.Sum256(body)
	payload := hex.EncodeToString(sum[:])
	if ph := r.Header.Get("X-Amz-Content-Sha256"); ph != "" && ph != payload {
		return fail("AWS was not able to validate the provided access credentials: the body does not match its hash")
	}
	signer := v4.NewSigner(func(o *v4.SignerOptions) { o.DisableURIPathEscaping = false })
	if err := signer.SignHTTP(ctx, aws.Credentials{AccessKeyID: akid, SecretAccessKey: secret}, again, payload, service, region, at); err != nil {
		return fail("AWS was not able to validate the provided access credentials")
	}
	want := ""
	for _, kv := range strings.Split(strings.TrimPrefix(again.Header.Get("Authorization"), algo), ",") {
		if k, v, _ := strings.Cut(strings.TrimSpace(kv), "="); k == "Signature" {
			want = v
		}
	}
	got := []byte(fields["Signature"])
	if want != "" && subtle.ConstantTimeCompare([]byte(want), got) == 1 {
		return user, nil
	}
	// curl (7.x, --aws-sigv4) signs the query string as it sends it, not
	// in SigV4's canonical encoding ("a+b", "%3a" where the SDK has "a%20b",
	// "%3A"): a signature over the query as sent is as good (it is an HMAC
	// of the same request with the same secret).
	if r.URL.RawQuery != "" {
		raw := signRaw(r, fields["SignedHeaders"], payload, secret, day, region, service)
		if subtle.ConstantTimeCompare([]byte(raw), got) == 1 {
			return user, nil
		}
	}
	return fail("AWS was not able to validate the provided access credentials")
}

// authFields are the KEY=VALUE fields of a Signature Version 4
// Authorization header (Credential, SignedHeaders, Signature).
func authFields(h string) map[string]string {
	fields := map[string]string{}
	for _, kv := range strings.Split(strings.TrimPrefix(h, "AWS4-HMAC-SHA256 "), ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
		fields[k] = v
	}
	return fields
}

// AuthenticatePage checks the credentials of a request for a page, a GET
// a browser makes: HTTP Basic with the access key ID as the user name and
// its secret as the password, taken over TLS alone (a plain request that
// carries them is refused, so a secret is never taken from the clear), or
// a Signature Version 4 for service as Authenticate checks it. It returns
// the user.
func AuthenticatePage(ctx context.Context, r *http.Request, secrets Secrets, now time.Time, service string) (string, *Error) {
	akid, secret, ok := r.BasicAuth()
	if !ok {
		return Authenticate(ctx, r, nil, secrets, now, service)
	}
	fail := &Error{Status: http.StatusUnauthorized, Code: "AuthFailure", Message: "AWS was not able to validate the provided access credentials"}
	if r.TLS == nil {
		fail.Message += ": a password is taken over HTTPS alone"
		return "", fail
	}
	user, want, err := secrets.Secret(akid)
	if err != nil || subtle.ConstantTimeCompare([]byte(want), []byte(secret)) != 1 {
		return "", fail
	}
	return user, nil
}

// signRaw is the SigV4 signature of r with its query string as sent.
func signRaw(r *http.Request, signed, payload, secret, day, region, service string) string {
	var canon strings.Builder
	canon.WriteString(r.Method + "\n" + r.URL.EscapedPath() + "\n" + r.URL.RawQuery + "\n")
	for _, name := range strings.Split(signed, ";") {
		v := strings.Join(r.Header.Values(name), ",")
		if name == "host" {
			v = r.Host
		}
		canon.WriteString(name + ":" + strings.Join(strings.Fields(v), " ") + "\n")
	}
	canon.WriteString("\n" + signed + "\n" + payload)
	sum := sha256.Sum256([]byte(canon.String()))
	scope := day + "/" + region + "/" + service + "/aws4_request"
	toSign := "AWS4-HMAC-SHA256\n" + r.Header.Get("X-Amz-Date") + "\n" + scope + "\n" + hex.EncodeToString(sum[:])
	key := []byte("AWS4" + secret)
	for _, part := range []string{day, region, service, "aws4_request", toSign} {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(part))
		key = m.Sum(nil)
	}
	return hex.EncodeToString(key)
}

// Replays remembers the signatures of the changes accepted within the
// clock-skew window, so that a signed request captured on the way cannot
// change anything again later. A signature has a one-second resolution,
// so a client that sends the same change twice within a second (the AWS
// CLI run twice) sends one signature twice: a repeat is taken while it
// comes within replayGrace of its signing time, and refused after that.
// Reads are not kept (a read replayed changes nothing). The zero value is
// ready; it holds at most maxReplays signatures.
type Replays struct {
	mu   sync.Mutex
	seen map[string]map[string]time.Time // access key → signature → when its window ends
}

// replayGrace is how long after its signing time a repeated signature is
// still a client's own repeat, not a replay.
const replayGrace = 2 * time.Second

// maxReplays bounds what Replays keeps of one access key: 10,000 changes
// within 15 minutes (about 11 a second) before that key's next ones are
// refused; another key's are not.
const maxReplays = 10_000

// First records r's signature and says whether it is the first time it
// is seen within its window (now: the server's time). An access key whose
// signatures fill its part (after the expired are dropped) is refused
// with RequestLimitExceeded.
func (c *Replays) First(r *http.Request, now time.Time) *Error {
	fields := authFields(r.Header.Get("Authorization"))
	sig := fields["Signature"]
	akid, _, _ := strings.Cut(fields["Credential"], "/")
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seen == nil {
		c.seen = map[string]map[string]time.Time{}
	}
	seen := c.seen[akid]
	if seen == nil {
		seen = map[string]time.Time{}
		c.seen[akid] = seen
	}
	at, _ := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if end, ok := seen[sig]; ok && now.Before(end) && now.Sub(at) > replayGrace {
		return &Error{Status: http.StatusUnauthorized, Code: "AuthFailure", Message: "AWS was not able to validate the provided access credentials: this signed request was sent before (a replay); sign each request anew"}
	}
	if len(seen) >= maxReplays {
		for s, end := range seen {
			if !now.Before(end) {
				delete(seen, s)
			}
		}
		if len(seen) >= maxReplays {
			return &Error{Status: http.StatusServiceUnavailable, Code: "RequestLimitExceeded", Message: "too many changes by this access key within the signature window (10,000 in 15 minutes); retry later"}
		}
	}
	seen[sig] = now.Add(2 * maxSkew) // signed up to maxSkew before or after now
	return nil
}
