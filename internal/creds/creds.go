// Package creds keeps the users of an environment's EC2 API: an access key
// ID and secret per user (inventory/ENV/creds, 0600), and the files a user
// sources to point the AWS CLI or boto3 at booted (eucarc, pinetrc).
package creds

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"booted/internal/atomicfile"
)

// Cred is one user's key.
type Cred struct {
	User      string `json:"user"`
	AccessKey string `json:"accessKeyId"`
	Secret    string `json:"secretAccessKey"`
}

var (
	userRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)
	akidRE = regexp.MustCompile(`^AKIA[A-Z2-7]{16}$`)
)

// CheckUser refuses a name a user cannot have.
func CheckUser(user string) error {
	if !userRE.MatchString(user) {
		return fmt.Errorf("user %q: use lower-case letters, digits, '_' and '-', starting with a letter (at most 32)", user)
	}
	return nil
}

// Store is the credentials of one environment, in dir (inventory/ENV/creds).
type Store struct{ Dir string }

// Create makes a new key for user (a user may have several: each
// creds:create adds one) and writes it, 0600.
func (s Store) Create(user string) (Cred, error) {
	if err := CheckUser(user); err != nil {
		return Cred{}, err
	}
	id := make([]byte, 10)
	sec := make([]byte, 30)
	if _, err := rand.Read(id); err != nil {
		return Cred{}, err
	}
	if _, err := rand.Read(sec); err != nil {
		return Cred{}, err
	}
	c := Cred{User: user, AccessKey: "AKIA" + base32.StdEncoding.EncodeToString(id), Secret: base64.StdEncoding.EncodeToString(sec)}
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return c, err
	}
	b, _ := json.Marshal(c)
	return c, atomicfile.Write(filepath.Join(s.Dir, c.AccessKey+".json"), b, 0o600)
}

// ErrUnknownKey is returned for an access key ID booted did not make.
var ErrUnknownKey = errors.New("unknown access key")

// Lookup returns the credential of access key id.
func (s Store) Lookup(id string) (Cred, error) {
	if !akidRE.MatchString(id) {
		return Cred{}, ErrUnknownKey
	}
	b, err := os.ReadFile(filepath.Join(s.Dir, id+".json"))
	if errors.Is(err, fs.ErrNotExist) {
		return Cred{}, ErrUnknownKey
	}
	if err != nil {
		return Cred{}, err
	}
	var c Cred
	if err := json.Unmarshal(b, &c); err != nil || c.AccessKey != id {
		return Cred{}, fmt.Errorf("%s: damaged credential", filepath.Join(s.Dir, id+".json"))
	}
	return c, nil
}

// Files writes the files user c sources: USER.credentials (the AWS shared
// credentials file, profile booted-ENV), USER.config (region and output),
// and USER.rc, which points the AWS CLI and boto3 at them and at endpoint,
// trusting the certificates of caBundle (empty: the system's); and
// USER.curlrc, curl's. The secret is in the credentials file and the curlrc
// alone. It returns the rc file.
func (s Store) Files(env string, c Cred, endpoint, region, caBundle string) (string, error) {
	profile := "booted-" + env
	base := filepath.Join(s.Dir, c.User)
	credFile, confFile, rc := base+".credentials", base+".config", base+".rc"
	if err := atomicfile.Write(credFile, []byte(fmt.Sprintf("[%s]\naws_access_key_id = %s\naws_secret_access_key = %s\n", profile, c.AccessKey, c.Secret)), 0o600); err != nil {
		return "", err
	}
	conf := fmt.Sprintf("[profile %s]\nregion = %s\noutput = json\nendpoint_url = %s\n", profile, region, endpoint)
	if caBundle != "" {
		conf += "ca_bundle = " + caBundle + "\n"
	}
	if err := atomicfile.Write(confFile, []byte(conf), 0o600); err != nil {
		return "", err
	}
	// curl's config for the REST API: curl -K USER.curlrc URL (the
	// secret stays off the command line).
	curlrc := fmt.Sprintf("# booted: the REST API of environment %s for user %s: curl -K %s %s/api/v1/hosts\nuser = \"%s:%s\"\naws-sigv4 = \"aws:amz:%s:booted\"\nfail-with-body\n",
		env, c.User, base+".curlrc", endpoint, c.AccessKey, c.Secret, region)
	if caBundle != "" {
		curlrc += fmt.Sprintf("cacert = \"%s\"\n", caBundle)
	}
	if err := atomicfile.Write(base+".curlrc", []byte(curlrc), 0o600); err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# booted: the EC2 API of environment %s for user %s (source this file).\n", env, c.User)
	fmt.Fprintf(&b, "export AWS_SHARED_CREDENTIALS_FILE=%s\nexport AWS_CONFIG_FILE=%s\nexport AWS_PROFILE=%s\n", credFile, confFile, profile)
	fmt.Fprintf(&b, "export AWS_DEFAULT_REGION=%s\n", region)
	if caBundle != "" {
		fmt.Fprintf(&b, "# the certificate authority that signed the API's certificate\nexport AWS_CA_BUNDLE=%s\n", caBundle)
	}
	fmt.Fprintf(&b, "# AWS CLI 1.30+/2.13+ and boto3 read the endpoint from the profile (and from this variable);\n# older ones need --endpoint-url \"$EC2_URL\".\nexport AWS_ENDPOINT_URL_EC2=%s\nexport EC2_URL=%s\n", endpoint, endpoint)
	return rc, atomicfile.Write(rc, []byte(b.String()), 0o600)
}
