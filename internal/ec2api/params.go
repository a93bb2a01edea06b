package ec2api

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// actionParams are the parameters each action takes, in the EC2 model's
// names; N stands for a list's index (1, 2, …). A request with any other
// parameter is refused, naming it: a parameter booted does not implement
// is never dropped in silence (a user who asks for a subnet or a security
// group must not get an instance without it).
var actionParams = map[string][]string{
	"RunInstances": {"ImageId", "InstanceType", "KeyName", "MinCount", "MaxCount", "UserData", "ClientToken",
		"TagSpecification.N.ResourceType", "TagSpecification.N.Tag.N.Key", "TagSpecification.N.Tag.N.Value"},
	"DescribeInstances":     {"InstanceId.N", "Filter.N.Name", "Filter.N.Value.N"},
	"TerminateInstances":    {"InstanceId.N"},
	"StopInstances":         {"InstanceId.N"},
	"StartInstances":        {"InstanceId.N"},
	"RebootInstances":       {"InstanceId.N"},
	"GetConsoleOutput":      {"InstanceId", "Latest"},
	"CreateTags":            {"ResourceId.N", "Tag.N.Key", "Tag.N.Value"},
	"DescribeTags":          {"Filter.N.Name", "Filter.N.Value.N"},
	"DescribeImages":        {"ImageId.N"},
	"DescribeInstanceTypes": {"InstanceType.N"},
	"CreateKeyPair":         {"KeyName"},
	"ImportKeyPair":         {"KeyName", "PublicKeyMaterial"},
	"DescribeKeyPairs":      {"KeyName.N"},
	"DeleteKeyPair":         {"KeyName"},
}

// commonParams every action takes.
var commonParams = []string{"Action", "Version", "DryRun"}

// maxIndex bounds a list's index (InstanceId.N, Filter.N.Value.M, …).
const maxIndex = 1000

// checkParams refuses a parameter action does not take, a list index that
// is not a whole number from 1 to maxIndex, and a list with a gap (its
// later items would be read as absent).
func checkParams(action string, f url.Values) *Error {
	allowed := actionParams[action]
	seen := map[string][]int{} // a list (its name up to the index) → the indexes given
	names := make([]string, 0, len(f))
	for name := range f {
		names = append(names, name)
	}
	slices.Sort(names) // the first bad one is the same every time
	for _, name := range names {
		if slices.Contains(commonParams, name) {
			continue
		}
		pattern, lists, err := shape(name)
		if err != nil {
			return err
		}
		if !slices.Contains(allowed, pattern) {
			takes := "no parameters"
			if len(allowed) > 0 {
				takes = strings.Join(allowed, ", ")
			}
			return Errorf("UnknownParameter", "The parameter %s is not recognized: booted's %s takes %s (and DryRun)", name, action, takes)
		}
		for list, i := range lists {
			seen[list] = append(seen[list], i)
		}
	}
	lists := make([]string, 0, len(seen))
	for l := range seen {
		lists = append(lists, l)
	}
	slices.Sort(lists)
	for _, l := range lists {
		idx := slices.Compact(slices.Sorted(slices.Values(seen[l])))
		for want, got := range idx {
			if got != want+1 {
				return Errorf("InvalidParameterValue", "%s.%d is given without %s.%d: number a list's items from 1 without gaps", l, got, l, want+1)
			}
		}
	}
	return nil
}

// shape returns name with each index replaced by N (Filter.2.Value.3 →
// Filter.N.Value.N), and each list it is an item of with its index
// (Filter → 2, Filter.2.Value → 3).
func shape(name string) (string, map[string]int, *Error) {
	parts := strings.Split(name, ".")
	lists := map[string]int{}
	for i, p := range parts {
		if p == "" || p[0] < '0' || p[0] > '9' {
			continue
		}
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > maxIndex || p[0] == '0' {
			return "", nil, Errorf("InvalidParameterValue", "%s: a list's index is a whole number from 1 to %d", name, maxIndex)
		}
		lists[strings.Join(parts[:i], ".")] = n
		parts[i] = "N"
	}
	return strings.Join(parts, "."), lists, nil
}

// dryRunKey marks the context of a request sent with DryRun=true.
type dryRunKey struct{}

// DryRun reports whether ctx is a DryRun=true request's. The backend then
// makes every check the action makes and changes nothing: it returns nil
// where the action would have succeeded (the client is told
// DryRunOperation), or the action's own error.
func DryRun(ctx context.Context) bool {
	v, _ := ctx.Value(dryRunKey{}).(bool)
	return v
}

// WithDryRun returns ctx marked as a DryRun=true request's.
func WithDryRun(ctx context.Context) context.Context {
	return context.WithValue(ctx, dryRunKey{}, true)
}

// dryRun reads the DryRun parameter.
func dryRun(f url.Values) (bool, *Error) {
	switch v := strings.ToLower(f.Get("DryRun")); v {
	case "", "false":
		return false, nil
	case "true":
		return true, nil
	default:
		return false, Errorf("InvalidParameterValue", "DryRun: %q is not true or false", f.Get("DryRun"))
	}
}

// errDryRunOK is EC2's answer to a dry run that would have succeeded.
var errDryRunOK = &Error{Status: 412, Code: "DryRunOperation", Message: "Request would have succeeded, but DryRun flag is set."}

// checkFilters refuses, before anything is looked up, a filter name
// fields does not know (names lists those it knows), a value without a
// name, and filters past the bounds.
func checkFilters[T any](f url.Values, fields func(T, string) ([]string, bool), names string) *Error {
	values := 0
	for i := 1; ; i++ {
		name, ok := f[fmt.Sprintf("Filter.%d.Name", i)]
		if !ok {
			if _, stray := f[fmt.Sprintf("Filter.%d.Value.1", i)]; stray {
				return Errorf("MissingParameter", "Filter.%d.Value.1 is given without Filter.%d.Name", i, i)
			}
			if i-1 > maxFilters {
				return Errorf("FilterLimitExceeded", "%d filters: at most %d", i-1, maxFilters)
			}
			break
		}
		var zero T
		if _, known := fields(zero, name[0]); !known {
			return Errorf("InvalidParameterValue", "The filter '%s' is invalid (booted filters on %s)", name[0], names)
		}
		for _, v := range list(f, fmt.Sprintf("Filter.%d.Value", i)) {
			values++
			if n := len([]rune(v)); n > maxPatternLen {
				return Errorf("InvalidParameterValue", "Filter.%d.Value: a value of %d characters; at most %d", i, n, maxPatternLen)
			}
		}
	}
	if values > maxFilterValues {
		return Errorf("FilterLimitExceeded", "%d filter values: at most %d in all", values, maxFilterValues)
	}
	return nil
}
