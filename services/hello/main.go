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
	"syscall"
	"time"
)

// version is set at build time: -ldflags "-X main.version=v1.2.0".
var version = "dev"

// maxName bounds the name a client may send.
const maxName = 256

func handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
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
	flag.Parse()
	srv := &http.Server{Addr: *addr, Handler: handler(), ReadHeaderTimeout: 5 * time.Second}
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
