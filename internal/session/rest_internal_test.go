package session

import (
	"maps"
	"slices"
	"testing"

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
