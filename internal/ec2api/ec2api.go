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
	"maps"
	"net/http"
	"net/url"
	"slices"
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
	// ClientToken makes the run idempotent (the AWS CLI and SDKs send a
	// fresh one with every run and the same one when they retry): a run
	// with a token the user used before answers that run's instances and
	// starts none (IdempotentParameterMismatch when its parameters differ).
	ClientToken string
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

	// replays are the changes' signatures seen within their window.
	replays Replays
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
	if aerr == nil && !strings.HasPrefix(action, "Describe") && action != "GetConsoleOutput" {
		aerr = s.replays.First(r, now) // a change: once
	}
	if aerr != nil {
		s.fail(w, id, action, "", aerr)
		return
	}
	resp, err := s.serve(r.Context(), user, action, form)
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

// serve checks the request's parameters before anything acts, and
// answers a dry run: the backend makes its checks under DryRun(ctx) and
// changes nothing; where they pass, the answer is DryRunOperation.
func (s *Server) serve(ctx context.Context, user, action string, f url.Values) (any, error) {
	if _, ok := actionParams[action]; !ok {
		return s.dispatch(ctx, user, action, f) // MissingAction or InvalidAction
	}
	if err := checkParams(action, f); err != nil {
		return nil, err
	}
	dry, err := dryRun(f)
	if err != nil {
		return nil, err
	}
	if !dry {
		return s.dispatch(ctx, user, action, f)
	}
	if _, err := s.dispatch(WithDryRun(ctx), user, action, f); err != nil {
		return nil, err
	}
	return nil, errDryRunOK
}

func (s *Server) dispatch(ctx context.Context, user, action string, f url.Values) (any, error) {
	switch action {
	case "RunInstances":
		req := RunRequest{ImageID: f.Get("ImageId"), Type: f.Get("InstanceType"), KeyName: f.Get("KeyName"), ClientToken: f.Get("ClientToken")}
		if req.ImageID == "" {
			return nil, Errorf("MissingParameter", "The request must contain the parameter ImageId")
		}
		if len(req.ClientToken) > 64 || strings.ContainsFunc(req.ClientToken, func(r rune) bool { return r < 0x21 || r > 0x7e }) {
			return nil, Errorf("InvalidParameterValue", "ClientToken: at most 64 printable ASCII characters")
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
		tags, err := tagSpecs(f)
		if err != nil {
			return nil, err
		}
		req.Tags = tags
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
		if err := checkFilters(f, instanceFields, instanceFilters); err != nil {
			return nil, err
		}
		ins, err := s.Backend.Describe(ctx, user, list(f, "InstanceId"))
		if err != nil {
			return nil, err
		}
		ins, err = filter(ctx, ins, f, instanceFields)
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
		tags, err := readTags(f, "Tag")
		if err != nil {
			return nil, err
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
		if err := checkFilters(f, tagFields, tagFilters); err != nil {
			return nil, err
		}
		ins, err := s.Backend.Describe(ctx, user, nil)
		if err != nil {
			return nil, err
		}
		var out []tagItem
		for _, in := range ins {
			for _, t := range toXML(in, 0).Tags {
				out = append(out, tagItem{in.ID, "instance", t.Key, t.Value})
			}
		}
		out, err = filter(ctx, out, f, tagFields)
		if err != nil {
			return nil, err
		}
		return struct {
			T []tagItem `xml:"tagSet>item"`
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
		want := list(f, "ImageId")
		for _, im := range imgs {
			if len(want) == 0 || slices.Contains(want, im.ID) {
				out = append(out, image{im.ID, im.Name, im.Description, "available", "x86_64", "machine", "booted"})
			}
		}
		for _, id := range want {
			if !slices.ContainsFunc(imgs, func(im Image) bool { return im.ID == id }) {
				return nil, Errorf("InvalidAMIID.NotFound", "The image id '[%s]' does not exist", id)
			}
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
		want := list(f, "InstanceType")
		for _, t := range types {
			if len(want) == 0 || slices.Contains(want, t.Name) {
				out = append(out, it{t.Name, t.VCPUs, t.MemoryMiB})
			}
		}
		for _, name := range want {
			if !slices.ContainsFunc(types, func(t InstanceType) bool { return t.Name == name }) {
				return nil, Errorf("InvalidInstanceType", "The instance type '%s' does not exist", name)
			}
		}
		return struct {
			T []it `xml:"instanceTypeSet>item"`
		}{out}, nil
	case "":
		return nil, Errorf("MissingAction", "The request must contain the parameter Action")
	}
	return nil, Errorf("InvalidAction", "The action %s is not valid for this web service (booted answers %s)", action, strings.Join(slices.Sorted(maps.Keys(actionParams)), ", "))
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

// tagSpecs reads TagSpecification.N (ResourceType instance) tags; a tag
// specification of another resource type is refused (booted makes no
// volumes or network interfaces to put them on).
func tagSpecs(f url.Values) (map[string]string, error) {
	tags := map[string]string{}
	for i := 1; ; i++ {
		p := fmt.Sprintf("TagSpecification.%d", i)
		rt, ok := f[p+".ResourceType"]
		if !ok {
			return tags, nil
		}
		if rt[0] != "instance" {
			return nil, Errorf("InvalidParameterValue", "%s.ResourceType: %q; booted tags instances alone (ResourceType=instance)", p, rt[0])
		}
		t, err := readTags(f, p+".Tag")
		if err != nil {
			return nil, err
		}
		maps.Copy(tags, t)
	}
}

// readTags reads PREFIX.N.Key and PREFIX.N.Value, with EC2's bounds: a key
// of 1 to 128 characters not starting with aws:, a value of at most 256.
func readTags(f url.Values, prefix string) (map[string]string, error) {
	tags := map[string]string{}
	for i := 1; ; i++ {
		k, ok := f[fmt.Sprintf("%s.%d.Key", prefix, i)]
		if !ok {
			return tags, nil
		}
		v := f.Get(fmt.Sprintf("%s.%d.Value", prefix, i))
		if n := len([]rune(k[0])); n == 0 || n > 128 || strings.HasPrefix(k[0], "aws:") {
			return nil, Errorf("InvalidParameterValue", "%s.%d.Key %q: 1 to 128 characters, not starting with aws:", prefix, i, k[0])
		}
		if n := len([]rune(v)); n > 256 {
			return nil, Errorf("InvalidParameterValue", "%s.%d.Value: %d characters; at most 256", prefix, i, n)
		}
		tags[k[0]] = v
	}
}

// tagItem is one tag as DescribeTags answers it.
type tagItem struct {
	ID    string `xml:"resourceId"`
	Type  string `xml:"resourceType"`
	Key   string `xml:"key"`
	Value string `xml:"value"`
}

// instanceFields are the values of in that filter name looks at (ok false:
// booted does not filter on name).
func instanceFields(in Instance, name string) (got []string, ok bool) {
	switch {
	case name == "instance-id":
		return []string{in.ID}, true
	case name == "instance-state-name":
		return []string{in.State}, true
	case name == "image-id":
		return []string{in.ImageID}, true
	case name == "key-name":
		return []string{in.KeyName}, true
	case name == "instance-type":
		return []string{in.Type}, true
	case name == "tag-key":
		return slices.Collect(maps.Keys(in.Tags)), true
	case strings.HasPrefix(name, "tag:"):
		if v, ok := in.Tags[strings.TrimPrefix(name, "tag:")]; ok {
			return []string{v}, true
		}
		return nil, true
	}
	return nil, false
}

const instanceFilters = "instance-id, instance-state-name, image-id, key-name, instance-type, tag:KEY, tag-key"

func tagFields(t tagItem, name string) ([]string, bool) {
	switch name {
	case "resource-id":
		return []string{t.ID}, true
	case "resource-type":
		return []string{t.Type}, true
	case "key":
		return []string{t.Key}, true
	case "value":
		return []string{t.Value}, true
	}
	return nil, false
}

const tagFilters = "resource-id, resource-type, key, value"

// filter applies Filter.N.Name / Filter.N.Value.M to items: values of one
// filter are or-ed, filters and-ed; a value is a wildcard pattern (see
// wildcard.go). checkFilters has checked and bounded them; it stops when
// ctx ends.
func filter[T any](ctx context.Context, items []T, f url.Values, fields func(T, string) ([]string, bool)) ([]T, error) {
	for i := 1; ; i++ {
		name, ok := f[fmt.Sprintf("Filter.%d.Name", i)]
		if !ok {
			return items, nil
		}
		var pats [][]token
		for _, v := range list(f, fmt.Sprintf("Filter.%d.Value", i)) {
			pats = append(pats, compile(v))
		}
		var out []T
		for _, it := range items {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			if got, _ := fields(it, name[0]); matchesAny(got, pats) {
				out = append(out, it)
			}
		}
		items = out
	}
}

func matchesAny(got []string, pats [][]token) bool {
	for _, g := range got {
		for _, p := range pats {
			if wildcard(p, g) {
				return true
			}
		}
	}
	return false
}
