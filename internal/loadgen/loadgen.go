// Package loadgen sends a bounded stream of HTTP requests at a steady rate
// and reports counts and latency percentiles: the load of bench:load, of the
// load-balancer tests, and what the monitor measures with.
package loadgen

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
)

// Options of a run.
type Options struct {
	URL      string
	Duration time.Duration
	// Rate is requests per second.
	Rate float64
	// Timeout of one request; zero means 10s.
	Timeout time.Duration
	// MaxInFlight bounds concurrent requests; zero means 256.
	MaxInFlight int
}

// Stats is what a run saw.
type Stats struct {
	Sent     int
	Failed   int
	P50      time.Duration
	P95      time.Duration
	P99      time.Duration
	Max      time.Duration
	Duration time.Duration
	// Bodies counts the distinct response bodies (trimmed), e.g. versions.
	Bodies map[string]int
	// Errors counts failures by their message.
	Errors map[string]int
	// Latencies are every request's time, sorted.
	Latencies []time.Duration `json:"-"`
}

// Run sends requests until Duration has passed or ctx ends; requests in
// flight when ctx ends are let finish (within Timeout). A request fails on a
// transport error or a status other than 2xx.
func Run(ctx context.Context, o Options) (*Stats, error) {
	if o.Rate <= 0 || o.Rate > 10000 {
		return nil, fmt.Errorf("rate %v: use 1 to 10000 requests per second", o.Rate)
	}
	if o.Duration <= 0 || o.Duration > time.Hour {
		return nil, fmt.Errorf("duration %v: use up to 1h", o.Duration)
	}
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Second
	}
	if o.MaxInFlight == 0 {
		o.MaxInFlight = 256
	}
	client := &http.Client{Timeout: o.Timeout, Transport: &http.Transport{MaxIdleConnsPerHost: o.MaxInFlight, DisableCompression: true}}
	defer client.CloseIdleConnections()
	st := &Stats{Bodies: map[string]int{}, Errors: map[string]int{}}
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	sem := make(chan struct{}, o.MaxInFlight)
	interval := time.Duration(float64(time.Second) / o.Rate)
	total := int(o.Duration.Seconds() * o.Rate)
	start := time.Now()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for i := 0; i < total; i++ {
		select {
		case <-ctx.Done():
			i = total
			continue
		case <-tick.C:
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			i = total
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			t0 := time.Now()
			body, err := get(context.WithoutCancel(ctx), client, o.URL)
			d := time.Since(t0)
			mu.Lock()
			defer mu.Unlock()
			st.Sent++
			lat = append(lat, d)
			if err != nil {
				st.Failed++
				st.Errors[err.Error()]++
				return
			}
			st.Bodies[body]++
		}()
	}
	wg.Wait()
	st.Duration = time.Since(start)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(p*float64(len(lat))))]
	}
	st.P50, st.P95, st.P99 = pct(0.50), pct(0.95), pct(0.99)
	st.Latencies = lat
	if len(lat) > 0 {
		st.Max = lat[len(lat)-1]
	}
	return st, nil
}

func get(ctx context.Context, c *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return "", fmt.Errorf("status %d", resp.StatusCode)
	}
	return strings.TrimSpace(string(b)), nil
}

// String is a one-line summary.
func (s *Stats) String() string {
	return fmt.Sprintf("%d requests in %v, %d failed, p50 %v, p95 %v, p99 %v, max %v",
		s.Sent, s.Duration.Round(time.Millisecond), s.Failed, s.P50.Round(time.Microsecond*100), s.P95.Round(time.Microsecond*100), s.P99.Round(time.Microsecond*100), s.Max.Round(time.Microsecond*100))
}
