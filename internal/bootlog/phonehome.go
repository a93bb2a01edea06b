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
type PhoneHome struct {
	URL   string
	Env   string
	Name  string
	Token string
	// Retry bounds how long the host keeps trying.
	Retry time.Duration
}

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
		"URL": p.URL, "Env": p.Env, "Name": p.Name, "Token": p.Token,
		"RetrySeconds": int(p.Retry.Seconds()),
	})
	if err != nil {
		return nil, fmt.Errorf("phone-home template: %w", err)
	}
	return b.Bytes(), nil
}
