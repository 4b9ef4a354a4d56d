package codec

import (
	"net/netip"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// Envelope address limits, RFC 5321 §4.5.3.1.
const (
	MaxLocalLen  = 64
	MaxDomainLen = 255
	// MaxAddressLen is the path limit (256 octets) less the angle brackets.
	MaxAddressLen = 254
)

// AddressError reports an envelope address that spate will not put on the
// wire, with a reason for a human.
type AddressError struct {
	Addr   string
	Reason string
}

// Error returns `codec: invalid address "addr": reason`.
func (e *AddressError) Error() string {
	return "codec: invalid address " + strconv.Quote(e.Addr) + ": " + e.Reason
}

// ValidateAddress checks addr as an RFC 5321 §4.1.2 Mailbox: a dot-string or
// quoted-string local part, "@", and a domain of LDH labels or an address
// literal ("[192.0.2.1]", "[IPv6:2001:db8::1]"), within the §4.5.3.1 limits.
// It returns nil or an *AddressError.
//
// Stricter than the RFC, for safety: CR, LF, NUL, '<' and '>' are refused
// everywhere, even inside quotes, so that no accepted address can break out
// of "RCPT TO:<...>". Non-ASCII local parts (RFC 6531) are accepted only when
// smtputf8 is true, and must be valid UTF-8 without control or space
// characters. A non-ASCII domain is accepted when IDNA (UTS #46, lookup
// profile) converts it to A-labels: NormalizeAddress does that conversion,
// and the length limits apply to the converted form. General address
// literals (RFC 5321 "tag:content") are refused.
//
// ValidateAddress does not allocate for a valid ASCII address.
func ValidateAddress(addr string, smtputf8 bool) error {
	if reason := checkAddress(addr, smtputf8); reason != "" {
		return &AddressError{Addr: addr, Reason: reason}
	}
	return nil
}

func checkAddress(addr string, smtputf8 bool) string {
	if addr == "" {
		return "empty address"
	}
	for i := 0; i < len(addr); i++ {
		switch addr[i] {
		case '\r', '\n':
			return "contains a line break (CR or LF)"
		case 0:
			return "contains a NUL byte"
		case '<', '>':
			return "contains '<' or '>'"
		}
	}
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return "no '@'"
	}
	local, domain := addr[:at], addr[at+1:]
	if reason := checkLocal(local, smtputf8); reason != "" {
		return reason
	}
	dlen, reason := checkDomain(domain)
	if reason != "" {
		return reason
	}
	if len(local)+1+dlen > MaxAddressLen {
		return "longer than " + strconv.Itoa(MaxAddressLen) + " octets"
	}
	return ""
}

// atextTable marks RFC 5321 atext: ALPHA / DIGIT / "!#$%&'*+-/=?^_`{|}~".
var atextTable = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "!#$%&'*+-/=?^_`{|}~" {
		t[c] = true
	}
	return t
}()

func checkLocal(local string, smtputf8 bool) string {
	if local == "" {
		return "empty local part"
	}
	if len(local) > MaxLocalLen {
		return "local part longer than " + strconv.Itoa(MaxLocalLen) + " octets"
	}
	if local[0] == '"' {
		return checkQuoted(local, smtputf8)
	}
	if local[0] == '.' || local[len(local)-1] == '.' {
		return "local part starts or ends with '.'"
	}
	for i := 0; i < len(local); {
		c := local[i]
		switch {
		case atextTable[c]:
			i++
		case c == '.':
			if local[i+1] == '.' {
				return "local part has consecutive dots"
			}
			i++
		case c >= utf8.RuneSelf:
			n, reason := checkLocalRune(local[i:], smtputf8)
			if reason != "" {
				return reason
			}
			i += n
		case c == ' ' || c == '\t':
			return "space in local part (outside quotes)"
		case c < ' ' || c == 0x7f:
			return "control character in local part"
		default:
			return "character " + strconv.QuoteRune(rune(c)) + " not allowed in local part (outside quotes)"
		}
	}
	return ""
}

// checkQuoted checks an RFC 5321 Quoted-string.
func checkQuoted(q string, smtputf8 bool) string {
	if len(q) < 2 || q[len(q)-1] != '"' {
		return "unterminated quoted local part"
	}
	for i := 1; i < len(q)-1; {
		c := q[i]
		switch {
		case c == '\\':
			if i+1 >= len(q)-1 || q[i+1] < ' ' || q[i+1] > '~' {
				return "bad escape in quoted local part"
			}
			i += 2
		case c == '"':
			return "unescaped '\"' inside quoted local part"
		case c >= ' ' && c <= '~':
			i++
		case c >= utf8.RuneSelf:
			n, reason := checkLocalRune(q[i:], smtputf8)
			if reason != "" {
				return reason
			}
			i += n
		default:
			return "control character in quoted local part"
		}
	}
	return ""
}

// checkLocalRune checks the non-ASCII rune at the start of s.
func checkLocalRune(s string, smtputf8 bool) (int, string) {
	r, n := utf8.DecodeRuneInString(s)
	switch {
	case r == utf8.RuneError && n <= 1:
		return n, "invalid UTF-8"
	case !smtputf8:
		return n, "non-ASCII local part needs SMTPUTF8"
	case unicode.IsControl(r) || unicode.IsSpace(r) || r == '\uFEFF':
		return n, "control or space character " + strconv.QuoteRune(r) + " in local part"
	}
	return n, ""
}

// checkDomain checks a domain or address literal and returns its length on
// the wire (after IDNA conversion).
func checkDomain(d string) (int, string) {
	if d == "" {
		return 0, "empty domain"
	}
	if d[0] == '[' {
		return len(d), checkLiteral(d)
	}
	if !asciiOnly(d) {
		if !utf8.ValidString(d) {
			return 0, "invalid UTF-8 in domain"
		}
		a, err := idna.Lookup.ToASCII(d)
		if err != nil {
			return 0, "invalid internationalised domain: " + err.Error()
		}
		d = a
	}
	if len(d) > MaxDomainLen {
		return 0, "domain longer than " + strconv.Itoa(MaxDomainLen) + " octets"
	}
	return len(d), checkLDH(d)
}

// checkLDH checks dot-separated LDH labels of 1 to 63 octets.
func checkLDH(d string) string {
	for start := 0; start <= len(d); {
		end := strings.IndexByte(d[start:], '.')
		if end < 0 {
			end = len(d)
		} else {
			end += start
		}
		label := d[start:end]
		switch {
		case label == "":
			return "empty label in domain"
		case len(label) > 63:
			return "domain label longer than 63 octets"
		case label[0] == '-' || label[len(label)-1] == '-':
			return "domain label starts or ends with '-'"
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				if c == ' ' || c == '\t' {
					return "space in domain"
				}
				return "character " + strconv.QuoteRune(rune(c)) + " not allowed in domain"
			}
		}
		start = end + 1
	}
	return ""
}

func checkLiteral(d string) string {
	if d[len(d)-1] != ']' {
		return "unterminated address literal"
	}
	in := d[1 : len(d)-1]
	if len(in) >= 5 && strings.EqualFold(in[:5], "IPv6:") {
		a, err := netip.ParseAddr(in[5:])
		if err != nil || !a.Is6() || a.Zone() != "" {
			return "invalid IPv6 address literal"
		}
		return ""
	}
	a, err := netip.ParseAddr(in)
	if err != nil || !a.Is4() {
		return "invalid address literal (want [a.b.c.d] or [IPv6:...])"
	}
	return ""
}

func asciiOnly(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// SplitAddress splits addr at its last '@' (a quoted local part may hold
// '@'). Without '@' it returns addr and "".
func SplitAddress(addr string) (local, domain string) {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return addr, ""
	}
	return addr[:at], addr[at+1:]
}

// NeedsSMTPUTF8 reports whether addr holds non-ASCII bytes, so that it can go
// on the wire only to a server announcing SMTPUTF8 (RFC 6531). After
// NormalizeAddress only a UTF-8 local part can make this true.
func NeedsSMTPUTF8(addr string) bool { return !asciiOnly(addr) }

// NormalizeAddress returns addr in the form spate sends and de-duplicates:
// surrounding white space trimmed, the domain lower-cased (an IDN domain
// converted to A-labels with the IDNA lookup profile; an IPv6 literal tag
// spelled "IPv6:"), the local part kept as is (it is case-sensitive, RFC 5321
// §2.4). It returns an *AddressError when the result is not valid even with
// SMTPUTF8; check ValidateAddress(n, false) or NeedsSMTPUTF8(n) for servers
// without it. An address already normal is returned without allocating.
func NormalizeAddress(addr string) (string, error) {
	return normalizeAddress(addr, true)
}

func normalizeAddress(addr string, smtputf8 bool) (string, error) {
	a := strings.TrimSpace(addr)
	local, domain := SplitAddress(a)
	if at := len(local); at < len(a) && domain != "" {
		switch {
		case domain[0] == '[':
			if len(domain) > 6 && strings.EqualFold(domain[1:6], "IPv6:") && (domain[1:6] != "IPv6:" || hasUpperASCII(domain[6:])) {
				a = local + "@[IPv6:" + strings.ToLower(domain[6:])
			}
		case !asciiOnly(domain):
			if d, err := idna.Lookup.ToASCII(domain); err == nil {
				a = local + "@" + d
			}
		case hasUpperASCII(domain):
			a = local + "@" + strings.ToLower(domain)
		}
	}
	if reason := checkAddress(a, smtputf8); reason != "" {
		return "", &AddressError{Addr: addr, Reason: reason}
	}
	return a, nil
}

func hasUpperASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 'A' && s[i] <= 'Z' {
			return true
		}
	}
	return false
}
