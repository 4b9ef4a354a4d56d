package codec

import (
	"encoding/base64"
	"unicode/utf8"
)

// MIME encoders for message content (RFC 2045 §6.7 quoted-printable, §6.8
// base64, RFC 2047 encoded-words). All are Append* functions that allocate
// nothing beyond growing dst; they trust their input to be any bytes.

const (
	hexUpper = "0123456789ABCDEF"
	// qpLineMax is the RFC 2045 §6.7 rule 5 line limit, '=' of a soft break
	// included, CRLF excluded.
	qpLineMax = 76
	// b64LineMax is the RFC 2045 §6.8 line length (57 input bytes).
	b64LineMax = 76
	// headerFoldAt is the RFC 5322 §2.1.1 recommended line length.
	headerFoldAt = 78
	// encodedWordMax is the RFC 2047 §2 limit on an encoded-word.
	encodedWordMax = 75
)

// AppendQuotedPrintable appends src encoded as quoted-printable text
// (RFC 2045 §6.7) to dst, starting at column 0, with soft line breaks so that
// no line exceeds 76 characters. Line breaks in src (CRLF, bare CR, bare LF)
// become hard CRLF breaks; whitespace before a break or at the end is
// encoded. For SMTP safety a '.' or '-' at the start of a line is encoded
// ("=2E", "=2D"), so the output never needs dot-stuffing and can never form a
// MIME boundary line.
func AppendQuotedPrintable(dst, src []byte) []byte {
	dst, _ = appendQP(dst, src, 0)
	return dst
}

// qpLiteral marks the bytes quoted-printable writes as themselves anywhere
// (RFC 2045 §6.7 rule 2, less '='); space and tab depend on what follows.
var qpLiteral = func() (t [256]bool) {
	for c := '!'; c <= '~'; c++ {
		t[c] = c != '='
	}
	return t
}()

// qpLit reports whether src[i] is written as itself: a literal byte, or a
// space or tab followed by something other than a line break.
func qpLit(src []byte, i int) bool {
	c := src[i]
	if c == ' ' || c == '\t' {
		return i+1 < len(src) && src[i+1] != '\r' && src[i+1] != '\n'
	}
	return qpLiteral[c]
}

// appendQP is AppendQuotedPrintable starting at column col; it returns the
// column after the last byte written.
func appendQP(dst, src []byte, col int) ([]byte, int) {
	for i := 0; i < len(src); i++ {
		c := src[i]
		if col < qpLineMax-1 && (col > 0 || c != '.' && c != '-') && qpLit(src, i) {
			// Fast path: copy the run of literal bytes that fits the line.
			j, end := i+1, min(len(src), i+qpLineMax-1-col)
			for j < end && qpLit(src, j) {
				j++
			}
			dst = append(dst, src[i:j]...)
			col += j - i
			i = j - 1
			continue
		}
		if c == '\r' || c == '\n' {
			if c == '\r' && i+1 < len(src) && src[i+1] == '\n' {
				i++
			}
			dst = append(dst, '\r', '\n')
			col = 0
			continue
		}
		lit := c >= '!' && c <= '~' && c != '='
		if c == ' ' || c == '\t' {
			// Literal unless it would end a line.
			lit = i+1 < len(src) && src[i+1] != '\r' && src[i+1] != '\n'
		}
		if col == 0 && (c == '.' || c == '-') {
			lit = false
		}
		n := 3
		if lit {
			n = 1
		}
		if col+n > qpLineMax-1 {
			dst = append(dst, '=', '\r', '\n')
			col = 0
			if c == '.' || c == '-' {
				lit, n = false, 3
			}
		}
		if lit {
			dst = append(dst, c)
		} else {
			dst = append(dst, '=', hexUpper[c>>4], hexUpper[c&15])
		}
		col += n
	}
	return dst, col
}

// AppendBase64Lines appends src in base64 (RFC 2045 §6.8) to dst as lines of
// 76 characters separated by CRLF; the last line has no CRLF.
func AppendBase64Lines(dst, src []byte) []byte {
	const chunk = b64LineMax / 4 * 3
	for i := 0; i < len(src); i += chunk {
		if i > 0 {
			dst = append(dst, '\r', '\n')
		}
		dst = base64.StdEncoding.AppendEncode(dst, src[i:min(i+chunk, len(src))])
	}
	return dst
}

// AppendEncodedWords appends src as RFC 2047 encoded-words in UTF-8 with
// encoding enc ('B' or 'Q'; anything else means 'B'), each word at most 75
// characters and split on rune boundaries, words separated by a folding
// "\r\n " so that lines stay within 78 characters from column 0. The Q form
// uses only the characters RFC 2047 §5(3) allows in a phrase, so the words
// are valid in Subject and in display names alike.
func AppendEncodedWords(dst, src []byte, enc byte) []byte {
	dst, _ = appendEncodedWords(dst, src, enc, 0)
	return dst
}

func qSafe(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '!' || c == '*' || c == '+' || c == '-' || c == '/'
}

// appendEncodedWords is AppendEncodedWords starting at column col (the first
// word is folded onto a new line when it does not fit and col > 1); it
// returns the column after the last word.
func appendEncodedWords(dst, src []byte, enc byte, col int) ([]byte, int) {
	if enc != 'Q' {
		enc = 'B'
	}
	const overhead = len("=?UTF-8?B??=")
	for first := true; len(src) > 0; first = false {
		// Take whole runes while the word fits.
		n, w := 0, 0
		for n < len(src) {
			_, size := utf8.DecodeRune(src[n:])
			var add int
			if enc == 'B' {
				add = (n+size+2)/3*4 - w
			} else {
				for _, c := range src[n : n+size] {
					if qSafe(c) || c == ' ' {
						add++
					} else {
						add += 3
					}
				}
			}
			if overhead+w+add > encodedWordMax {
				break
			}
			n += size
			w += add
		}
		switch L := overhead + w; {
		case first && col > 1 && col+L > headerFoldAt,
			!first && col+1+L > headerFoldAt:
			dst = append(dst, '\r', '\n', ' ')
			col = 1
		case !first:
			dst = append(dst, ' ')
			col++
		}
		dst = append(dst, "=?UTF-8?"...)
		dst = append(dst, enc, '?')
		if enc == 'B' {
			dst = base64.StdEncoding.AppendEncode(dst, src[:n])
		} else {
			for _, c := range src[:n] {
				switch {
				case c == ' ':
					dst = append(dst, '_')
				case qSafe(c):
					dst = append(dst, c)
				default:
					dst = append(dst, '=', hexUpper[c>>4], hexUpper[c&15])
				}
			}
		}
		dst = append(dst, '?', '=')
		col += overhead + w
		src = src[n:]
	}
	return dst, col
}

// pickWordEncoding returns 'Q' when most of src is plain ASCII, else 'B'.
func pickWordEncoding(src []byte) byte {
	bad := 0
	for _, c := range src {
		if !qSafe(c) && c != ' ' {
			bad++
		}
	}
	if bad*3 > len(src) {
		return 'B'
	}
	return 'Q'
}

// appendHTMLEscaped appends src with the five HTML special characters
// replaced by entities (as html.EscapeString does).
func appendHTMLEscaped(dst []byte, src string) []byte {
	for i := 0; i < len(src); i++ {
		c := src[i]
		switch c {
		case '<':
			dst = append(dst, "&lt;"...)
		case '>':
			dst = append(dst, "&gt;"...)
		case '&':
			dst = append(dst, "&amp;"...)
		case '"':
			dst = append(dst, "&#34;"...)
		case '\'':
			dst = append(dst, "&#39;"...)
		default:
			dst = append(dst, c)
		}
	}
	return dst
}
