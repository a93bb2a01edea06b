package ec2api

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"booted/internal/testutil"
)

type oneSecret struct{}

func (oneSecret) Secret(akid string) (string, string, error) { return "ops", "s3cret", nil }

// curl's --aws-sigv4 signs the query string as it sends it ("+" and
// lower-case escapes): such a request is taken, and the same request with
// its query changed on the way is not.
func TestAuthenticate_CurlRawQuery(t *testing.T) {
	testutil.RequireCommands(t, "curl")
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("tamper") != "" { // a proxy that rewrites the query after signing
			r.URL.RawQuery = strings.Replace(r.URL.RawQuery, "r1", "r2", 1)
		}
		user, e := Authenticate(context.Background(), r, nil, oneSecret{}, time.Now(), "booted")
		if e != nil {
			got = append(got, "refused")
			return
		}
		got = append(got, user)
	}))
	defer srv.Close()
	for _, args := range [][]string{
		{"-G", "--data-urlencode", "q=role:workers and attr:rack=r1", srv.URL + "/api/v1/hosts"},
		{srv.URL + "/api/v1/hosts?q=role%3Aworkers%20and%20attr%3Arack%3Dr1"},
		{"-G", "--data-urlencode", "q=attr:rack=r1", "--data-urlencode", "tamper=1", srv.URL + "/api/v1/hosts"},
		{"--aws-sigv4", "aws:amz:booted:ec2", srv.URL + "/api/v1/hosts?q=x"}, // signed for another service
	} {
		a := append([]string{"-s", "--aws-sigv4", "aws:amz:booted:booted", "--user", "AKIAAAAAAAAAAAAAAAAA:s3cret"}, args...)
		if out, err := exec.Command("curl", a...).CombinedOutput(); err != nil {
			t.Fatalf("curl %v: %v %s", args, err, out)
		}
	}
	if strings.Join(got, " ") != "ops ops refused refused" {
		t.Errorf("curl's requests: %v; want the two signed ones taken, the tampered and the other service's refused", got)
	}
}

// One access key that sends changes without end fills its own part of the
// replay cache and is refused (RequestLimitExceeded); another key's changes
// are still taken (before, the cache was one for every key: one user
// filled it for all).
func TestReplays_BoundPerAccessKey(t *testing.T) {
	var c Replays
	now := time.Now().UTC()
	req := func(akid string, n int) *http.Request {
		r, _ := http.NewRequest(http.MethodPost, "http://api/", nil)
		r.Header.Set("X-Amz-Date", now.Format("20060102T150405Z"))
		r.Header.Set("Authorization", fmt.Sprintf("AWS4-HMAC-SHA256 Credential=%s/%s/booted/ec2/aws4_request, SignedHeaders=host;x-amz-date, Signature=%064x", akid, now.Format("20060102"), n))
		return r
	}
	for i := range maxReplays {
		if err := c.First(req("AKIAFLOOD", i), now); err != nil {
			t.Fatalf("change %d of the flooding key: %v", i, err)
		}
	}
	if err := c.First(req("AKIAFLOOD", maxReplays), now); err == nil || err.Code != "RequestLimitExceeded" {
		t.Errorf("the flooding key past its bound: %v, want RequestLimitExceeded", err)
	}
	if err := c.First(req("AKIAOTHER", 1), now); err != nil {
		t.Errorf("another key's change while one key is at its bound: %v", err)
	}
	// its window over, the flooding key's changes are taken again
	if err := c.First(req("AKIAFLOOD", maxReplays+1), now.Add(2*maxSkew+time.Second)); err != nil {
		t.Errorf("the flooding key once its signatures expired: %v", err)
	}
}
