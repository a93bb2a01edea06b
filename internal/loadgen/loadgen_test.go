package loadgen

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

func TestRun_CountsAndFailures(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1)%10 == 0 {
			http.Error(w, "no", 500)
			return
		}
		w.Write([]byte("v1\n"))
	}))
	defer srv.Close()
	st, err := Run(context.Background(), Options{URL: srv.URL, Duration: time.Second, Rate: 100})
	if err != nil {
		t.Fatal(err)
	}
	if st.Sent != 100 || st.Failed != 10 || st.Bodies["v1"] != 90 || st.Errors["status 500"] != 10 {
		t.Errorf("stats %+v", st)
	}
	if st.P50 <= 0 || st.P99 < st.P50 || st.Max < st.P99 {
		t.Errorf("percentiles %v %v %v", st.P50, st.P99, st.Max)
	}
	if _, err := Run(context.Background(), Options{URL: srv.URL, Duration: time.Second, Rate: 0}); err == nil {
		t.Error("rate 0 accepted")
	}
}
