// Package query is booted's host expression language (clusto's, made
// small): terms FIELD:VALUE joined by and, or, not and parentheses, e.g.
//
//	role:workers and not state:failed and attr:rack=r1
//
// Fields: name, role, pool, class, state, provider, connected (globs on the
// value, as the shell's: * ? [..]), attr:KEY (the host has KEY) and
// attr:KEY=VALUE (one of KEY's values matches the glob VALUE). A bare word
// is a shorthand: a comma list names hosts (w1,w2), one word is a role or a
// host name (workers), as targets took them before the language. Parse and
// Match are pure: no inventory, no I/O.
package query

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"strconv"
	"strings"
)

// Subject is what an expression is matched against: one host.
type Subject struct {
	Name, Role, State, Provider string
	Pools                       []string
	Classes                     []string
	// Attrs are the host's attributes, each with its values.
	Attrs map[string][]string
	// Connected names what the host is connected to (bridge, switch,
	// BMC network), from its locate data.
	Connected []string
}

// Expr is a parsed expression.
type Expr interface {
	Match(s *Subject) bool
	String() string
}

// Fields are the fields a term may name.
var Fields = []string{"name", "role", "pool", "class", "state", "provider", "attr", "connected"}

// SyntaxError is a refused expression: where, and what was expected there.
type SyntaxError struct {
	Input string
	Pos   int // byte offset in Input
	Msg   string
}

// Error shows the expression with a caret under the position.
func (e *SyntaxError) Error() string {
	return fmt.Sprintf("query: %s at position %d:\n  %s\n  %s^", e.Msg, e.Pos+1, e.Input, strings.Repeat(" ", e.Pos))
}

// Parse parses an expression; an error is a *SyntaxError.
func Parse(input string) (Expr, error) {
	toks, err := lex(input)
	if err != nil {
		return nil, err
	}
	p := &parser{in: input, toks: toks}
	if len(toks) == 1 { // only the end
		return nil, &SyntaxError{Input: input, Pos: 0, Msg: "empty expression: expected a term such as role:workers"}
	}
	e, err := p.or()
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tEnd {
		return nil, p.fail(t, "expected and, or, or the end, got %q%s", t.text, p.hint())
	}
	return e, nil
}

// hint names the bare word before the current token, if any: a misspelt
// keyword ("nto") reads as a role or host name, and the error comes a word
// later.
func (p *parser) hint() string {
	if p.i == 0 {
		return ""
	}
	prev := p.toks[p.i-1]
	if prev.kind != tWord || strings.Contains(prev.text, ":") {
		return ""
	}
	return fmt.Sprintf(" (%q before it reads as a role or host name: is it a misspelt and, or, not?)", prev.text)
}

type kind int

const (
	tWord kind = iota
	tLParen
	tRParen
	tEnd
)

type token struct {
	kind kind
	text string
	pos  int
}

func lex(in string) ([]token, error) {
	var out []token
	i := 0
	for i < len(in) {
		c := in[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			i++
		case c == '(':
			out = append(out, token{tLParen, "(", i})
			i++
		case c == ')':
			out = append(out, token{tRParen, ")", i})
			i++
		default:
			start := i
			var b strings.Builder
			for i < len(in) && !strings.ContainsRune(" \t\n()", rune(in[i])) {
				if in[i] == '"' { // a quoted part: spaces and parentheses kept
					j := strings.IndexByte(in[i+1:], '"')
					if j < 0 {
						return nil, &SyntaxError{Input: in, Pos: i, Msg: "unterminated quote: expected a closing \""}
					}
					b.WriteString(in[i+1 : i+1+j])
					i += j + 2
					continue
				}
				b.WriteByte(in[i])
				i++
			}
			out = append(out, token{tWord, b.String(), start})
		}
	}
	return append(out, token{tEnd, "", len(in)}), nil
}

type parser struct {
	in   string
	toks []token
	i    int
}

func (p *parser) peek() token { return p.toks[p.i] }
func (p *parser) next() token { t := p.toks[p.i]; p.i++; return t }

func (p *parser) fail(t token, format string, args ...any) error {
	return &SyntaxError{Input: p.in, Pos: t.pos, Msg: fmt.Sprintf(format, args...)}
}

func keyword(t token, w string) bool { return t.kind == tWord && strings.EqualFold(t.text, w) }

func (p *parser) or() (Expr, error) {
	l, err := p.and()
	if err != nil {
		return nil, err
	}
	for keyword(p.peek(), "or") {
		p.next()
		r, err := p.and()
		if err != nil {
			return nil, err
		}
		l = &or{l, r}
	}
	return l, nil
}

func (p *parser) and() (Expr, error) {
	l, err := p.unary()
	if err != nil {
		return nil, err
	}
	for keyword(p.peek(), "and") {
		p.next()
		r, err := p.unary()
		if err != nil {
			return nil, err
		}
		l = &and{l, r}
	}
	return l, nil
}

func (p *parser) unary() (Expr, error) {
	if keyword(p.peek(), "not") {
		p.next()
		e, err := p.unary()
		if err != nil {
			return nil, err
		}
		return &not{e}, nil
	}
	return p.primary()
}

func (p *parser) primary() (Expr, error) {
	t := p.next()
	switch {
	case t.kind == tLParen:
		e, err := p.or()
		if err != nil {
			return nil, err
		}
		if c := p.next(); c.kind != tRParen {
			return nil, p.fail(c, "expected ) to close the ( at position %d, got %s%s", t.pos+1, describe(c), p.hint())
		}
		return e, nil
	case t.kind == tWord && !keyword(t, "and") && !keyword(t, "or") && !keyword(t, "not"):
		return p.term(t)
	}
	return nil, p.fail(t, "expected a term such as role:workers, not or (, got %s", describe(t))
}

func describe(t token) string {
	if t.kind == tEnd {
		return "the end"
	}
	return fmt.Sprintf("%q", t.text)
}

func (p *parser) term(t token) (Expr, error) {
	field, value, ok := strings.Cut(t.text, ":")
	if !ok { // the shorthands of ENV/ROLE and ENV/a,b
		if strings.Contains(t.text, ",") {
			var e Expr
			for _, n := range strings.Split(t.text, ",") {
				if n == "" {
					continue
				}
				if err := checkGlob(n); err != nil {
					return nil, p.fail(t, "host name %q: %v", n, err)
				}
				var x Expr = &term{field: "name", value: n}
				if e == nil {
					e = x
				} else {
					e = &or{e, x}
				}
			}
			if e == nil {
				return nil, p.fail(t, "expected host names separated by commas, got %q", t.text)
			}
			return e, nil
		}
		if err := checkGlob(t.text); err != nil {
			return nil, p.fail(t, "%q: %v", t.text, err)
		}
		return &or{&term{field: "role", value: t.text}, &term{field: "name", value: t.text}}, nil
	}
	field = strings.ToLower(field)
	known := false
	for _, f := range Fields {
		known = known || f == field
	}
	if !known {
		return nil, p.fail(t, "unknown field %q: expected one of %s", field, strings.Join(Fields, ", "))
	}
	valuePos := token{pos: t.pos + len(field) + 1}
	if value == "" {
		return nil, p.fail(valuePos, "expected a value after %s: (a glob such as w*)", field)
	}
	x := &term{field: field, value: value}
	if field == "attr" {
		k, op, v := value, "", ""
		if i := strings.IndexAny(value, "<>!="); i >= 0 {
			k, op = value[:i], value[i:i+1]
			if i+1 < len(value) && value[i+1] == '=' && op != "=" {
				op += "="
			}
			v = value[i+len(op):]
			if op == "!" {
				return nil, p.fail(token{pos: valuePos.pos + i}, "expected != (not equal), got a lone !")
			}
		}
		if k == "" {
			return nil, p.fail(valuePos, "expected an attribute name: attr:KEY, attr:KEY=VALUE, attr:KEY!=VALUE or attr:KEY>=NUMBER (> < <= too)")
		}
		x.key, x.op, x.value = k, op, v
		if op != "" && op != "=" && op != "!=" {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return nil, p.fail(token{pos: valuePos.pos + len(k) + len(op)}, "expected a number after %s, got %q", op, v)
			}
			x.num = n
			return x, nil
		}
	}
	if err := checkGlob(x.value); err != nil {
		return nil, p.fail(valuePos, "bad glob %q: %v", x.value, err)
	}
	return x, nil
}

func checkGlob(g string) error {
	if _, err := path.Match(g, ""); err != nil {
		return fmt.Errorf("%w (escape [ ] * ? with \\)", err)
	}
	return nil
}

type term struct {
	field, key, value string
	// op is attr's comparison: "" (has the key), = != (globs), or
	// >= <= > < (numbers, against num).
	op  string
	num float64
}

func glob(pattern, s string) bool {
	ok, _ := path.Match(pattern, s) // checked at parse time
	return ok
}

func anyGlob(pattern string, ss []string) bool {
	for _, s := range ss {
		if glob(pattern, s) {
			return true
		}
	}
	return false
}

func (t *term) Match(s *Subject) bool {
	switch t.field {
	case "name":
		return glob(t.value, s.Name)
	case "role":
		return glob(t.value, s.Role)
	case "state":
		return glob(t.value, s.State)
	case "provider":
		return glob(t.value, s.Provider)
	case "pool":
		return anyGlob(t.value, s.Pools)
	case "class":
		return anyGlob(t.value, s.Classes)
	case "connected":
		return anyGlob(t.value, s.Connected)
	case "attr":
		vs, ok := s.Attrs[t.key]
		switch t.op {
		case "":
			return ok
		case "=":
			return anyGlob(t.value, vs)
		case "!=":
			return ok && !anyGlob(t.value, vs)
		}
		for _, v := range vs {
			n, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				continue
			}
			if (t.op == ">=" && n >= t.num) || (t.op == "<=" && n <= t.num) || (t.op == ">" && n > t.num) || (t.op == "<" && n < t.num) {
				return true
			}
		}
		return false
	}
	return false
}

func (t *term) String() string {
	if t.field == "attr" {
		return "attr:" + t.key + t.op + t.value
	}
	return t.field + ":" + t.value
}

type and struct{ l, r Expr }

func (e *and) Match(s *Subject) bool { return e.l.Match(s) && e.r.Match(s) }
func (e *and) String() string        { return "(" + e.l.String() + " and " + e.r.String() + ")" }

type or struct{ l, r Expr }

func (e *or) Match(s *Subject) bool { return e.l.Match(s) || e.r.Match(s) }
func (e *or) String() string        { return "(" + e.l.String() + " or " + e.r.String() + ")" }

type not struct{ e Expr }

func (e *not) Match(s *Subject) bool { return !e.e.Match(s) }
func (e *not) String() string        { return "not " + e.e.String() }

var conditionRE = regexp.MustCompile(`^\s*([A-Za-z_][A-Za-z0-9_.-]*)\s*(>=|<=|!=|==|=|>|<)\s*(\S+)\s*$`)

// ParseCondition parses a class's condition (an env file's classes:
// bigmem: memory_mb >= 2048): the short form KEY OP VALUE on one attribute,
// or any expression. A class is about a host's attributes: class: terms
// (a class of classes) are refused.
func ParseCondition(s string) (Expr, error) {
	in, valueAt := s, -1
	if m := conditionRE.FindStringSubmatchIndex(s); m != nil {
		op := s[m[4]:m[5]]
		if op == "==" {
			op = "="
		}
		in, valueAt = "attr:"+s[m[2]:m[3]]+op+s[m[6]:m[7]], m[6]
	}
	e, err := Parse(in)
	if se := (*SyntaxError)(nil); errors.As(err, &se) && valueAt >= 0 {
		return nil, &SyntaxError{Input: s, Pos: valueAt, Msg: se.Msg} // pointing into what the user wrote
	}
	if err != nil {
		return nil, err
	}
	if strings.Contains(e.String(), "class:") {
		return nil, &SyntaxError{Input: s, Pos: max(0, strings.Index(strings.ToLower(s), "class:")), Msg: "a class's condition is on attributes, not on other classes"}
	}
	return e, nil
}
