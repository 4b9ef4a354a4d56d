package tuning

import (
	"regexp"
	"strings"
)

// BounceClassifier applies bounce rules in order, with their patterns
// compiled once. It is immutable and safe for concurrent use.
type BounceClassifier struct {
	rules []compiledBounceRule
}

type compiledBounceRule struct {
	BounceRule
	re *regexp.Regexp // nil: any text
}

// NewBounceClassifier compiles rules (as returned by Config.BounceRules,
// whose patterns were checked at load); it panics on a pattern that does
// not compile.
func NewBounceClassifier(rules []BounceRule) *BounceClassifier {
	c := &BounceClassifier{rules: make([]compiledBounceRule, len(rules))}
	for i, r := range rules {
		c.rules[i].BounceRule = r
		if r.Pattern != "" {
			c.rules[i].re = regexp.MustCompile(r.Pattern)
		}
	}
	return c
}

// Classify returns the class of the first rule matching a reply: its
// Enhanced is a dotted prefix of enhanced ("5.7" matches "5.7.1", not
// "5.71.0"), its Code (if set) equals code, and its Pattern (if set) matches
// text. "other" when nothing matches.
func (c *BounceClassifier) Classify(code int, enhanced, text string) string {
	for i := range c.rules {
		r := &c.rules[i]
		if r.Code != 0 && r.Code != code {
			continue
		}
		if r.Enhanced != "" && !enhancedPrefix(enhanced, r.Enhanced) {
			continue
		}
		if r.re != nil && !r.re.MatchString(text) {
			continue
		}
		return r.Class
	}
	return "other"
}

func enhancedPrefix(code, prefix string) bool {
	return code == prefix || strings.HasPrefix(code, prefix) && code[len(prefix)] == '.'
}
