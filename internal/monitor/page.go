package monitor

import (
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"booted/internal/inventory"
)

// Overview is what the status page shows of the environment beyond the
// daemon's own intervals: every host, and the recent events.
type Overview struct {
	Hosts  []PageHost
	Events []inventory.Event
}

// Only is the part of o about the hosts named in names: those hosts and
// their events.
func (o Overview) Only(names map[string]bool) Overview {
	var out Overview
	for _, h := range o.Hosts {
		if names[h.Name] {
			out.Hosts = append(out.Hosts, h)
		}
	}
	for _, e := range o.Events {
		if names[e.Host] {
			out.Events = append(out.Events, e)
		}
	}
	return out
}

// PageHost is one host on the status page.
type PageHost struct {
	Name, Role, State string
	// Version is the version of its role's service it runs ("" if none).
	Version string
	// Routed: a load balancer sends requests to it.
	Routed bool
}

// history is how far back the page's graph goes.
const history = time.Hour

//go:embed page.html.tmpl
var pageFS embed.FS

var pageTmpl = template.Must(template.New("page.html.tmpl").Funcs(template.FuncMap{
	"ms":        func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) },
	"pct":       func(f float64) string { return fmt.Sprintf("%.2f%%", 100*f) },
	"ts":        func(t time.Time) string { return t.UTC().Format("15:04:05") },
	"hasPrefix": strings.HasPrefix,
}).ParseFS(pageFS, "page.html.tmpl"))

// pageData is what the template renders.
type pageData struct {
	Env      string
	Now      time.Time
	SLAP95   time.Duration
	SLAErr   float64
	Last     *Status
	InFlight *Action
	Roles    []pageRole
	Chart    chart
	Events   []inventory.Event
	Notices  []string
}

type pageRole struct {
	Name  string
	Hosts []pageHostRow
}

type pageHostRow struct {
	PageHost
	Health string
	// Link is where the host's name links to ("" for none).
	Link string
}

// chart is the p95 and error rate of the last hour as SVG polylines.
type chart struct {
	W, H               int
	P95, Err, SLA      string // points
	MaxP95             time.Duration
	MaxErr             float64
	Points             int
	From, To           time.Time
	SLAY               float64
	HasData            bool
	P95Label, ErrLabel string
}

func makeChart(points []Status, slaP95 time.Duration, slaErr float64) chart {
	c := chart{W: 640, H: 180, Points: len(points)}
	if len(points) == 0 {
		return c
	}
	c.HasData = true
	c.From, c.To = points[0].Time, points[len(points)-1].Time
	c.MaxP95, c.MaxErr = 2*slaP95, 2*slaErr
	for _, p := range points {
		c.MaxP95 = max(c.MaxP95, p.Measure.P95)
		c.MaxErr = max(c.MaxErr, p.Measure.ErrorRate)
	}
	span := c.To.Sub(c.From)
	x := func(t time.Time) float64 {
		if span <= 0 {
			return float64(c.W)
		}
		return float64(c.W) * float64(t.Sub(c.From)) / float64(span)
	}
	y := func(v, top float64) float64 {
		if top <= 0 {
			return float64(c.H)
		}
		return float64(c.H) - float64(c.H)*v/top
	}
	var p95, errs []string
	for _, p := range points {
		p95 = append(p95, fmt.Sprintf("%.1f,%.1f", x(p.Time), y(float64(p.Measure.P95), float64(c.MaxP95))))
		errs = append(errs, fmt.Sprintf("%.1f,%.1f", x(p.Time), y(p.Measure.ErrorRate, c.MaxErr)))
	}
	c.P95, c.Err = strings.Join(p95, " "), strings.Join(errs, " ")
	c.SLAY = y(float64(slaP95), float64(c.MaxP95))
	return c
}

// PageInput is what the status page shows: the policy's SLA, what the
// daemon kept, the environment now. HostLink, if set, links each host's
// name (to its JSON in the REST API).
type PageInput struct {
	Env      string
	SLAP95   time.Duration
	SLAErr   float64
	Saved    Saved
	Overview Overview
	HostLink func(host string) string
	// Notices are said at the top of the page, one paragraph each.
	Notices []string
}

// OverviewCache gives an Overview made at most once per TTL however many
// ask at once: each request of a status page cost an SSH login to every
// load balancer and serving host (or a job for their conductors), so the
// page amplified any client; now it costs what one request per TTL does.
// The zero TTL is 5 s.
type OverviewCache struct {
	Get func(ctx context.Context) (Overview, error)
	TTL time.Duration

	mu   sync.Mutex
	at   time.Time
	last Overview
}

// Overview is the last Overview made, or a new one when it is older than
// the TTL (the others asking meanwhile wait for it).
func (c *OverviewCache) Overview(ctx context.Context) (Overview, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ttl := c.TTL
	if ttl == 0 {
		ttl = 5 * time.Second
	}
	if !c.at.IsZero() && time.Since(c.at) < ttl {
		return c.last, nil
	}
	ov, err := c.Get(ctx)
	if err != nil {
		return ov, err
	}
	c.last, c.at = ov, time.Now()
	return ov, nil
}

// page renders the status page of the daemon.
func (d *Daemon) page(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	d.mu.Lock()
	if d.overview == nil {
		d.overview = &OverviewCache{Get: d.Env.Overview}
	}
	c := d.overview
	d.mu.Unlock()
	ov, err := c.Overview(ctx)
	if err != nil {
		http.Error(w, "status page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	p, _, _, _ := d.Env.Policy()
	d.mu.Lock()
	in := PageInput{Env: d.Name, SLAP95: p.SLA.P95.D(), SLAErr: p.SLA.ErrorRate, Saved: d.saved, Overview: ov}
	in.Saved.History = slices.Clone(d.saved.History)
	d.mu.Unlock()
	if err := RenderPage(w, in); err != nil {
		d.Log.Error("status page", "err", err)
	}
}

// RenderPage writes the status page (HTML).
func RenderPage(w http.ResponseWriter, in PageInput) error {
	sv := in.Saved
	data := pageData{Env: in.Env, Now: time.Now(), SLAP95: in.SLAP95, SLAErr: in.SLAErr, Last: sv.Last,
		InFlight: sv.InFlight, Chart: makeChart(sv.History, in.SLAP95, in.SLAErr), Events: slices.Clone(in.Overview.Events), Notices: in.Notices}
	var health map[string]string
	if sv.Last != nil {
		health = sv.Last.Health
	}
	byRole := map[string][]pageHostRow{}
	for _, h := range in.Overview.Hosts {
		hh := health[h.Name]
		if hh == "" {
			hh = h.State
		}
		row := pageHostRow{PageHost: h, Health: hh}
		if in.HostLink != nil {
			row.Link = in.HostLink(h.Name)
		}
		byRole[h.Role] = append(byRole[h.Role], row)
	}
	roles := make([]string, 0, len(byRole))
	for r := range byRole {
		roles = append(roles, r)
	}
	sort.Strings(roles)
	for _, r := range roles {
		data.Roles = append(data.Roles, pageRole{Name: r, Hosts: byRole[r]})
	}
	slices.Reverse(data.Events) // newest first
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	return pageTmpl.Execute(w, data)
}

// statusJSON is the page's data for programs: durations in seconds, no
// zero times.
func (d *Daemon) statusJSON(w http.ResponseWriter, r *http.Request) {
	type point struct {
		Time       time.Time `json:"time"`
		P50Seconds float64   `json:"p50Seconds"`
		P95Seconds float64   `json:"p95Seconds"`
		ErrorRate  float64   `json:"errorRate"`
		Requests   int       `json:"requests"`
	}
	type out struct {
		Env string `json:"env"`
		// Active: this daemon acts (holds the lease); false, it stands by.
		Active   bool              `json:"active"`
		Last     *point            `json:"last,omitempty"`
		Decision string            `json:"decision,omitempty"`
		Workers  map[string]string `json:"workers,omitempty"`
		InFlight *Action           `json:"inFlight,omitempty"`
		LastUp   *time.Time        `json:"lastScaleUp,omitempty"`
		LastDown *time.Time        `json:"lastScaleDown,omitempty"`
		History  []point           `json:"history"`
	}
	pt := func(s Status) point {
		return point{s.Time, s.Measure.P50.Seconds(), s.Measure.P95.Seconds(), s.Measure.ErrorRate, s.Measure.Requests}
	}
	d.mu.Lock()
	o := out{Env: d.Name, Active: d.active, InFlight: d.saved.InFlight, History: []point{}}
	if l := d.saved.Last; l != nil {
		p := pt(*l)
		o.Last, o.Decision, o.Workers = &p, l.Decision, l.Health
	}
	if t := d.saved.LastUp; !t.IsZero() {
		o.LastUp = &t
	}
	if t := d.saved.LastDown; !t.IsZero() {
		o.LastDown = &t
	}
	for _, s := range d.saved.History {
		o.History = append(o.History, pt(s))
	}
	d.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(o)
}
