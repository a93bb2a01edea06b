package session

import (
	"maps"
	"slices"
	"testing"

	"booted/internal/jobs"
	"booted/internal/restapi"
)

// Every change the REST API offers (and describes) is done by a target,
// and no target is reachable that it does not offer: one list.
func TestRESTChanges_OneList(t *testing.T) {
	offered := slices.Clone(restapi.Changes)
	slices.Sort(offered)
	if done := slices.Sorted(maps.Keys(restChanges)); !slices.Equal(done, offered) {
		t.Errorf("restChanges do %v; the API offers %v", done, offered)
	}
}

// A conductor does every kind the controller sends: each registered in
// package jobs (the alive check and the site provider's acts among them).
func TestJobKinds_Registered(t *testing.T) {
	for _, k := range []string{"alive", "host.build", "host.boot", "host.poweroff", "host.delete", "host.installed", "host.power-status"} {
		if _, ok := jobs.LookupDirect(k); !ok {
			t.Errorf("job kind %s is not registered (jobs.DefineDirect)", k)
		}
	}
	for _, k := range []string{"run", "facts", "accesslog", "put", "get", "deploy", "status", "checks", "start", "stop", "rollback", "health", "logs", "lb", "lbstop", "routes", "load"} {
		if _, ok := jobs.Lookup(k); !ok {
			t.Errorf("job kind %s is not registered (jobs.Define)", k)
		}
	}
}
