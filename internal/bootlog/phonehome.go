package bootlog

import (
	"bytes"
	"fmt"
	"os"
	"text/template"
	"time"

	"booted/internal/shell"
)

// PhoneHome is what the phone-home script of one host is rendered with.
// The script holds no secret: the enrollment token goes to the host in a
// file of its own (/etc/booted/enroll-token).
type PhoneHome struct {
	URL  string
	Env  string
	Name string
	// Retry bounds how long the host keeps trying.
	Retry time.Duration
	// UserData: the host is an instance; its user data, from the metadata
	// service, is its first-boot step when it is a script.
	UserData bool
}

// TokenFile is where a host keeps its enrollment token until it has sent it.
const TokenFile = "/etc/booted/enroll-token"

// Render renders the phone-home template (kickstart/phone-home.sh.tmpl).
func (p PhoneHome) Render(tmplPath string) ([]byte, error) {
	src, err := os.ReadFile(tmplPath)
	if err != nil {
		return nil, fmt.Errorf("phone-home template: %w", err)
	}
	t, err := template.New(tmplPath).Funcs(template.FuncMap{"q": shell.Quote}).Option("missingkey=error").Parse(string(src))
	if err != nil {
		return nil, fmt.Errorf("phone-home template: %w", err)
	}
	var b bytes.Buffer
	err = t.Execute(&b, map[string]any{
		"URL": p.URL, "Env": p.Env, "Name": p.Name,
		"RetrySeconds": int(p.Retry.Seconds()), "UserData": p.UserData,
	})
	if err != nil {
		return nil, fmt.Errorf("phone-home template: %w", err)
	}
	return b.Bytes(), nil
}
