// Package ec2api speaks the EC2 Query protocol (form-encoded
// Action=…&Version=…, XML answers in the EC2 namespace, EC2's error codes)
// over a Backend, so that the AWS CLI, boto3 and other EC2 tools drive
// booted's instances. Requests are authenticated with Signature Version 4,
// checked with the AWS SDK for Go's signer.
package ec2api

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Namespace is the XML namespace of EC2's answers.
const Namespace = "http://ec2.amazonaws.com/doc/2016-11-15/"

// Error is an EC2 error: its HTTP status, code and message.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf returns an EC2 error with status 400.
func Errorf(code, format string, a ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Code: code, Message: fmt.Sprintf(format, a...)}
}

// Instance is an instance as EC2 describes it.
type Instance struct {
	ID, ImageID, Type, KeyName, Owner string
	State                             string // pending, running, shutting-down, terminated, stopping, stopped
	Reason                            string // StateReason, when there is one
	Addr                              string
	Launched                          time.Time
	Tags                              map[string]string
	Reservation                       string
	Zone                              string
}

// RunRequest is RunInstances' parameters.
type RunRequest struct {
	ImageID, Type, KeyName string
	Count                  int
	UserData               []byte
	Tags                   map[string]string
}

// KeyPair is a key pair as EC2 describes it; Material only when created.
type KeyPair struct {
	ID, Name, Fingerprint, Type string
	Material                    string
}

// StateChange is what TerminateInstances says of one instance.
type StateChange struct {
	ID, Previous, Current string
}

// Backend does the work for a user (the same functions as the targets).
// Errors that are *Error reach the client as they are; others are
// InternalError.
type Backend interface {
	Run(ctx context.Context, user string, r RunRequest) ([]Instance, error)
	Describe(ctx context.Context, user string, ids []string) ([]Instance, error)
	Terminate(ctx context.Context, user string, ids []string) ([]StateChange, error)
	CreateKeyPair(ctx context.Context, user, name string) (KeyPair, error)
	ImportKeyPair(ctx context.Context, user, name string, material []byte) (KeyPair, error)
	KeyPairs(ctx context.Context, user string, names []string) ([]KeyPair, error)
	DeleteKeyPair(ctx context.Context, user, name string) error
	Stop(ctx context.Context, user string, ids []string) ([]StateChange, error)
	Start(ctx context.Context, user string, ids []string) ([]StateChange, error)
	Reboot(ctx context.Context, user string, ids []string) error
	ConsoleOutput(ctx context.Context, user, id string) ([]byte, error)
	CreateTags(ctx context.Context, user string, ids []string, tags map[string]string) error
	Images(ctx context.Context, user string) ([]Image, error)
	InstanceTypes(ctx context.Context, user string) ([]InstanceType, error)
}

// InstanceType is a size instances may have.
type InstanceType struct {
	Name                     string
	VCPUs, MemoryMiB, DiskGB int
}

// Image is an image instances may run.
type Image struct{ ID, Name, Description string }

// DefaultInstanceTypes are the sizes of an environment whose file names
// none.
var DefaultInstanceTypes = []InstanceType{{"m1.small", 1, 1740, 10}, {"t2.micro", 1, 1024, 8}, {"t2.small", 1, 2048, 8}, {"t2.medium", 2, 4096, 8}}

// Server is the EC2 endpoint.
type Server struct {
	Backend Backend
	Secrets Secrets
	// Log receives one line per request (action, user, outcome).
	Log func(format string, a ...any)
	Now func() time.Time
}

// maxBody bounds a request (user data is at most 16 KiB, base64).
const maxBody = 1 << 20

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := requestID()
	now := time.Now()
	if s.Now != nil {
		now = s.Now()
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil || len(body) > maxBody {
		s.fail(w, id, "", "", Errorf("InvalidParameterValue", "the request is larger than %d bytes", maxBody))
		return
	}
	form, err := url.ParseQuery(string(body))
	if r.Method == http.MethodGet {
		form, err = url.ParseQuery(r.URL.RawQuery)
	}
	if err != nil {
		s.fail(w, id, "", "", Errorf("InvalidParameterValue", "the request is not form-encoded: %v", err))
		return
	}
	action := form.Get("Action")
	user, aerr := Authenticate(r.Context(), r, body, s.Secrets, now, "ec2")
	if aerr != nil {
		s.fail(w, id, action, "", aerr)
		return
	}
	resp, err := s.dispatch(r.Context(), user, action, form)
	if err != nil {
		var e *Error
		if !errors.As(err, &e) {
			e = &Error{Status: http.StatusInternalServerError, Code: "InternalError", Message: err.Error()}
		}
		s.fail(w, id, action, user, e)
		return
	}
	// The answer's fields are children of <ActionResponse>, after requestId.
	var inner bytes.Buffer
	if err := xml.NewEncoder(&inner).EncodeElement(resp, xml.StartElement{Name: xml.Name{Local: "x"}}); err != nil {
		s.fail(w, id, action, user, &Error{Status: http.StatusInternalServerError, Code: "InternalError", Message: err.Error()})
		return
	}
	children := strings.TrimSuffix(strings.TrimPrefix(inner.String(), "<x>"), "</x>")
	s.logf("%s %s by %s: ok", id, action, user)
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	fmt.Fprintf(w, "%s<%sResponse xmlns=\"%s\"><requestId>%s</requestId>%s</%sResponse>", xml.Header, action, Namespace, id, children, action)
}

func (s *Server) logf(format string, a ...any) {
	if s.Log != nil {
		s.Log(format, a...)
	}
}

func (s *Server) fail(w http.ResponseWriter, id, action, user string, e *Error) {
	s.logf("%s %s by %s: %s: %s", id, action, orDash(user), e.Code, e.Message)
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.WriteHeader(e.Status)
	io.WriteString(w, xml.Header)
	xml.NewEncoder(w).Encode(errorResponse{Errors: []xmlError{{Code: e.Code, Message: e.Message}}, RequestID: id})
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func requestID() string {
	b := make([]byte, 16)
	rand.Read(b)
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

type errorResponse struct {
	XMLName   xml.Name   `xml:"Response"`
	Errors    []xmlError `xml:"Errors>Error"`
	RequestID string     `xml:"RequestID"`
}

type xmlError struct {
	Code    string `xml:"Code"`
	Message string `xml:"Message"`
}

// The shapes of the answers (botocore's EC2 model: lists are <item>s).
type (
	xmlState struct {
		Code int    `xml:"code"`
		Name string `xml:"name"`
	}
	xmlTag struct {
		Key   string `xml:"key"`
		Value string `xml:"value"`
	}
	xmlReason struct {
		Code    string `xml:"code"`
		Message string `xml:"message"`
	}
	xmlInstance struct {
		InstanceID   string     `xml:"instanceId"`
		ImageID      string     `xml:"imageId"`
		State        xmlState   `xml:"instanceState"`
		PrivateDNS   string     `xml:"privateDnsName"`
		DNSName      string     `xml:"dnsName"`
		Reason       string     `xml:"reason"`
		KeyName      string     `xml:"keyName,omitempty"`
		LaunchIndex  int        `xml:"amiLaunchIndex"`
		Type         string     `xml:"instanceType"`
		LaunchTime   string     `xml:"launchTime"`
		Zone         string     `xml:"placement>availabilityZone"`
		PrivateIP    string     `xml:"privateIpAddress,omitempty"`
		PublicIP     string     `xml:"ipAddress,omitempty"`
		StateReason  *xmlReason `xml:"stateReason,omitempty"`
		Architecture string     `xml:"architecture"`
		Tags         []xmlTag   `xml:"tagSet>item"`
	}
	xmlReservation struct {
		ReservationID string        `xml:"reservationId"`
		OwnerID       string        `xml:"ownerId"`
		Groups        struct{}      `xml:"groupSet"`
		Instances     []xmlInstance `xml:"instancesSet>item"`
	}
	xmlChange struct {
		InstanceID string   `xml:"instanceId"`
		Current    xmlState `xml:"currentState"`
		Previous   xmlState `xml:"previousState"`
	}
	xmlKeyPair struct {
		KeyPairID   string `xml:"keyPairId"`
		KeyName     string `xml:"keyName"`
		Fingerprint string `xml:"keyFingerprint"`
		KeyType     string `xml:"keyType,omitempty"`
	}
)

// StateCodes are EC2's codes of the instance states.
var StateCodes = map[string]int{"pending": 0, "running": 16, "shutting-down": 32, "terminated": 48, "stopping": 64, "stopped": 80}

func toXML(in Instance, i int) xmlInstance {
	x := xmlInstance{InstanceID: in.ID, ImageID: in.ImageID, State: xmlState{StateCodes[in.State], in.State}, KeyName: in.KeyName,
		LaunchIndex: i, Type: in.Type, LaunchTime: in.Launched.UTC().Format("2006-01-02T15:04:05.000Z"), Zone: in.Zone,
		PrivateIP: in.Addr, PublicIP: in.Addr, Architecture: "x86_64"}
	if in.Reason != "" {
		x.StateReason = &xmlReason{Code: "Server.InternalError", Message: in.Reason}
		x.Reason = in.Reason
	}
	keys := make([]string, 0, len(in.Tags))
	for k := range in.Tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		x.Tags = append(x.Tags, xmlTag{k, in.Tags[k]})
	}
	return x
}

// reservations groups instances by reservation, in order.
func reservations(ins []Instance) []xmlReservation {
	var out []xmlReservation
	idx := map[string]int{}
	for _, in := range ins {
		i, ok := idx[in.Reservation]
		if !ok {
			i = len(out)
			idx[in.Reservation] = i
			out = append(out, xmlReservation{ReservationID: in.Reservation, OwnerID: in.Owner})
		}
		out[i].Instances = append(out[i].Instances, toXML(in, len(out[i].Instances)))
	}
	return out
}

func (s *Server) dispatch(ctx context.Context, user, action string, f url.Values) (any, error) {
	switch action {
	case "RunInstances":
		req := RunRequest{ImageID: f.Get("ImageId"), Type: f.Get("InstanceType"), KeyName: f.Get("KeyName")}
		if req.ImageID == "" {
			return nil, Errorf("MissingParameter", "The request must contain the parameter ImageId")
		}
		lo, err := intParam(f, "MinCount", 1)
		if err != nil {
			return nil, err
		}
		hi, err := intParam(f, "MaxCount", lo)
		if err != nil {
			return nil, err
		}
		if lo < 1 || hi < lo {
			return nil, Errorf("InvalidParameterValue", "MinCount %d and MaxCount %d: give 1 <= MinCount <= MaxCount", lo, hi)
		}
		req.Count = hi
		if ud := f.Get("UserData"); ud != "" {
			b, err := base64.StdEncoding.DecodeString(ud)
			if err != nil {
				return nil, Errorf("InvalidParameterValue", "UserData: not base64: %v", err)
			}
			if len(b) > 16<<10 {
				return nil, Errorf("InvalidParameterValue", "UserData: %d bytes, at most 16384", len(b))
			}
			req.UserData = b
		}
		req.Tags = tagSpecs(f)
		ins, err := s.Backend.Run(ctx, user, req)
		if err != nil {
			return nil, err
		}
		r := reservations(ins)
		if len(r) == 0 {
			return nil, Errorf("InternalError", "no instance was launched")
		}
		return r[0], nil
	case "DescribeInstances":
		ins, err := s.Backend.Describe(ctx, user, list(f, "InstanceId"))
		if err != nil {
			return nil, err
		}
		ins, err = filter(ins, f)
		if err != nil {
			return nil, err
		}
		return struct {
			R []xmlReservation `xml:"reservationSet>item"`
		}{reservations(ins)}, nil
	case "CreateKeyPair":
		kp, err := s.Backend.CreateKeyPair(ctx, user, f.Get("KeyName"))
		if err != nil {
			return nil, err
		}
		return struct {
			xmlKeyPair
			Material string `xml:"keyMaterial"`
		}{xmlKeyPair{kp.ID, kp.Name, kp.Fingerprint, ""}, kp.Material}, nil
	case "ImportKeyPair":
		mat, err := base64.StdEncoding.DecodeString(f.Get("PublicKeyMaterial"))
		if err != nil || len(mat) == 0 {
			return nil, Errorf("InvalidParameterValue", "PublicKeyMaterial: give the public key, base64-encoded")
		}
		kp, err := s.Backend.ImportKeyPair(ctx, user, f.Get("KeyName"), mat)
		if err != nil {
			return nil, err
		}
		return xmlKeyPair{kp.ID, kp.Name, kp.Fingerprint, ""}, nil
	case "DescribeKeyPairs":
		kps, err := s.Backend.KeyPairs(ctx, user, list(f, "KeyName"))
		if err != nil {
			return nil, err
		}
		var out []xmlKeyPair
		for _, kp := range kps {
			out = append(out, xmlKeyPair{kp.ID, kp.Name, kp.Fingerprint, kp.Type})
		}
		return struct {
			K []xmlKeyPair `xml:"keySet>item"`
		}{out}, nil
	case "DeleteKeyPair":
		if err := s.Backend.DeleteKeyPair(ctx, user, f.Get("KeyName")); err != nil {
			return nil, err
		}
		return struct {
			R bool `xml:"return"`
		}{true}, nil
	case "StopInstances", "StartInstances", "TerminateInstances":
		ids, err := instanceIDs(f)
		if err != nil {
			return nil, err
		}
		do := map[string]func(context.Context, string, []string) ([]StateChange, error){
			"StopInstances": s.Backend.Stop, "StartInstances": s.Backend.Start, "TerminateInstances": s.Backend.Terminate}[action]
		ch, err := do(ctx, user, ids)
		if err != nil {
			return nil, err
		}
		var out []xmlChange
		for _, c := range ch {
			out = append(out, xmlChange{c.ID, xmlState{StateCodes[c.Current], c.Current}, xmlState{StateCodes[c.Previous], c.Previous}})
		}
		return struct {
			I []xmlChange `xml:"instancesSet>item"`
		}{out}, nil
	case "RebootInstances":
		ids, err := instanceIDs(f)
		if err != nil {
			return nil, err
		}
		if err := s.Backend.Reboot(ctx, user, ids); err != nil {
			return nil, err
		}
		return struct {
			R bool `xml:"return"`
		}{true}, nil
	case "GetConsoleOutput":
		id := f.Get("InstanceId")
		out, err := s.Backend.ConsoleOutput(ctx, user, id)
		if err != nil {
			return nil, err
		}
		return struct {
			ID     string `xml:"instanceId"`
			Time   string `xml:"timestamp"`
			Output string `xml:"output"`
		}{id, time.Now().UTC().Format("2006-01-02T15:04:05.000Z"), base64.StdEncoding.EncodeToString(out)}, nil
	case "CreateTags":
		ids := list(f, "ResourceId")
		tags := map[string]string{}
		for i := 1; ; i++ {
			k, ok := f[fmt.Sprintf("Tag.%d.Key", i)]
			if !ok {
				break
			}
			if k[0] == "" || len(k[0]) > 128 || strings.HasPrefix(k[0], "aws:") {
				return nil, Errorf("InvalidParameterValue", "Tag.%d.Key %q: 1 to 128 characters, not starting with aws:", i, k[0])
			}
			tags[k[0]] = f.Get(fmt.Sprintf("Tag.%d.Value", i))
		}
		if len(ids) == 0 || len(tags) == 0 {
			return nil, Errorf("MissingParameter", "The request must contain ResourceId.N and Tag.N.Key")
		}
		if err := s.Backend.CreateTags(ctx, user, ids, tags); err != nil {
			return nil, err
		}
		return struct {
			R bool `xml:"return"`
		}{true}, nil
	case "DescribeTags":
		ins, err := s.Backend.Describe(ctx, user, nil)
		if err != nil {
			return nil, err
		}
		type tag struct {
			ID    string `xml:"resourceId"`
			Type  string `xml:"resourceType"`
			Key   string `xml:"key"`
			Value string `xml:"value"`
		}
		var out []tag
		for _, in := range ins {
			for _, t := range toXML(in, 0).Tags {
				out = append(out, tag{in.ID, "instance", t.Key, t.Value})
			}
		}
		return struct {
			T []tag `xml:"tagSet>item"`
		}{out}, nil
	case "DescribeImages":
		imgs, err := s.Backend.Images(ctx, user)
		if err != nil {
			return nil, err
		}
		type image struct {
			ID    string `xml:"imageId"`
			Name  string `xml:"name"`
			Desc  string `xml:"description"`
			State string `xml:"imageState"`
			Arch  string `xml:"architecture"`
			Type  string `xml:"imageType"`
			Owner string `xml:"imageOwnerAlias"`
		}
		var out []image
		for _, im := range imgs {
			out = append(out, image{im.ID, im.Name, im.Description, "available", "x86_64", "machine", "booted"})
		}
		return struct {
			I []image `xml:"imagesSet>item"`
		}{out}, nil
	case "DescribeInstanceTypes":
		type it struct {
			Name   string `xml:"instanceType"`
			VCPUs  int    `xml:"vCpuInfo>defaultVCpus"`
			Memory int    `xml:"memoryInfo>sizeInMiB"`
		}
		types, err := s.Backend.InstanceTypes(ctx, user)
		if err != nil {
			return nil, err
		}
		var out []it
		for _, t := range types {
			out = append(out, it{t.Name, t.VCPUs, t.MemoryMiB})
		}
		return struct {
			T []it `xml:"instanceTypeSet>item"`
		}{out}, nil
	case "":
		return nil, Errorf("MissingAction", "The request must contain the parameter Action")
	}
	return nil, Errorf("InvalidAction", "The action %s is not valid for this web service (booted answers RunInstances, DescribeInstances, TerminateInstances, StopInstances, StartInstances, RebootInstances, GetConsoleOutput, CreateTags, DescribeTags, DescribeImages, DescribeInstanceTypes, CreateKeyPair, ImportKeyPair, DescribeKeyPairs, DeleteKeyPair)", action)
}

func intParam(f url.Values, name string, def int) (int, error) {
	v := f.Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, Errorf("InvalidParameterValue", "%s: %q is not a whole number", name, v)
	}
	return n, nil
}

// instanceIDs returns InstanceId.N, which an action needs.
func instanceIDs(f url.Values) ([]string, error) {
	ids := list(f, "InstanceId")
	if len(ids) == 0 {
		return nil, Errorf("MissingParameter", "The request must contain the parameter InstanceId")
	}
	return ids, nil
}

// list returns NAME.1, NAME.2, … in order.
func list(f url.Values, name string) []string {
	var out []string
	for i := 1; ; i++ {
		v, ok := f[fmt.Sprintf("%s.%d", name, i)]
		if !ok {
			return out
		}
		out = append(out, v[0])
	}
}

// tagSpecs reads TagSpecification.N (ResourceType instance) tags.
func tagSpecs(f url.Values) map[string]string {
	tags := map[string]string{}
	for i := 1; ; i++ {
		p := fmt.Sprintf("TagSpecification.%d.", i)
		if _, ok := f[p+"ResourceType"]; !ok {
			break
		}
		if f.Get(p+"ResourceType") != "instance" {
			continue
		}
		for j := 1; ; j++ {
			k, ok := f[fmt.Sprintf("%sTag.%d.Key", p, j)]
			if !ok {
				break
			}
			tags[k[0]] = f.Get(fmt.Sprintf("%sTag.%d.Value", p, j))
		}
	}
	return tags
}

// filter applies Filter.N.Name / Filter.N.Value.M (instance-id,
// instance-state-name, tag:KEY, tag-key); values of one filter are or-ed,
// filters and-ed.
func filter(ins []Instance, f url.Values) ([]Instance, error) {
	for i := 1; ; i++ {
		name, ok := f[fmt.Sprintf("Filter.%d.Name", i)]
		if !ok {
			return ins, nil
		}
		vals := list(f, fmt.Sprintf("Filter.%d.Value", i))
		var out []Instance
		for _, in := range ins {
			var got []string
			switch n := name[0]; {
			case n == "instance-id":
				got = []string{in.ID}
			case n == "instance-state-name":
				got = []string{in.State}
			case n == "image-id":
				got = []string{in.ImageID}
			case n == "key-name":
				got = []string{in.KeyName}
			case n == "tag-key":
				for k := range in.Tags {
					got = append(got, k)
				}
			case strings.HasPrefix(n, "tag:"):
				if v, ok := in.Tags[strings.TrimPrefix(n, "tag:")]; ok {
					got = []string{v}
				}
			default:
				return nil, Errorf("InvalidParameterValue", "The filter '%s' is invalid (booted filters on instance-id, instance-state-name, image-id, key-name, tag:KEY, tag-key)", n)
			}
			if matches(got, vals) {
				out = append(out, in)
			}
		}
		ins = out
	}
}

func matches(got, want []string) bool {
	for _, g := range got {
		for _, w := range want {
			if ok, _ := pathMatch(w, g); ok {
				return true
			}
		}
	}
	return false
}

// pathMatch is EC2's filter wildcard match: * and ?.
func pathMatch(pattern, s string) (bool, error) {
	if pattern == "" {
		return s == "", nil
	}
	switch pattern[0] {
	case '*':
		for i := 0; i <= len(s); i++ {
			if ok, _ := pathMatch(pattern[1:], s[i:]); ok {
				return true, nil
			}
		}
		return false, nil
	case '?':
		return s != "" && mustMatch(pattern[1:], s[1:]), nil
	}
	return s != "" && s[0] == pattern[0] && mustMatch(pattern[1:], s[1:]), nil
}

func mustMatch(p, s string) bool { ok, _ := pathMatch(p, s); return ok }
