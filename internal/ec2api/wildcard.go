package ec2api

// EC2's filter values are wildcard patterns: * is any run of characters,
// ? is one character, and a backslash makes the next character plain
// (\*, \?, \\). They are matched here in time proportional to the
// pattern's length times the value's, never more: the matcher keeps one
// backtrack point (the last star), where a recursive match backtracks
// exponentially (8 stars against 60 characters took 33 s).

// Bounds on what a filter may ask, checked before any instance is looked at.
const (
	maxPatternLen   = 256 // characters of one filter value
	maxFilters      = 50  // Filter.N
	maxFilterValues = 200 // Filter.N.Value.M, over all filters
)

// token is one element of a compiled pattern: a character, or one of the
// two wildcards.
type token struct {
	r    rune
	kind byte // 0 a plain character, '?' any one, '*' any run
}

// compile splits pattern into tokens, reading backslash escapes; a
// trailing backslash is a plain backslash.
func compile(pattern string) []token {
	rs := []rune(pattern)
	out := make([]token, 0, len(rs))
	for i := 0; i < len(rs); i++ {
		switch r := rs[i]; {
		case r == '\\' && i+1 < len(rs):
			i++
			out = append(out, token{r: rs[i]})
		case r == '*':
			if len(out) > 0 && out[len(out)-1].kind == '*' {
				continue // ** is *
			}
			out = append(out, token{kind: '*'})
		case r == '?':
			out = append(out, token{kind: '?'})
		default:
			out = append(out, token{r: r})
		}
	}
	return out
}

// wildcard reports whether s matches the compiled pattern p.
func wildcard(p []token, s string) bool {
	rs := []rune(s)
	pi, si := 0, 0
	star, mark := -1, 0 // the last star seen, and where in s its run ends now
	for si < len(rs) {
		if pi < len(p) {
			switch t := p[pi]; {
			case t.kind == '*':
				star, mark = pi, si
				pi++
				continue
			case t.kind == '?' || t.r == rs[si]:
				pi++
				si++
				continue
			}
		}
		if star < 0 {
			return false
		}
		// Let the last star take one more character and match on from there.
		mark++
		pi, si = star+1, mark
	}
	for pi < len(p) && p[pi].kind == '*' {
		pi++
	}
	return pi == len(p)
}
