package tlsca_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"os"
	"testing"
	"time"

	"booted/internal/tlsca"
)

// The CA is made once; the server certificate is kept while it carries
// every name asked for and made again (by the same CA) for a new one; the
// keys are 0600; a client trusting ca.pem accepts the certificate for each
// name and for no other.
func TestEnsure_KeptUntilANameIsNew(t *testing.T) {
	f := tlsca.Files{Dir: t.TempDir()}
	if err := f.Ensure("t", []string{"10.0.0.1"}, 365*24*time.Hour); err != nil {
		t.Fatal(err)
	}
	ca1, _ := os.ReadFile(f.CA())
	c1, _ := os.ReadFile(f.Cert())
	if err := f.Ensure("t", []string{"10.0.0.1"}, 365*24*time.Hour); err != nil {
		t.Fatal(err)
	}
	if c, _ := os.ReadFile(f.Cert()); !bytes.Equal(c, c1) {
		t.Error("the certificate was made again for the same names")
	}
	if err := f.Ensure("t", []string{"api.example"}, 365*24*time.Hour); err != nil {
		t.Fatal(err)
	}
	if c, _ := os.ReadFile(f.Cert()); bytes.Equal(c, c1) {
		t.Error("the certificate was kept for a new name")
	}
	if ca, _ := os.ReadFile(f.CA()); !bytes.Equal(ca, ca1) {
		t.Error("the CA was made again")
	}
	for _, k := range []string{f.Key(), f.Dir + "/ca-key.pem"} {
		if fi, err := os.Stat(k); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v, want 0600", k, fi, err)
		}
	}
	pair, err := tls.LoadX509KeyPair(f.Cert(), f.Key())
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(pair.Certificate[0])
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca1)
	for name, ok := range map[string]bool{"api.example": true, "127.0.0.1": true, "localhost": true, "10.0.0.1": false, "evil.example": false} {
		_, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: pool})
		if (err == nil) != ok {
			t.Errorf("the certificate for %s: %v, want valid %v", name, err, ok)
		}
	}
}
