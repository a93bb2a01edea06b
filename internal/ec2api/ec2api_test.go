package ec2api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

type secrets map[string][2]string

func (s secrets) Secret(id string) (string, string, error) {
	v, ok := s[id]
	if !ok {
		return "", "", errors.New("unknown")
	}
	return v[0], v[1], nil
}

// backend records every call (with " dry" for a dry run's) and who made
// it; it knows instance i-1 of alice.
type backend struct{ calls []string }

func (b *backend) record(ctx context.Context, what, user string) {
	if DryRun(ctx) {
		what += " dry"
	}
	b.calls = append(b.calls, what+" "+user)
}

func (b *backend) Run(ctx context.Context, user string, r RunRequest) ([]Instance, error) {
	b.record(ctx, "run", user)
	if r.ImageID != "ami-local" {
		return nil, Errorf("InvalidAMIID.NotFound", "The image id '[%s]' does not exist", r.ImageID)
	}
	return []Instance{{ID: "i-2", State: "pending", Reservation: "r-1", Owner: user, Tags: r.Tags}}, nil
}
func (b *backend) Describe(ctx context.Context, user string, ids []string) ([]Instance, error) {
	b.record(ctx, "describe", user)
	if user != "alice" || len(ids) > 0 && ids[0] != "i-1" {
		return nil, Errorf("InvalidInstanceID.NotFound", "The instance IDs '%s' do not exist", strings.Join(ids, ", "))
	}
	return []Instance{{ID: "i-1", State: "running", Reservation: "r-1", Owner: user, Tags: map[string]string{"team": "blue", "long": strings.Repeat("a", 256)}}}, nil
}
func (b *backend) Terminate(ctx context.Context, user string, ids []string) ([]StateChange, error) {
	b.record(ctx, "terminate", user)
	if ids[0] != "i-1" {
		return nil, Errorf("InvalidInstanceID.NotFound", "The instance IDs '%s' do not exist", strings.Join(ids, ", "))
	}
	return []StateChange{{ID: "i-1", Previous: "running", Current: "terminated"}}, nil
}
func (b *backend) CreateKeyPair(ctx context.Context, user, _ string) (KeyPair, error) {
	b.record(ctx, "create-key-pair", user)
	return KeyPair{}, nil
}
func (b *backend) ImportKeyPair(ctx context.Context, user, _ string, _ []byte) (KeyPair, error) {
	b.record(ctx, "import-key-pair", user)
	return KeyPair{}, nil
}
func (b *backend) KeyPairs(ctx context.Context, user string, _ []string) ([]KeyPair, error) {
	b.record(ctx, "key-pairs", user)
	return nil, nil
}
func (b *backend) DeleteKeyPair(ctx context.Context, user, _ string) error {
	b.record(ctx, "delete-key-pair", user)
	return nil
}
func (b *backend) Stop(ctx context.Context, user string, _ []string) ([]StateChange, error) {
	b.record(ctx, "stop", user)
	return nil, nil
}
func (b *backend) Start(ctx context.Context, user string, _ []string) ([]StateChange, error) {
	b.record(ctx, "start", user)
	return nil, nil
}
func (b *backend) Reboot(ctx context.Context, user string, _ []string) error {
	b.record(ctx, "reboot", user)
	return nil
}
func (b *backend) ConsoleOutput(ctx context.Context, user, _ string) ([]byte, error) {
	b.record(ctx, "console", user)
	return nil, nil
}
func (b *backend) CreateTags(ctx context.Context, user string, _ []string, _ map[string]string) error {
	b.record(ctx, "create-tags", user)
	return nil
}
func (b *backend) Images(ctx context.Context, user string) ([]Image, error) {
	b.record(ctx, "images", user)
	return []Image{{ID: "ami-local"}}, nil
}
func (b *backend) InstanceTypes(ctx context.Context, user string) ([]InstanceType, error) {
	b.record(ctx, "instance-types", user)
	return DefaultInstanceTypes, nil
}

const akid, secret = "AKIAAAAAAAAAAAAAAAAA", "s3cr3t"

// call sends form, signed by the AWS SDK's signer with key/secret at t.
func call(t *testing.T, srv *httptest.Server, form url.Values, key, sec string, at time.Time, tamper func(*http.Request)) (int, string) {
	t.Helper()
	body := form.Encode()
	req, _ := http.NewRequest("POST", srv.URL+"/", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	sum := sha256.Sum256([]byte(body))
	if err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: key, SecretAccessKey: sec}, req, hex.EncodeToString(sum[:]), "ec2", "booted", at); err != nil {
		t.Fatal(err)
	}
	if tamper != nil {
		tamper(req)
	}
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// Every refused request is refused before the backend is asked anything:
// a bad signature, a parameter booted does not implement, a list with a
// gap, a bad value. The backend records every call, so a refusal that
// reached it fails the case.
func TestServer_AuthAndErrors(t *testing.T) {
	b := &backend{}
	srv := httptest.NewServer(&Server{Backend: b, Secrets: secrets{akid: {"alice", secret}}})
	defer srv.Close()
	now := time.Now()
	describe := url.Values{"Action": {"DescribeInstances"}, "Version": {"2016-11-15"}}
	type form = url.Values
	for _, c := range []struct {
		name       string
		form       url.Values
		key, sec   string
		at         time.Time
		tamper     func(*http.Request)
		status     int
		code, want string
		reaches    string // the backend call it makes, "" for none
	}{
		{"good", describe, akid, secret, now, nil, 200, "", "<instanceId>i-1</instanceId>", "describe alice"},
		{"wrong secret", describe, akid, "nope", now, nil, 401, "AuthFailure", "", ""},
		{"unknown key", describe, "AKIABBBBBBBBBBBBBBBB", secret, now, nil, 401, "AuthFailure", "", ""},
		{"an hour old", describe, akid, secret, now.Add(-time.Hour), nil, 401, "AuthFailure", "Signature expired", ""},
		{"body changed after signing", describe, akid, secret, now, func(r *http.Request) {
			r.Body = io.NopCloser(strings.NewReader("Action=TerminateInstances&InstanceId.1=i-1"))
			r.ContentLength = int64(len("Action=TerminateInstances&InstanceId.1=i-1"))
		}, 401, "AuthFailure", "", ""},
		{"unsigned", describe, akid, secret, now, func(r *http.Request) { r.Header.Del("Authorization") }, 401, "AuthFailure", "", ""},
		{"unknown id", form{"Action": {"DescribeInstances"}, "InstanceId.1": {"i-9"}}, akid, secret, now, nil, 400, "InvalidInstanceID.NotFound", "i-9", "describe alice"},
		{"bad count", form{"Action": {"RunInstances"}, "ImageId": {"ami-local"}, "MinCount": {"two"}}, akid, secret, now, nil, 400, "InvalidParameterValue", "MinCount", ""},
		{"bad user data", form{"Action": {"RunInstances"}, "ImageId": {"ami-local"}, "UserData": {"%%%"}}, akid, secret, now, nil, 400, "InvalidParameterValue", "UserData", ""},
		{"bad filter", form{"Action": {"DescribeInstances"}, "Filter.1.Name": {"vpc-id"}, "Filter.1.Value.1": {"x"}}, akid, secret, now, nil, 400, "InvalidParameterValue", "vpc-id", ""},
		{"a filter value without its name", form{"Action": {"DescribeInstances"}, "Filter.1.Value.1": {"x"}}, akid, secret, now, nil, 400, "MissingParameter", "Filter.1.Name", ""},
		{"unknown action", form{"Action": {"CreateVpc"}}, akid, secret, now, nil, 400, "InvalidAction", "CreateVpc", ""},
		{"unknown parameter", form{"Action": {"RunInstances"}, "ImageId": {"ami-local"}, "SubnetId": {"subnet-1"}}, akid, secret, now, nil, 400, "UnknownParameter", "SubnetId", ""},
		{"unknown list parameter", form{"Action": {"RunInstances"}, "ImageId": {"ami-local"}, "SecurityGroupId.1": {"sg-1"}}, akid, secret, now, nil, 400, "UnknownParameter", "SecurityGroupId.1", ""},
		{"a parameter of another action", form{"Action": {"StopInstances"}, "InstanceId.1": {"i-1"}, "Force": {"true"}}, akid, secret, now, nil, 400, "UnknownParameter", "Force", ""},
		{"a list with a gap", form{"Action": {"TerminateInstances"}, "InstanceId.1": {"i-1"}, "InstanceId.3": {"i-3"}}, akid, secret, now, nil, 400, "InvalidParameterValue", "InstanceId.3 is given without InstanceId.2", ""},
		{"index zero", form{"Action": {"TerminateInstances"}, "InstanceId.0": {"i-1"}}, akid, secret, now, nil, 400, "InvalidParameterValue", "InstanceId.0", ""},
		{"a tag spec of a volume", form{"Action": {"RunInstances"}, "ImageId": {"ami-local"}, "TagSpecification.1.ResourceType": {"volume"}, "TagSpecification.1.Tag.1.Key": {"a"}}, akid, secret, now, nil, 400, "InvalidParameterValue", "ResourceType", ""},
		{"a tag value too long", form{"Action": {"CreateTags"}, "ResourceId.1": {"i-1"}, "Tag.1.Key": {"a"}, "Tag.1.Value": {strings.Repeat("v", 257)}}, akid, secret, now, nil, 400, "InvalidParameterValue", "at most 256", ""},
		{"a filter value too long", form{"Action": {"DescribeInstances"}, "Filter.1.Name": {"tag:long"}, "Filter.1.Value.1": {strings.Repeat("*a", 129)}}, akid, secret, now, nil, 400, "InvalidParameterValue", "at most 256", ""},
		{"DryRun not a boolean", form{"Action": {"TerminateInstances"}, "InstanceId.1": {"i-1"}, "DryRun": {"maybe"}}, akid, secret, now, nil, 400, "InvalidParameterValue", "DryRun", ""},
		{"tag filter", form{"Action": {"DescribeInstances"}, "Filter.1.Name": {"tag:team"}, "Filter.1.Value.1": {"bl*"}}, akid, secret, now, nil, 200, "", "<value>blue</value>", "describe alice"},
		{"tag filter, no match", form{"Action": {"DescribeInstances"}, "Filter.1.Name": {"tag:team"}, "Filter.1.Value.1": {"red"}}, akid, secret, now, nil, 200, "", "<reservationSet></reservationSet>", "describe alice"},
		{"20 stars against 256 characters", form{"Action": {"DescribeInstances"}, "Filter.1.Name": {"tag:long"}, "Filter.1.Value.1": {strings.Repeat("*a", 20) + "b"}}, akid, secret, now, nil, 200, "", "<reservationSet></reservationSet>", "describe alice"},
		{"describe-tags filtered", form{"Action": {"DescribeTags"}, "Filter.1.Name": {"key"}, "Filter.1.Value.1": {"te?m"}}, akid, secret, now, nil, 200, "", "<key>team</key>", "describe alice"},
		{"dry run that would succeed", form{"Action": {"TerminateInstances"}, "InstanceId.1": {"i-1"}, "DryRun": {"true"}}, akid, secret, now, nil, 412, "DryRunOperation", "Request would have succeeded", "terminate dry alice"},
		{"dry run that would fail", form{"Action": {"TerminateInstances"}, "InstanceId.1": {"i-7"}, "DryRun": {"true"}}, akid, secret, now, nil, 400, "InvalidInstanceID.NotFound", "i-7", "terminate dry alice"},
		{"dry run of a run", form{"Action": {"RunInstances"}, "ImageId": {"ami-local"}, "DryRun": {"true"}}, akid, secret, now, nil, 412, "DryRunOperation", "", "run dry alice"},
		{"DryRun=false acts", form{"Action": {"TerminateInstances"}, "InstanceId.1": {"i-1"}, "DryRun": {"false"}}, akid, secret, now, nil, 200, "", "<name>terminated</name>", "terminate alice"},
	} {
		t.Run(c.name, func(t *testing.T) {
			b.calls = nil
			status, body := call(t, srv, c.form, c.key, c.sec, c.at, c.tamper)
			if status != c.status || !strings.Contains(body, c.want) {
				t.Errorf("%d %s", status, body)
			}
			if c.code != "" {
				var e struct {
					Errors []struct{ Code, Message string } `xml:"Errors>Error"`
				}
				if err := xml.Unmarshal([]byte(body), &e); err != nil || len(e.Errors) != 1 || e.Errors[0].Code != c.code {
					t.Errorf("error %v %+v, want %s", err, e, c.code)
				}
			}
			want := []string{}
			if c.reaches != "" {
				want = []string{c.reaches}
			}
			if got := append([]string{}, b.calls...); strings.Join(got, ";") != strings.Join(want, ";") {
				t.Errorf("the backend was asked %q, want %q", got, want)
			}
		})
	}
}

// The wildcard matcher: EC2's * and ?, backslash escapes, and answers in
// linear time where a backtracking matcher took 33 s (8 stars, 60
// characters).
func TestWildcard(t *testing.T) {
	for _, c := range []struct {
		pattern, s string
		want       bool
	}{
		{"", "", true}, {"", "a", false}, {"*", "", true}, {"*", "anything", true},
		{"a*", "abc", true}, {"*c", "abc", true}, {"a*c", "abbbc", true}, {"a*c", "abcb", false},
		{"a?c", "abc", true}, {"a?c", "ac", false}, {"??", "é!", true}, {"*a*b*", "xxaxxbxx", true},
		{"*a*b", "xxaxxbxxc", false}, {`\*`, `\x`, false}, {`\*`, "*", true}, {`\*`, "*x", false}, {`a\?`, "a?", true}, {`a\?`, "ab", false},
		{"**a", "a", true}, {"blue", "blue", true}, {"blue", "Blue", false},
		{strings.Repeat("*a", 20) + "b", strings.Repeat("a", 256), false},
		{strings.Repeat("*a", 20) + "b", strings.Repeat("a", 255) + "b", true},
	} {
		if got := wildcard(compile(c.pattern), c.s); got != c.want {
			t.Errorf("wildcard(%q, %q) = %v, want %v", c.pattern, c.s, got, c.want)
		}
	}
}

// BenchmarkWildcard is the worst case: 20 stars against a
// 256-character value that does not match (the old matcher did not finish
// 9 stars against 60 characters in 120 s).
func BenchmarkWildcard(b *testing.B) {
	p, s := compile(strings.Repeat("*a", 20)+"b"), strings.Repeat("a", 256)
	for b.Loop() {
		if wildcard(p, s) {
			b.Fatal("matched")
		}
	}
}

// FuzzWildcard checks the linear matcher against a plain recursive one on
// short inputs (where its backtracking costs nothing).
func FuzzWildcard(f *testing.F) {
	for _, s := range [][2]string{{"a*b?c", "axxbyc"}, {"*", ""}, {`\*a`, "*a"}, {"**?", "é"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, s string) {
		if len(pattern) > 12 || len(s) > 24 {
			return
		}
		p := compile(pattern)
		if got, want := wildcard(p, s), slow(p, []rune(s)); got != want {
			t.Errorf("wildcard(%q, %q) = %v, the recursive matcher says %v", pattern, s, got, want)
		}
	})
}

func slow(p []token, s []rune) bool {
	if len(p) == 0 {
		return len(s) == 0
	}
	switch p[0].kind {
	case '*':
		for i := 0; i <= len(s); i++ {
			if slow(p[1:], s[i:]) {
				return true
			}
		}
		return false
	case '?':
		return len(s) > 0 && slow(p[1:], s[1:])
	}
	return len(s) > 0 && s[0] == p[0].r && slow(p[1:], s[1:])
}

// A change captured on the way and sent again within the signature's
// window is refused, and the backend is not asked twice; a client's own
// repeat of a change within its signing second, and the same read twice,
// are served.
func TestServer_ReplayRefused(t *testing.T) {
	b := &backend{}
	srv := httptest.NewServer(&Server{Backend: b, Secrets: secrets{akid: {"alice", secret}}})
	defer srv.Close()
	now := time.Now()
	del := url.Values{"Action": {"DeleteKeyPair"}, "Version": {"2016-11-15"}, "KeyName": {"k1"}}
	for i := 0; i < 2; i++ { // the AWS CLI run twice in one second: one signature
		if code, body := call(t, srv, del, akid, secret, now, nil); code != 200 {
			t.Fatalf("delete-key-pair %d: %d %s", i, code, body)
		}
	}
	at := now.Add(-10 * time.Second) // captured ten seconds ago
	terminate := url.Values{"Action": {"TerminateInstances"}, "Version": {"2016-11-15"}, "InstanceId.1": {"i-1"}}
	var captured *http.Request
	if code, body := call(t, srv, terminate, akid, secret, at, func(r *http.Request) { captured = r.Clone(context.Background()) }); code != 200 {
		t.Fatalf("terminate: %d %s", code, body)
	}
	// the same bytes again, as a listener on the wire would send them
	replay := func() (int, string) {
		body := terminate.Encode()
		r, _ := http.NewRequest("POST", srv.URL+"/", strings.NewReader(body))
		r.Header = captured.Header.Clone()
		res, err := srv.Client().Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		out, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(out)
	}
	if code, body := replay(); code != 401 || !strings.Contains(body, "<Code>AuthFailure</Code>") || !strings.Contains(body, "a replay") {
		t.Fatalf("the replayed terminate: %d %s", code, body)
	}
	if n := strings.Count(strings.Join(b.calls, "\n"), "terminate"); n != 1 {
		t.Fatalf("the backend terminated %d times: %v", n, b.calls)
	}
	describe := url.Values{"Action": {"DescribeInstances"}, "Version": {"2016-11-15"}}
	for i := 0; i < 2; i++ { // a read, replayed later: served
		if code, body := call(t, srv, describe, akid, secret, at, nil); code != 200 {
			t.Fatalf("describe %d: %d %s", i, code, body)
		}
	}
}
