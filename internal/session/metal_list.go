package session

import "booted/internal/metaladmin"

// Metal returns the administration of the environment's bare-metal
// provider, or says target needs one.
func (s *Session) Metal(target string) (*metaladmin.Admin, error) {
	return metaladmin.Of(s.Env, s.Provs.ByType, s.Store, target)
}
