package kickstart

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"booted/internal/bootlog"
	"booted/internal/testutil"
)

// allowed lists, per template, the commands the template may emit and the
// options of each, as the pykickstart handler of that release documents
// them (RHEL 9: the RHEL9 handler; CentOS 7: RHEL7). An option maps to
// whether it takes a value.
var allowed = map[string]map[string]map[string]bool{
	"rhel9":   common(nil),
	"centos7": common(map[string]map[string]bool{"auth": {"--enableshadow": false, "--passalgo": true}}),
}

func common(extra map[string]map[string]bool) map[string]map[string]bool {
	m := map[string]map[string]bool{
		"text": {}, "cdrom": {}, "lang": {}, "zerombr": {}, "skipx": {}, "reboot": {},
		"keyboard":   {"--vckeymap": true},
		"timezone":   {"--utc": false},
		"network":    {"--bootproto": true, "--device": true, "--activate": false, "--hostname": true},
		"rootpw":     {"--lock": false},
		"sshkey":     {"--username": true},
		"firewall":   {"--enabled": false, "--service": true, "--port": true},
		"selinux":    {"--enforcing": false},
		"services":   {"--enabled": true},
		"bootloader": {"--location": true, "--append": true},
		"clearpart":  {"--all": false, "--initlabel": false},
		"autopart":   {"--type": true, "--nohome": false},
		"firstboot":  {"--disabled": false},
	}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

func render(t *testing.T, name string) ([]byte, []byte) {
	repo := testutil.RepoRoot(t)
	ph, err := bootlog.PhoneHome{URL: "http://192.168.56.1:8077/booted/", Env: "prod", Name: "w1", Retry: time.Minute}.
		Render(filepath.Join(repo, "kickstart", "phone-home.sh.tmpl"))
	if err != nil {
		t.Fatal(err)
	}
	ks, err := Render(filepath.Join(repo, "kickstart"), name, Data{Name: "w1", Env: "prod", AuthorizedKey: "ssh-ed25519 AAAAkey booted@prod",
		PhoneHome: string(ph), Token: strings.Repeat("ab", 32), IdentityURL: "http://192.168.56.1:8077/kickstart/identity/",
		FailedURL: "http://192.168.56.1:8077/booted/failed", ServicePort: 8080})
	if err != nil {
		t.Fatal(err)
	}
	return ks, ph
}

// Ensure every command and option the templates emit is valid kickstart
// for the release, sections are closed, there is no root password, and the
// %post's phone-home is byte for byte the script local hosts run.
func TestKickstart_Syntax(t *testing.T) {
	for name, cmds := range allowed {
		t.Run(name, func(t *testing.T) {
			ks, ph := render(t, name)
			checkSyntax(t, ks, name, cmds)
			checkPhoneHome(t, ks, ph)
			if !bytes.Contains(ks, []byte(`sshkey --username=root "ssh-ed25519 AAAAkey booted@prod"`)) {
				t.Error("no sshkey for root")
			}
			// The token is written once, to a file of its own (0600), never
			// into the script that stays on the host.
			tok := []byte(strings.Repeat("ab", 32))
			if bytes.Count(ks, tok) != 2 || bytes.Contains(ph, tok) || !bytes.Contains(ks, []byte("(umask 077; printf '%s' "+string(tok)+" > /etc/booted/enroll-token)")) ||
				!bytes.Contains(ks, []byte(`data-urlencode = "token=`+string(tok)+`"`)) {
				t.Error("the enrollment token is not in the token file and the failure report's curl config alone")
			}
			if !bytes.Contains(ks, []byte("%onerror\n")) || !bytes.Contains(ks, []byte(`url = "http://192.168.56.1:8077/booted/failed"`)) {
				t.Error("no onerror section with the failure report")
			}
		})
	}
}

// checkSyntax checks every command and option of kickstart ks against the
// release's (cmds), that its sections are closed and root has no password.
func checkSyntax(t *testing.T, ks []byte, name string, cmds map[string]map[string]bool) {
	t.Helper()
	section := ""
	for i, line := range strings.Split(string(ks), "\n") {
		ln := i + 1
		trimmed := strings.TrimSpace(line)
		switch {
		case section != "" && trimmed == "%end":
			section = ""
			continue
		case section != "":
			continue
		case trimmed == "" || strings.HasPrefix(trimmed, "#"):
			continue
		case strings.HasPrefix(trimmed, "%packages"), strings.HasPrefix(trimmed, "%post"), strings.HasPrefix(trimmed, "%onerror"):
			section = trimmed
			if trimmed != "%packages" && trimmed != "%post --log=/root/booted-post.log" && trimmed != "%onerror" {
				t.Errorf("line %d: section header %q", ln, trimmed)
			}
			continue
		}
		f := strings.Fields(trimmed)
		opts, ok := cmds[f[0]]
		if !ok {
			t.Errorf("line %d: %q is not a kickstart command of %s", ln, f[0], name)
			continue
		}
		for _, a := range f[1:] {
			if !strings.HasPrefix(a, "--") {
				continue
			}
			k, v, hasV := strings.Cut(a, "=")
			takes, ok := opts[k]
			if !ok || takes != hasV || (hasV && v == "") {
				t.Errorf("line %d: option %q of %s", ln, a, f[0])
			}
		}
		if f[0] == "rootpw" && len(f) != 2 {
			t.Errorf("line %d: rootpw must be --lock and nothing else: %q", ln, trimmed)
		}
	}
	if section != "" {
		t.Errorf("section %q not closed with %%end", section)
	}
}

// checkPhoneHome checks the phone-home heredoc in b is the script itself.
func checkPhoneHome(t *testing.T, b, ph []byte) {
	t.Helper()
	const open, end = "<<'BOOTED_PHONE_HOME'\n", "BOOTED_PHONE_HOME\n"
	i := bytes.Index(b, []byte(open))
	if i < 0 {
		t.Fatal("no phone-home heredoc")
	}
	j := bytes.Index(b[i+len(open):], []byte(end))
	if j < 0 || !bytes.Equal(b[i+len(open):i+len(open)+j], ph) {
		t.Errorf("the post step's phone-home is not byte-identical to the local hosts' script")
	}
}

// identity.sh takes a clone's name and token from the network into root's
// scripts: only a host name and a token as booted makes them are taken.
// It runs here as the clone runs it, with curl and hostnamectl replaced
// and its /etc/booted in a directory of the test's.
func TestIdentity_TakesOnlyWellFormed(t *testing.T) {
	testutil.RequireCommands(t, "sh", "sed", "grep", "head", "tr")
	ks, _ := render(t, "rhel9")
	_, script, ok := strings.Cut(string(ks), "cat > /etc/booted/identity.sh <<'BOOTED_IDENTITY'\n")
	script, _, ok2 := strings.Cut(script, "BOOTED_IDENTITY\n")
	if !ok || !ok2 {
		t.Fatal("no identity.sh in the kickstart")
	}
	token := strings.Repeat("0f", 32)
	for _, c := range []struct {
		name, answer, wantName string
		taken                  bool
	}{
		{"good", "name=w7\ntoken=" + token + "\n", "w7", true},
		{"a quote in the name", "name=x'; touch /tmp/booted-pwned; '\ntoken=" + token + "\n", "", false},
		{"a command in the name", "name=$(reboot)\ntoken=" + token + "\n", "", false},
		{"an upper-case name", "name=W7\ntoken=" + token + "\n", "", false},
		{"a path for a token", "name=w7\ntoken=../../etc/shadow\n", "", false},
		{"two names", "name=w7\nname=w8;reboot\ntoken=" + token + "\n", "w7", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			etc := filepath.Join(dir, "etc", "booted")
			bin := filepath.Join(dir, "bin")
			os.MkdirAll(etc, 0o700)
			os.MkdirAll(bin, 0o755)
			os.WriteFile(filepath.Join(etc, "phone-home.sh"), []byte("#!/bin/sh\nname='w1'\n"), 0o700)
			os.WriteFile(filepath.Join(bin, "curl"), []byte("#!/bin/sh\nprintf '%s' \"$ANSWER\"\n"), 0o755)
			os.WriteFile(filepath.Join(bin, "hostnamectl"), []byte("#!/bin/sh\necho \"$@\" > "+filepath.Join(dir, "hostname")+"\n"), 0o755)
			s := strings.ReplaceAll(script, "/etc/booted/", etc+"/")
			cmd := exec.Command("sh", "-c", s)
			cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "ANSWER="+c.answer)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("identity.sh: %v %s", err, out)
			}
			ph, _ := os.ReadFile(filepath.Join(etc, "phone-home.sh"))
			tok, tokErr := os.ReadFile(filepath.Join(etc, "enroll-token"))
			host, _ := os.ReadFile(filepath.Join(dir, "hostname"))
			if !c.taken {
				if string(ph) != "#!/bin/sh\nname='w1'\n" || tokErr == nil || len(host) != 0 {
					t.Fatalf("taken: phone-home.sh %q, token %q, hostnamectl %q", ph, tok, host)
				}
				return
			}
			if string(ph) != "#!/bin/sh\nname='"+c.wantName+"'\n" || string(tok) != token || strings.TrimSpace(string(host)) != "set-hostname "+c.wantName {
				t.Fatalf("not taken as %s: phone-home.sh %q, token %q (%v), hostnamectl %q", c.wantName, ph, tok, tokErr, host)
			}
		})
	}
	if _, err := os.Stat("/tmp/booted-pwned"); err == nil {
		os.Remove("/tmp/booted-pwned")
		t.Error("a name ran a command")
	}
}
