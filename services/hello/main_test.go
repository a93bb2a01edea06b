package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestHello(t *testing.T) {
	srv := httptest.NewServer(handler(nil))
	defer srv.Close()
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		want                     string
	}{
		{"Get", "GET", "/", "", 200, "Hello World!\n"},
		{"Post", "POST", "/", "Ada", 200, "Hello Ada World!\n"},
		{"PostTrims", "POST", "/", "  Grace Hopper\n", 200, "Hello Grace Hopper World!\n"},
		{"PostEmpty", "POST", "/", "", 400, "send a name in the body\n"},
		{"PostTooLong", "POST", "/", strings.Repeat("x", 300), 413, "a name is at most 256 bytes\n"},
		{"WrongMethod", "DELETE", "/", "", 405, "method not allowed\n"},
		{"Health", "GET", "/healthz", "", 200, "ok\n"},
		{"Version", "GET", "/version", "", 200, "dev\n"},
		{"Other", "GET", "/nope", "", 404, "404 page not found\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, srv.URL+tc.path, strings.NewReader(tc.body))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status || string(b) != tc.want {
				t.Errorf("%s %s: %d %q, want %d %q", tc.method, tc.path, resp.StatusCode, b, tc.status, tc.want)
			}
		})
	}
}

func TestLoadGrowsResponseTime(t *testing.T) {
	l := &load{base: 10 * time.Millisecond, capacity: 5}
	if d := l.delay(); d != 10*time.Millisecond {
		t.Errorf("first request: %v", d)
	}
	var d time.Duration
	for i := 0; i < 19; i++ {
		d = l.delay()
	}
	if d != 40*time.Millisecond { // 20 requests in a second, capacity 5: 4×
		t.Errorf("under load: %v, want 40ms", d)
	}
}
