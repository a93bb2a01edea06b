package apiserver_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"booted/internal/apiserver"
)

type noSecrets struct{}

func (noSecrets) Secret(string) (string, string, error) { return "", "", errors.New("no such key") }

// The routes answer (unsigned: refused by both APIs, never by a panic),
// and the server stops, returning nil, when its context ends.
func TestServe_RoutesAndStops(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &apiserver.Server{Secrets: noSecrets{}, Admin: func(string) bool { return false }, Log: func(string, ...any) {},
		Status: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "status page") })}
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
	if code, body := get("/status"); code != 200 || body != "status page" {
		t.Errorf("/status: %d %s", code, body)
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
