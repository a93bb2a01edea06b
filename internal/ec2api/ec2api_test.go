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

// backend records who asked what; it knows instance i-1 of alice.
type backend struct{ calls []string }

func (b *backend) Run(_ context.Context, user string, r RunRequest) ([]Instance, error) {
	b.calls = append(b.calls, "run "+user)
	return []Instance{{ID: "i-2", State: "pending", Reservation: "r-1", Owner: user, Tags: r.Tags}}, nil
}
func (b *backend) Describe(_ context.Context, user string, ids []string) ([]Instance, error) {
	if user != "alice" || len(ids) > 0 && ids[0] != "i-1" {
		return nil, Errorf("InvalidInstanceID.NotFound", "The instance IDs '%s' do not exist", strings.Join(ids, ", "))
	}
	return []Instance{{ID: "i-1", State: "running", Reservation: "r-1", Owner: user, Tags: map[string]string{"team": "blue"}}}, nil
}
func (b *backend) Terminate(context.Context, string, []string) ([]StateChange, error) {
	return nil, nil
}
func (b *backend) CreateKeyPair(context.Context, string, string) (KeyPair, error) {
	return KeyPair{}, nil
}
func (b *backend) ImportKeyPair(context.Context, string, string, []byte) (KeyPair, error) {
	return KeyPair{}, nil
}
func (b *backend) KeyPairs(context.Context, string, []string) ([]KeyPair, error) { return nil, nil }
func (b *backend) DeleteKeyPair(context.Context, string, string) error           { return nil }

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

func TestServer_AuthAndErrors(t *testing.T) {
	b := &backend{}
	srv := httptest.NewServer(&Server{Backend: b, Secrets: secrets{akid: {"alice", secret}}})
	defer srv.Close()
	now := time.Now()
	describe := url.Values{"Action": {"DescribeInstances"}, "Version": {"2016-11-15"}}
	for _, c := range []struct {
		name       string
		form       url.Values
		key, sec   string
		at         time.Time
		tamper     func(*http.Request)
		status     int
		code, want string
	}{
		{"good", describe, akid, secret, now, nil, 200, "", "<instanceId>i-1</instanceId>"},
		{"wrong secret", describe, akid, "nope", now, nil, 401, "AuthFailure", ""},
		{"unknown key", describe, "AKIABBBBBBBBBBBBBBBB", secret, now, nil, 401, "AuthFailure", ""},
		{"an hour old", describe, akid, secret, now.Add(-time.Hour), nil, 401, "AuthFailure", "Signature expired"},
		{"body changed after signing", describe, akid, secret, now, func(r *http.Request) {
			r.Body = io.NopCloser(strings.NewReader("Action=TerminateInstances&InstanceId.1=i-1"))
			r.ContentLength = int64(len("Action=TerminateInstances&InstanceId.1=i-1"))
		}, 401, "AuthFailure", ""},
		{"unsigned", describe, akid, secret, now, func(r *http.Request) { r.Header.Del("Authorization") }, 401, "AuthFailure", ""},
		{"unknown id", url.Values{"Action": {"DescribeInstances"}, "InstanceId.1": {"i-9"}}, akid, secret, now, nil, 400, "InvalidInstanceID.NotFound", "i-9"},
		{"bad count", url.Values{"Action": {"RunInstances"}, "ImageId": {"ami-local"}, "MinCount": {"two"}}, akid, secret, now, nil, 400, "InvalidParameterValue", "MinCount"},
		{"bad user data", url.Values{"Action": {"RunInstances"}, "ImageId": {"ami-local"}, "UserData": {"%%%"}}, akid, secret, now, nil, 400, "InvalidParameterValue", "UserData"},
		{"bad filter", url.Values{"Action": {"DescribeInstances"}, "Filter.1.Name": {"vpc-id"}, "Filter.1.Value.1": {"x"}}, akid, secret, now, nil, 400, "InvalidParameterValue", "vpc-id"},
		{"unknown action", url.Values{"Action": {"CreateVpc"}}, akid, secret, now, nil, 400, "InvalidAction", "CreateVpc"},
		{"tag filter", url.Values{"Action": {"DescribeInstances"}, "Filter.1.Name": {"tag:team"}, "Filter.1.Value.1": {"bl*"}}, akid, secret, now, nil, 200, "", "<value>blue</value>"},
		{"tag filter, no match", url.Values{"Action": {"DescribeInstances"}, "Filter.1.Name": {"tag:team"}, "Filter.1.Value.1": {"red"}}, akid, secret, now, nil, 200, "", "<reservationSet></reservationSet>"},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := len(b.calls)
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
			if c.status == 401 && len(b.calls) != before {
				t.Error("a refused request reached the backend")
			}
		})
	}
}

func (b *backend) Stop(context.Context, string, []string) ([]StateChange, error)  { return nil, nil }
func (b *backend) Start(context.Context, string, []string) ([]StateChange, error) { return nil, nil }
func (b *backend) Reboot(context.Context, string, []string) error                 { return nil }
func (b *backend) ConsoleOutput(context.Context, string, string) ([]byte, error)  { return nil, nil }
func (b *backend) CreateTags(context.Context, string, []string, map[string]string) error {
	return nil
}
func (b *backend) Images(context.Context, string) ([]Image, error) { return nil, nil }
func (b *backend) InstanceTypes(context.Context, string) ([]InstanceType, error) {
	return DefaultInstanceTypes, nil
}
