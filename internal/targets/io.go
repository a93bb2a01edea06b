package targets

import (
	"booted/internal/fleet"
)

// hostConn is one host during Each (the vocabulary of steps on a host is
// fleet's, shared by the real hosts and the fakes).
type hostConn = fleet.Conn
