package apiserver_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"booted/internal/apiserver"
	"booted/internal/restapi"
	"booted/internal/tlsca"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// oneKey knows one access key, AK1 of ann, whose secret is "s3cret".
type oneKey struct{}

func (oneKey) Secret(ak string) (string, string, error) {
	if ak == "AK1" {
		return "ann", "s3cret", nil
	}
	return "", "", errors.New("no such key")
}

// serve runs s on a port of 127.0.0.1 until the test ends; with TLS from a
// CA of the test's own, it returns the client that trusts that CA.
func serve(t *testing.T, s *apiserver.Server, withTLS bool) (string, *http.Client) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	scheme := "http"
	if withTLS {
		f := tlsca.Files{Dir: t.TempDir()}
		if err := f.Ensure("test API", []string{"127.0.0.1"}, time.Hour*24*60); err != nil {
			t.Fatal(err)
		}
		conf, err := apiserver.TLSConfig(f.Cert(), f.Key())
		if err != nil {
			t.Fatal(err)
		}
		s.TLS = conf
		pool := x509.NewCertPool()
		ca, _ := os.ReadFile(f.CA())
		pool.AppendCertsFromPEM(ca)
		c.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
		scheme = "https"
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return scheme + "://" + ln.Addr().String(), c
}

func statusPage(w http.ResponseWriter, r *http.Request, user string, admin bool) {
	fmt.Fprintf(w, "status page for %s (admin %v)", user, admin)
}

// The status page is for the API's users alone, over HTTPS: without
// credentials, with a wrong secret, or with a password in the clear it is
// refused (401, and a prompt a browser shows); with the access key ID and
// secret as a browser sends them, or a SigV4 signature (curl -K
// USER.curlrc), it is served for that user. The API refuses plain HTTP.
func TestServe_StatusNeedsCredentials(t *testing.T) {
	s := &apiserver.Server{Secrets: oneKey{}, Admin: func(u string) bool { return u == "root" }, Log: func(string, ...any) {}, Status: statusPage}
	base, c := serve(t, s, true)
	get := func(req *http.Request) (int, string, http.Header) {
		t.Helper()
		res, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", req.Method, req.URL, err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b), res.Header
	}
	req, _ := http.NewRequest("GET", base+"/status", nil)
	if code, body, h := get(req); code != http.StatusUnauthorized || strings.Contains(body, "status page for") || !strings.HasPrefix(h.Get("WWW-Authenticate"), "Basic ") {
		t.Errorf("/status without credentials: %d %q %v, want 401 and a Basic prompt", code, body, h)
	}
	req.SetBasicAuth("AK1", "wrong")
	if code, body, _ := get(req); code != http.StatusUnauthorized || strings.Contains(body, "status page for") {
		t.Errorf("/status with a wrong secret: %d %q, want 401", code, body)
	}
	req.SetBasicAuth("AK2", "s3cret")
	if code, _, _ := get(req); code != http.StatusUnauthorized {
		t.Errorf("/status with an unknown key: %d, want 401", code)
	}
	req.SetBasicAuth("AK1", "s3cret")
	if code, body, _ := get(req); code != 200 || body != "status page for ann (admin false)" {
		t.Errorf("/status with ann's key: %d %q", code, body)
	}
	signed, _ := http.NewRequest("GET", base+"/status", nil)
	sum := sha256.Sum256(nil)
	if err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: "AK1", SecretAccessKey: "s3cret"}, signed, hex.EncodeToString(sum[:]), restapi.Service, "booted", time.Now()); err != nil {
		t.Fatal(err)
	}
	if code, body, _ := get(signed); code != 200 || body != "status page for ann (admin false)" {
		t.Errorf("/status signed by ann: %d %q", code, body)
	}
	// plain HTTP to the HTTPS port: refused, nothing served
	plain := strings.Replace(base, "https://", "http://", 1)
	res, err := (&http.Client{Timeout: 10 * time.Second}).Get(plain + "/openapi.json")
	if err == nil {
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusBadRequest || strings.Contains(string(b), "openapi") {
			t.Errorf("plain HTTP to the API: %d %.80s, want 400", res.StatusCode, b)
		}
	}
	// a client that does not trust booted's CA does not talk to it
	if _, err := (&http.Client{Timeout: 10 * time.Second}).Get(base + "/openapi.json"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("a client without the CA: %v, want a certificate error", err)
	}

	// A server without TLS never takes a password from the clear.
	s2 := &apiserver.Server{Secrets: oneKey{}, Admin: func(string) bool { return true }, Log: func(string, ...any) {}, Status: statusPage}
	base2, c2 := serve(t, s2, false)
	req2, _ := http.NewRequest("GET", base2+"/status", nil)
	req2.SetBasicAuth("AK1", "s3cret")
	res, err = c2.Do(req2)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized || strings.Contains(string(b), "status page for") {
		t.Errorf("a password over plain HTTP: %d %q, want 401", res.StatusCode, b)
	}
}

// The routes answer (unsigned: refused by both APIs, never by a panic),
// and the server stops, returning nil, when its context ends.
func TestServe_RoutesAndStops(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &apiserver.Server{Secrets: oneKey{}, Admin: func(string) bool { return false }, Log: func(string, ...any) {}, Status: statusPage}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	base := "http://" + ln.Addr().String()
	get := func(path string) (int, string) {
		t.Helper()
		c := &http.Client{Timeout: 10 * time.Second}
		res, err := c.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if code, body := get("/openapi.json"); code != 200 || !json.Valid([]byte(body)) || !strings.Contains(body, `"openapi"`) {
		t.Errorf("/openapi.json: %d %.80s", code, body)
	}
	if code, _ := get("/status"); code != http.StatusUnauthorized {
		t.Errorf("/status unsigned: %d, want 401", code)
	}
	if code, _ := get("/api/v1/hosts"); code != http.StatusUnauthorized {
		t.Errorf("an unsigned REST request: %d, want 401", code)
	}
	if code, body := get("/?Action=DescribeInstances"); code < 400 || code >= 500 || !strings.Contains(body, "<Code>") {
		t.Errorf("an unsigned EC2 request: %d %s, want an EC2 error", code, body)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve after its context ended: %v", err)
		}
	case <-time.After(apiserver.ShutdownTimeout + 5*time.Second):
		t.Fatal("Serve did not stop")
	}
}
