package lb

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Requests is what the load balancer's access log says of the requests it
// answered: each one's time (nginx's $request_time) and how many got a 5xx.
type Requests struct {
	Times  []time.Duration
	Failed int
}

// ParseAccessLog reads lines of the "lb" log format of nginx/lb.conf.tmpl
// ('$time_iso8601 $status $request_time ...'); lines it cannot read are
// skipped.
func ParseAccessLog(text string) Requests {
	var r Requests
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		sec, err := strconv.ParseFloat(f[2], 64)
		if err != nil {
			continue
		}
		r.Times = append(r.Times, time.Duration(math.Round(sec*float64(time.Second))))
		if code, _ := strconv.Atoi(f[1]); code >= 500 {
			r.Failed++
		}
	}
	return r
}

// Outputter runs a shell command on a host and returns its output.
type Outputter interface {
	Output(ctx context.Context, cmd string) (string, error)
}

// AccessLogSince reads the load balancer's access log from byte offset at:
// it returns the log's size now and the requests written since at. The
// first look (at < 0) and a log that shrank (rotated) give no requests,
// only the size to go on from.
func AccessLogSince(ctx context.Context, s Outputter, at int64) (int64, Requests, error) {
	from := max(at, 0)
	out, err := s.Output(ctx, fmt.Sprintf("f=%s/logs/access.log; s=$(stat -c %%s $f 2>/dev/null || echo 0); echo $s; [ %d -le $s ] && tail -c +%d $f | head -c $(($s - %d))", Prefix, from, from+1, from))
	if err != nil {
		return at, Requests{}, err
	}
	first, rest, _ := strings.Cut(out, "\n")
	size, _ := strconv.ParseInt(strings.TrimSpace(first), 10, 64)
	if at < 0 || size < at {
		return size, Requests{}, nil
	}
	return size, ParseAccessLog(rest), nil
}

// LogOffsets remembers, per load balancer, how far its access log has been
// read (safe for concurrent use); the zero value is ready.
type LogOffsets struct {
	mu sync.Mutex
	at map[string]int64
}

// At is where host's log was read up to (-1: not yet looked at).
func (o *LogOffsets) At(host string) int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	if at, seen := o.at[host]; seen {
		return at
	}
	return -1
}

// Moved remembers that host's log was read up to size.
func (o *LogOffsets) Moved(host string, size int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.at == nil {
		o.at = map[string]int64{}
	}
	o.at[host] = size
}
