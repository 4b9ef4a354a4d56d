package campaign

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// HeaderOptions configures the per-recipient header lines a campaign adds in
// front of the template's own headers.
type HeaderOptions struct {
	// CampaignID goes into Message-ID and may be used as {{campaign}} in the
	// unsubscribe patterns.
	CampaignID string
	// MessageIDDomain is the right-hand side of Message-ID (usually the From
	// domain).
	MessageIDDomain string
	// UnsubscribeMailto and UnsubscribeURL are List-Unsubscribe targets
	// (RFC 2369); either may hold {{column}} fields, filled with the
	// recipient's values percent-encoded. With an https URL the campaign also
	// sends List-Unsubscribe-Post: List-Unsubscribe=One-Click (RFC 8058).
	UnsubscribeMailto string
	UnsubscribeURL    string
	// VERP is an optional return-path pattern such as
	// "bounces+{local}={domain}@example.com".
	VERP string
	// Columns are the list's columns, for {{column}} lookups.
	Columns []string
	// NoDate leaves Date to the template (tests).
	NoDate bool
}

// HeaderBuilder renders the per-recipient header block: Message-ID, Date,
// List-Unsubscribe and List-Unsubscribe-Post. It is immutable after
// NewHeaderBuilder and safe for concurrent use.
type HeaderBuilder struct {
	o          HeaderOptions
	mailto     pattern
	url        pattern
	oneClick   bool
	verpPrefix string // before {local}
	verpMid    string // between {local} and {domain}
	verpSuffix string // after {domain}
}

// pattern is a compiled "{{column}}" string: literals and column holes.
type pattern struct {
	parts []patternPart
}

type patternPart struct {
	lit string
	col int // -1: literal; -2: campaign id
}

// compilePattern turns "https://x/u?e={{email}}" into parts, resolving column
// names against cols.
func compilePattern(s string, cols []string) (pattern, error) {
	var p pattern
	for s != "" {
		i := strings.Index(s, "{{")
		if i < 0 {
			p.parts = append(p.parts, patternPart{lit: s, col: -1})
			break
		}
		if i > 0 {
			p.parts = append(p.parts, patternPart{lit: s[:i], col: -1})
		}
		j := strings.Index(s[i:], "}}")
		if j < 0 {
			return p, fmt.Errorf("unterminated {{ in %q", s)
		}
		name := strings.TrimSpace(s[i+2 : i+j])
		col := -2
		if name != "campaign" {
			col = indexFold(cols, name)
			if col < 0 {
				return p, fmt.Errorf("unknown field {{%s}} (columns: %s)", name, strings.Join(cols, ", "))
			}
		}
		p.parts = append(p.parts, patternPart{col: col})
		s = s[i+j+2:]
	}
	return p, nil
}

func indexFold(cols []string, name string) int {
	for i, c := range cols {
		if strings.EqualFold(c, name) {
			return i
		}
	}
	return -1
}

// appendTo renders the pattern with percent-encoded values.
func (p pattern) appendTo(dst []byte, values []string, campaign string) []byte {
	for _, part := range p.parts {
		switch {
		case part.col == -1:
			dst = append(dst, part.lit...)
		case part.col == -2:
			dst = appendPercent(dst, campaign)
		case part.col < len(values):
			dst = appendPercent(dst, values[part.col])
		}
	}
	return dst
}

func (p pattern) empty() bool { return len(p.parts) == 0 }

// appendPercent appends s with everything but RFC 3986 unreserved characters
// and '@' percent-encoded, so no value can inject CR, LF, '>' or ',' into a
// header.
func appendPercent(dst []byte, s string) []byte {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '@' {
			dst = append(dst, c)
			continue
		}
		dst = append(dst, '%', hex[c>>4], hex[c&15])
	}
	return dst
}

// NewHeaderBuilder compiles the options. An unknown {{column}} or an
// unsubscribe URL that is not http(s) is an error.
func NewHeaderBuilder(o HeaderOptions) (*HeaderBuilder, error) {
	h := &HeaderBuilder{o: o}
	var err error
	if o.UnsubscribeMailto != "" {
		m := strings.TrimPrefix(o.UnsubscribeMailto, "mailto:")
		if strings.ContainsAny(m, "\r\n<>, ") || !strings.Contains(m, "@") {
			return nil, fmt.Errorf("campaign: unsubscribe mailto %q is not an address", o.UnsubscribeMailto)
		}
		if h.mailto, err = compilePattern("mailto:"+m, o.Columns); err != nil {
			return nil, fmt.Errorf("campaign: unsubscribe mailto: %w", err)
		}
	}
	if o.UnsubscribeURL != "" {
		u := o.UnsubscribeURL
		if !strings.HasPrefix(u, "https://") && !strings.HasPrefix(u, "http://") {
			return nil, fmt.Errorf("campaign: unsubscribe URL %q must be http(s)", u)
		}
		if strings.ContainsAny(u, "\r\n<> ") {
			return nil, fmt.Errorf("campaign: unsubscribe URL %q has characters not allowed in a header", u)
		}
		if h.url, err = compilePattern(u, o.Columns); err != nil {
			return nil, fmt.Errorf("campaign: unsubscribe URL: %w", err)
		}
		h.oneClick = strings.HasPrefix(u, "https://")
	}
	if o.VERP != "" {
		li, di := strings.Index(o.VERP, "{local}"), strings.Index(o.VERP, "{domain}")
		if li < 0 || di < li || !strings.Contains(o.VERP[di:], "@") {
			return nil, errors.New(`campaign: VERP pattern needs {local} then {domain} then @domain, e.g. "bounces+{local}={domain}@example.com"`)
		}
		h.verpPrefix, h.verpMid, h.verpSuffix = o.VERP[:li], o.VERP[li+len("{local}"):di], o.VERP[di+len("{domain}"):]
	}
	if o.MessageIDDomain == "" {
		h.o.MessageIDDomain = "spate.invalid"
	}
	return h, nil
}

// OneClick reports whether List-Unsubscribe-Post is sent (an https URL is set).
func (h *HeaderBuilder) OneClick() bool { return h.oneClick }

// Append appends the header lines for one recipient, each CRLF-terminated.
// The Message-ID is derived from the campaign and the row, so a message
// re-sent after a crash carries the same Message-ID (receivers can dedupe).
func (h *HeaderBuilder) Append(dst []byte, row int, values []string, now time.Time) []byte {
	dst = append(dst, "Message-ID: <"...)
	dst = appendPercent(dst, h.o.CampaignID)
	dst = append(dst, '.')
	dst = strconv.AppendInt(dst, int64(row), 10)
	dst = append(dst, '@')
	dst = append(dst, h.o.MessageIDDomain...)
	dst = append(dst, ">\r\n"...)
	if !h.o.NoDate {
		dst = append(dst, "Date: "...)
		dst = now.AppendFormat(dst, time.RFC1123Z)
		dst = append(dst, "\r\n"...)
	}
	if !h.mailto.empty() || !h.url.empty() {
		dst = append(dst, "List-Unsubscribe: "...)
		if !h.url.empty() {
			dst = append(dst, '<')
			dst = h.url.appendTo(dst, values, h.o.CampaignID)
			dst = append(dst, '>')
			if !h.mailto.empty() {
				dst = append(dst, ",\r\n "...)
			}
		}
		if !h.mailto.empty() {
			dst = append(dst, '<')
			dst = h.mailto.appendTo(dst, values, h.o.CampaignID)
			dst = append(dst, '>')
		}
		dst = append(dst, "\r\n"...)
		if h.oneClick {
			dst = append(dst, "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"...)
		}
	}
	return dst
}

// ReturnPath returns the envelope sender for rcpt: the VERP address when a
// pattern is set, else from. rcpt was validated at the edge.
func (h *HeaderBuilder) ReturnPath(from, rcpt string) string {
	if h.verpSuffix == "" && h.verpPrefix == "" {
		return from
	}
	at := strings.LastIndexByte(rcpt, '@')
	if at < 0 {
		return from
	}
	return h.verpPrefix + rcpt[:at] + h.verpMid + rcpt[at+1:] + h.verpSuffix
}
