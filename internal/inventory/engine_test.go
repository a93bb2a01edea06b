package inventory

import (
	"context"
	"strings"
	"testing"
)

// An inventory URL that would put a password in the environment, send the
// inventory in clear or to an unverified server, or names no database is
// refused before anything is opened, saying what to do; a URL the rules
// allow passes them.
func TestOpen_RefusesUnsafeURLs(t *testing.T) {
	for _, tc := range []struct{ url, want string }{
		{"postgres://booted:s3cret@db.example/booted?sslmode=verify-full", "passfile"},
		{"postgres://booted@db.example/booted?password=s3cret&sslmode=verify-full", "passfile"},
		{"postgres://booted@db.example/booted", `sslmode is ""`},
		{"postgresql://booted@10.1.2.3:5432/booted?sslmode=require", "sslmode=verify-full"},
		{"postgres://booted@127.0.0.1,db.example/booted?sslmode=prefer", "db.example is not on this machine"},
		{"postgres://booted@db.example", "name the database"},
		{"mysql://booted@db.example/booted", "not mysql"},
	} {
		_, err := Open(context.Background(), tc.url)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open(%s) = %v, want an error saying %q", tc.url, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("the error shows the password: %v", err)
		}
	}
	for _, ok := range []string{
		"postgres:///booted?host=/run/postgresql",
		"postgres://booted@localhost/booted",
		"postgres://booted@[::1]:5433/booted?sslmode=disable",
		"postgres://booted@db.example/booted?sslmode=verify-full&sslrootcert=/etc/booted-ca.pem",
	} {
		if err := CheckURL(ok); err != nil {
			t.Errorf("CheckURL(%s) = %v", ok, err)
		}
	}
}
