// Package ec2host says how an EC2 instance is kept in the inventory: a host
// of role Role whose attributes hold what EC2 says of it. The EC2 backend
// writes them; the bare-metal admin and the listings read them.
package ec2host

import "booted/internal/inventory"

// Role is the role of the hosts users asked for (EC2's run-instances).
const Role = "instances"

// The attributes of an instance's host.
const (
	AttrID          = "ec2.id" // when not the host's name (a bare-metal node's)
	AttrOwner       = "ec2.owner"
	AttrImage       = "ec2.image"
	AttrType        = "ec2.type"
	AttrKey         = "ec2.key-name"
	AttrAuthorized  = "ec2.authorized-key" // the key pair's public key
	AttrReservation = "ec2.reservation"
	AttrLaunched    = "ec2.launched"
	AttrTags        = "ec2.tags"
	AttrUserData    = "ec2.user-data" // base64
)

// ID is the EC2 ID of instance host h.
func ID(h inventory.Host) string {
	if id := h.Attrs[AttrID]; id != "" {
		return id
	}
	return h.Name
}

// Holds says whether h is an instance that runs (or will): not terminated.
func Holds(h inventory.Host) bool { return h.Role == Role && h.State != inventory.Terminated }

// Of says whether h is an instance of user's.
func Of(h inventory.Host, user string) bool { return h.Role == Role && h.Attrs[AttrOwner] == user }
