// Command hello is the Greetings microservice: GET / says "Hello World!",
// POST / with a name in the body says "Hello {name} World!"; /healthz and
// /version are for the tools that run it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"
)

// version is set at build time: -ldflags "-X main.version=v1.2.0".
var version = "dev"

// maxName bounds the name a client may send.
const maxName = 256

// load makes response time grow with load, to exercise autoscaling: each
// request of / takes base × max(1, rate/capacity), rate being the requests
// of the last second. capacity 0 turns it off.
type load struct {
	base     time.Duration
	capacity float64
	mu       sync.Mutex
	recent   []time.Time
}

func (l *load) delay() time.Duration {
	if l == nil || l.capacity <= 0 {
		return 0
	}
	l.mu.Lock()
	now := time.Now()
	i := 0
	for i < len(l.recent) && now.Sub(l.recent[i]) > time.Second {
		i++
	}
	l.recent = append(l.recent[i:], now)
	rate := float64(len(l.recent))
	l.mu.Unlock()
	return time.Duration(float64(l.base) * max(1, rate/l.capacity))
}

func handler(l *load) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(l.delay())
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			fmt.Fprintln(w, "Hello World!")
		case http.MethodPost:
			b, err := io.ReadAll(io.LimitReader(r.Body, maxName+1))
			if err != nil {
				http.Error(w, "cannot read the body", http.StatusBadRequest)
				return
			}
			name := strings.TrimSpace(string(b))
			switch {
			case len(b) > maxName:
				http.Error(w, fmt.Sprintf("a name is at most %d bytes", maxName), http.StatusRequestEntityTooLarge)
			case name == "":
				http.Error(w, "send a name in the body", http.StatusBadRequest)
			default:
				fmt.Fprintf(w, "Hello %s World!\n", name)
			}
		default:
			w.Header().Set("Allow", "GET, HEAD, POST")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		}
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /version", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, version) })
	return mux
}

func main() {
	addr := flag.String("addr", ":8080", "address to listen on")
	l := &load{}
	flag.DurationVar(&l.base, "base", 0, "simulated work per request of / (with -capacity)")
	flag.Float64Var(&l.capacity, "capacity", 0, "requests a second served in -base; more take longer in proportion (0: off)")
	flag.Parse()
	srv := &http.Server{Addr: *addr, Handler: handler(l), ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	log.Printf("hello %s listening on %s", version, *addr)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Print(err)
		os.Exit(1)
	}
}
