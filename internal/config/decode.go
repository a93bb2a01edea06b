package config

import (
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Decoder collects the problems of decoding one env file, each with its
// field path and line, and remembers which fields could not be decoded so
// that validation does not add false follow-on errors about them.
type Decoder struct {
	errs   []*Error
	broken []string
}

// Errors returns the problems found so far.
func (d *Decoder) Errors() []*Error { return d.errs }

// Add records a problem.
func (d *Decoder) Add(line int, field, format string, args ...any) {
	d.errs = append(d.errs, &Error{Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
}

// Broken reports whether field, or a field inside it or around it, could
// not be decoded.
func (d *Decoder) Broken(field string) bool {
	for _, b := range d.broken {
		if field == b || strings.HasPrefix(b, field+".") || strings.HasPrefix(b, field+"[") ||
			strings.HasPrefix(field, b+".") || strings.HasPrefix(field, b+"[") {
			return true
		}
	}
	return false
}

func (d *Decoder) fail(n *yaml.Node, field, format string, args ...any) {
	d.Add(n.Line, field, format, args...)
	d.broken = append(d.broken, field)
}

// NodeDecoder is implemented by types that decode themselves from a node
// (the provider section, whose sections depend on its type).
type NodeDecoder interface {
	DecodeNode(d *Decoder, n *yaml.Node, field string)
}

// Decode decodes n into v (a pointer), strictly: an unknown or repeated key
// and a value of the wrong type are each reported with their field path
// (roles.workers.min) and line, and decoding goes on with the other fields.
func (d *Decoder) Decode(n *yaml.Node, field string, v any) {
	d.decode(n, field, reflect.ValueOf(v).Elem())
}

var (
	unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()
	nodeDecoderType = reflect.TypeFor[NodeDecoder]()
	nodeType        = reflect.TypeFor[yaml.Node]()
)

func (d *Decoder) decode(n *yaml.Node, field string, v reflect.Value) {
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if v.Type() == nodeType {
		v.Set(reflect.ValueOf(*n))
		return
	}
	if v.Kind() == reflect.Pointer {
		if isNull(n) {
			return
		}
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(n, field, v.Elem())
		return
	}
	if v.CanAddr() {
		switch p := v.Addr(); {
		case p.Type().Implements(nodeDecoderType):
			p.Interface().(NodeDecoder).DecodeNode(d, n, field)
			return
		case p.Type().Implements(unmarshalerType):
			if err := n.Decode(p.Interface()); err != nil {
				d.fail(n, field, "%s", lineRE.ReplaceAllString(err.Error(), ""))
			}
			return
		}
	}
	switch v.Kind() {
	case reflect.Struct:
		d.structure(n, field, v)
	case reflect.Map:
		if isNull(n) {
			return
		}
		if n.Kind != yaml.MappingNode {
			d.fail(n, field, "want a mapping (key: value lines), found %s", kind(n))
			return
		}
		if v.IsNil() {
			v.Set(reflect.MakeMap(v.Type()))
		}
		d.keys(n, field, func(k string, kn, vn *yaml.Node) {
			e := reflect.New(v.Type().Elem()).Elem()
			d.decode(vn, join(field, k), e)
			v.SetMapIndex(reflect.ValueOf(k), e)
		})
	case reflect.Slice:
		if isNull(n) {
			return
		}
		if n.Kind != yaml.SequenceNode {
			d.fail(n, field, "want a list ([a, b] or - lines), found %s", kind(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, c := range n.Content {
			d.decode(c, fmt.Sprintf("%s[%d]", field, i), s.Index(i))
		}
		v.Set(s)
	default:
		d.scalar(n, field, v)
	}
}

// structure decodes a mapping into the fields of struct v by their yaml tags.
func (d *Decoder) structure(n *yaml.Node, field string, v reflect.Value) {
	if isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.fail(n, field, "want a mapping (key: value lines), found %s", kind(n))
		return
	}
	fields := map[string]int{}
	var names []string
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name == "" || name == "-" || !t.Field(i).IsExported() {
			continue
		}
		fields[name] = i
		names = append(names, name)
	}
	sort.Strings(names)
	d.keys(n, field, func(k string, kn, vn *yaml.Node) {
		i, ok := fields[k]
		if !ok {
			where := field
			if where == "" {
				where = "the top level"
			}
			d.Add(kn.Line, "", "field %s is not known in %s (known: %s)", k, where, strings.Join(names, ", "))
			return
		}
		d.decode(vn, join(field, k), v.Field(i))
	})
}

// keys calls fn for each key of mapping n, reporting keys given twice.
func (d *Decoder) keys(n *yaml.Node, field string, fn func(k string, kn, vn *yaml.Node)) {
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := n.Content[i], n.Content[i+1]
		k := kn.Value
		if first, dup := seen[k]; dup {
			d.fail(kn, join(field, k), "given twice (lines %d and %d): keep one", first, kn.Line)
			continue
		}
		seen[k] = kn.Line
		fn(k, kn, vn)
	}
}

// scalar decodes a string, number or boolean.
func (d *Decoder) scalar(n *yaml.Node, field string, v reflect.Value) {
	want := map[reflect.Kind]string{
		reflect.String: "text", reflect.Bool: "true or false",
		reflect.Int: "a whole number", reflect.Int64: "a whole number", reflect.Int32: "a whole number",
		reflect.Uint: "a whole number", reflect.Uint16: "a whole number", reflect.Uint32: "a whole number",
		reflect.Float64: "a number", reflect.Float32: "a number",
	}[v.Kind()]
	if n.Kind != yaml.ScalarNode {
		d.fail(n, field, "want %s, found %s", want, kind(n))
		return
	}
	if isNull(n) {
		return
	}
	if err := n.Decode(v.Addr().Interface()); err != nil {
		d.fail(n, field, "%q is not %s", n.Value, want)
	}
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

func kind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	default:
		return fmt.Sprintf("%q", n.Value)
	}
}

func join(field, key string) string {
	if field == "" {
		return key
	}
	return field + "." + key
}

var lineRE = regexp.MustCompile(`^(yaml: )?line \d+: `)
