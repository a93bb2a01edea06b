package targets

// The hosts of a site with a network of its own phone home to their
// site (conductord.Relay); the controller records the callbacks its
// conductors relay as it records its own boot log's.
