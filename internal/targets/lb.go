package targets

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"booted/internal/loadgen"
)

// BenchLoad sends RATE requests a second for DURATION to the load balancer
// of ENV (the first one up) and prints the count of requests, of failures,
// and latency percentiles. BOOTED_LOAD_PATH sets the path (default /).
func (r *Runner) BenchLoad(ctx context.Context, envName string, d time.Duration, rate int) error {
	return r.withEnv(ctx, envName, func(s *session) error {
		lb, url, err := s.Deploys().LBServing(ctx)
		if err != nil {
			return err
		}
		st, err := s.Deploys().Load(ctx, lb, loadgen.Options{URL: url + r.LoadPath, Duration: d, Rate: float64(rate)})
		if err != nil {
			return err
		}
		if r.JSON {
			secs := func(d time.Duration) float64 { return d.Seconds() }
			rps := 0.0
			if st.Duration > 0 {
				rps = float64(st.Sent) / st.Duration.Seconds()
			}
			if err := json.NewEncoder(r.Out).Encode(struct {
				URL      string         `json:"url"`
				Sent     int            `json:"sent"`
				Failed   int            `json:"failed"`
				RPS      float64        `json:"requestsPerSecond"`
				P50      float64        `json:"p50Seconds"`
				P95      float64        `json:"p95Seconds"`
				P99      float64        `json:"p99Seconds"`
				Max      float64        `json:"maxSeconds"`
				Duration float64        `json:"durationSeconds"`
				Bodies   map[string]int `json:"bodies"`
				Errors   map[string]int `json:"errors"`
			}{url + r.LoadPath, st.Sent, st.Failed, rps, secs(st.P50), secs(st.P95), secs(st.P99), secs(st.Max), secs(st.Duration), st.Bodies, st.Errors}); err != nil {
				return err
			}
		} else {
			fmt.Fprintf(r.Out, "bench:load %s%s: %s\n", url, r.LoadPath, st)
			for msg, n := range st.Errors {
				fmt.Fprintf(r.Out, "  %d× %s\n", n, msg)
			}
		}
		if st.Failed > 0 {
			return fmt.Errorf("bench:load: %d of %d requests failed", st.Failed, st.Sent)
		}
		return nil
	})
}
