package codec

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"strings"

	"github.com/valyala/bytebufferpool"
)

// Template is a message compiled once from an RFC 5322 .eml source with
// {{column}} merge fields: static segments, already CRLF-canonical and
// dot-stuffed, shared by every recipient, and holes that Render fills with
// one recipient's values.
//
// Compilation choices, all documented here:
//   - Line breaks: a bare CR or a bare LF in the source becomes CRLF.
//   - Headers: a merge value is written as is when it is printable ASCII,
//     folded at spaces before 78 columns. Otherwise (non-ASCII, or any
//     control character) each control character (CR, LF, NUL, TAB...) is
//     first replaced by a space and the value is written as RFC 2047
//     encoded-words, folded. A value can therefore never end a header line
//     nor start a new header. (An encoded-word glued to text, as in
//     "Hi{{name}}!", is valid bytes but mail readers may not decode it.)
//   - Address headers (From, To, Cc, Bcc, Reply-To, Sender, Resent-*): a
//     hole in addr-spec position (after '<', or alone between ':' / ','
//     and ',' / end of line) must hold a valid address (ValidateAddress,
//     SMTPUTF8 allowed) and is written as is; any other hole there is a
//     display name, written as a quoted-string when printable ASCII, else
//     as encoded-words; quotes written around it in the source
//     ("\"{{name}}\" <{{email}}>") are dropped, the value brings its own.
//   - 7bit/8bit bodies: values are canonicalised (bare CR, bare LF -> CRLF)
//     and dot-stuffed, so "\r\n.\r\nMAIL FROM:" stays body text. A value
//     that contains the boundary of an enclosing multipart is refused at
//     Render (it would end the part). Lines are not wrapped at 998.
//   - Quoted-printable bodies: the source is decoded at compile time and
//     the static pieces re-encoded (AppendQuotedPrintable: never a leading
//     '.' or '-' on a line); values are encoded per recipient, with a soft
//     break inserted before a static piece when the line would pass 76.
//   - Base64 bodies with holes: the decoded static content is kept and the
//     whole part is assembled and base64-encoded per recipient (76-column
//     lines). A base64 part without holes stays static as written.
//   - text/html parts: values are HTML-escaped (as html.EscapeString).
//   - Merge fields are {{name}} with optional spaces or tabs inside the
//     braces, on one line; names are letters, digits, '_', '-', '.'. A
//     merge field inside a base64 part is found after decoding; its error
//     line is the part's first body line. Merge fields are not allowed in
//     header names nor in MIME-Version, Content-Type or
//     Content-Transfer-Encoding.
//
// A Template is immutable after CompileTemplate and safe for concurrent use
// by any number of goroutines.
type Template struct {
	ops       []op
	cols      []string
	fields    []string
	headers   []headerField
	bodyHoles bool
}

type headerField struct{ name, value string }

// holeKind is what an op is: a static segment or a hole with its encoding
// context.
type holeKind uint8

const (
	opStatic    holeKind = iota // zero: a static segment, already stuffed
	holeHeader                  // unstructured header text: as is, or RFC 2047; folded
	holePhrase                  // display name in an address header
	holeAddress                 // addr-spec in an address header
	holeText                    // 7bit/8bit body: canonicalised and dot-stuffed
	holeQP                      // quoted-printable body
	holeBase64                  // a whole base64 part with holes (op.b64)
)

type op struct {
	kind   holeKind
	static []byte
	// Static metrics for column tracking: the length of the first line
	// (up to the first CRLF), of the last line, and whether there is a CRLF.
	first, last int
	multi       bool
	qp          bool    // static of a quoted-printable body: may need a soft break before it
	leadDot     bool    // static starts with a '.' left unstuffed (it follows a body hole)
	dots        []int32 // static: lineDots(static), for Message.AppendUnstuffed

	col     int  // hole: index into the values
	html    bool // hole: HTML-escape the value
	text    bool // base64 hole: text content, line breaks canonicalised to CRLF
	startLS bool // text hole after a static: whether that static ends a line
	line    int  // template line, for errors
	bounds  []string
	b64     []op // holeBase64: decoded statics and holes
}

// TemplateError reports a template that does not compile, with its line.
type TemplateError struct {
	Line int
	Msg  string
}

// Error returns "codec: template line N: msg".
func (e *TemplateError) Error() string {
	return fmt.Sprintf("codec: template line %d: %s", e.Line, e.Msg)
}

// mergeBelow is the size under which a static segment that follows dynamic
// bytes is copied into the buffer rather than referenced: writev handles
// fewer, larger iovecs better, and the engine caps their number.
const mergeBelow = 64

// Render errors.
var (
	ErrTemplateValues  = errors.New("codec: fewer merge values than template columns")
	ErrExtraHeaders    = errors.New("codec: extra headers are not well-formed header lines")
	ErrBoundaryInValue = errors.New("codec: merge value contains a MIME boundary of the template")
)

// CompileTemplate compiles src, an RFC 5322 message (single part or
// multipart, nested multiparts allowed), whose {{name}} merge fields refer
// to columns (the list's column names, in the order Render's values will
// use). Every merge field must name a column (exact match, else ASCII
// case-insensitive); an unknown one is a *TemplateError naming the field,
// the line and the columns. See Template for the encoding rules.
func CompileTemplate(src []byte, columns []string) (*Template, error) {
	c := &compiler{
		t:     &Template{cols: append([]string(nil), columns...)},
		src:   canonicalCRLF(src),
		index: make(map[string]int, len(columns)),
	}
	for i, name := range columns {
		if _, dup := c.index[name]; !dup {
			c.index[name] = i
		}
	}
	if err := c.checkFields(); err != nil {
		return nil, err
	}
	if err := c.entity(c.src, 0, true); err != nil {
		return nil, err
	}
	if !c.cs.AtLineStart() {
		c.emitStatic([]byte("\r\n"), false)
	}
	c.flush()
	return c.t, nil
}

// Fields returns the merge fields the template uses, each once, in order of
// first use. The slice is shared: do not modify it.
func (t *Template) Fields() []string { return t.fields }

// Columns returns the columns given to CompileTemplate (shared; do not
// modify).
func (t *Template) Columns() []string { return t.cols }

// HasBodyHoles reports whether the body (not only headers) has merge fields:
// when false, every recipient gets the same body bytes.
func (t *Template) HasBodyHoles() bool { return t.bodyHoles }

// Header returns the value of the template's first top-level header field
// called name (ASCII case-insensitive), unfolded and trimmed, as written in
// the source (merge fields included, e.g. "{{first_name}} <{{email}}>"), or
// "" when there is none.
func (t *Template) Header(name string) string {
	for _, h := range t.headers {
		if strings.EqualFold(h.name, name) {
			return h.value
		}
	}
	return ""
}

// HeaderNames returns the names of the template's top-level header fields,
// in order.
func (t *Template) HeaderNames() []string {
	names := make([]string, len(t.headers))
	for i, h := range t.headers {
		names[i] = h.name
	}
	return names
}

// Render fills m (from AcquireMessage; any previous content is dropped) with
// the message for one recipient: extraHeaders first (per-recipient header
// lines such as Message-ID, Date, List-Unsubscribe, each CRLF-terminated;
// they must be well-formed header lines, else ErrExtraHeaders), then the
// template's headers and body with values filled in, then the end-of-data
// line. values is aligned with the columns given to CompileTemplate.
//
// Static segments are referenced, not copied; values are encoded into m's
// pooled buffer. Render does not allocate in the steady state (a Message
// reused through the pool). On error m holds no usable message. Render may
// be called concurrently on one Template with different Messages.
func (t *Template) Render(m *Message, values []string, extraHeaders []byte) error {
	if len(values) < len(t.cols) {
		return ErrTemplateValues
	}
	if m.buf == nil {
		m.buf = bytebufferpool.Get()
	}
	m.reset()
	if err := checkHeaderLines(extraHeaders); err != nil {
		return err
	}
	if len(extraHeaders) > 0 {
		off := m.mark()
		m.buf.B = append(m.buf.B, extraHeaders...)
		m.addDynamic(off)
	}
	col, rawPrev := 0, false
	for i := range t.ops {
		o := &t.ops[i]
		if o.kind == opStatic {
			if o.leadDot && rawPrev && m.st.AtLineStart() {
				off := m.mark()
				m.buf.B = append(m.buf.B, '.')
				m.addDynamic(off)
			}
			if o.qp && col+o.first > qpLineMax {
				off := m.mark()
				m.buf.B = append(m.buf.B, '=', '\r', '\n')
				m.addDynamic(off)
				col = 0
			}
			if n := len(m.spans) - 1; len(o.static) < mergeBelow && n >= 0 && m.spans[n].static == nil {
				// Tiny static between dynamic bytes: copy it, one iovec fewer.
				off := m.mark()
				m.buf.B = append(m.buf.B, o.static...)
				m.addDynamic(off)
			} else {
				m.addStatic(o.static, o.dots)
			}
			if o.multi {
				col = o.last
			} else {
				col += o.first
			}
			rawPrev = false
			continue
		}
		v := values[o.col]
		off := m.mark()
		switch o.kind {
		case holeText:
			for _, b := range o.bounds {
				if strings.Contains(v, b) {
					return ErrBoundaryInValue
				}
			}
			if !rawPrev {
				m.st.state = stuffMidLine
				if o.startLS {
					m.st.state = stuffLineStart
				}
			}
			m.val = m.appendValue(m.val[:0], v, o.html)
			m.buf.B = m.st.Append(m.buf.B, m.val)
		case holeQP:
			m.val = m.appendValue(m.val[:0], v, o.html)
			m.buf.B, col = appendQP(m.buf.B, m.val, col)
		case holeHeader:
			var plain bool
			m.val, plain = appendSanitised(m.val[:0], v)
			if plain {
				m.buf.B, col = appendFolded(m.buf.B, m.val, col)
			} else {
				m.buf.B, col = appendEncodedWords(m.buf.B, m.val, pickWordEncoding(m.val), col)
			}
		case holePhrase:
			var plain bool
			m.val, plain = appendSanitised(m.val[:0], v)
			if plain {
				m.buf.B = appendQuotedString(m.buf.B, m.val)
				col += len(m.buf.B) - off
			} else {
				m.buf.B, col = appendEncodedWords(m.buf.B, m.val, pickWordEncoding(m.val), col)
			}
		case holeAddress:
			if err := ValidateAddress(v, true); err != nil {
				return fmt.Errorf("codec: merge field %q (template line %d): %w", t.cols[o.col], o.line, err)
			}
			m.buf.B = append(m.buf.B, v...)
			col += len(v)
		case holeBase64:
			m.asm = m.asm[:0]
			for j := range o.b64 {
				so := &o.b64[j]
				if so.kind == opStatic {
					m.asm = append(m.asm, so.static...)
					continue
				}
				m.val = m.appendValue(m.val[:0], values[so.col], so.html)
				if so.text {
					m.asm = appendCRLF(m.asm, m.val)
				} else {
					m.asm = append(m.asm, m.val...)
				}
			}
			m.buf.B = AppendBase64Lines(m.buf.B, m.asm)
			col = 0
		}
		m.addDynamic(off)
		rawPrev = o.kind == holeText
	}
	m.addStatic(dataEnd, nil) // lineDots(dataEnd) is nil
	m.build()
	return nil
}

func (m *Message) appendValue(dst []byte, v string, html bool) []byte {
	if html {
		return appendHTMLEscaped(dst, v)
	}
	return append(dst, v...)
}

// appendSanitised appends v with every control character replaced by a
// space; plain reports whether the result can go into a header as is
// (printable ASCII, no control in v, no "=?" that a reader could decode).
func appendSanitised(dst []byte, v string) ([]byte, bool) {
	plain := !strings.Contains(v, "=?")
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c < ' ' || c == 0x7f:
			c = ' '
			plain = false
		case c >= 0x80:
			plain = false
		}
		dst = append(dst, c)
	}
	return dst, plain
}

// appendFolded appends printable ASCII v to a header line at column col,
// folding before a space when the line would pass 78 columns.
func appendFolded(dst, v []byte, col int) ([]byte, int) {
	for len(v) > 0 {
		j := 0
		for j < len(v) && v[j] == ' ' {
			j++
		}
		k := j
		for k < len(v) && v[k] != ' ' {
			k++
		}
		if j > 0 && k > j && col > 1 && col+k > headerFoldAt {
			dst = append(dst, '\r', '\n')
			col = 0
		}
		dst = append(dst, v[:k]...)
		col += k
		v = v[k:]
	}
	return dst, col
}

// appendQuotedString appends v (printable ASCII) as an RFC 5322
// quoted-string.
func appendQuotedString(dst, v []byte) []byte {
	dst = append(dst, '"')
	for _, c := range v {
		if c == '"' || c == '\\' {
			dst = append(dst, '\\')
		}
		dst = append(dst, c)
	}
	return append(dst, '"')
}

// appendCRLF appends p with bare CR and bare LF turned into CRLF.
func appendCRLF(dst, p []byte) []byte {
	for i := 0; i < len(p); i++ {
		switch c := p[i]; c {
		case '\r':
			if i+1 < len(p) && p[i+1] == '\n' {
				i++
			}
			dst = append(dst, '\r', '\n')
		case '\n':
			dst = append(dst, '\r', '\n')
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// canonicalCRLF returns src with bare CR and bare LF turned into CRLF (src
// itself when it is already canonical).
func canonicalCRLF(src []byte) []byte {
	canonical := true
	for i, c := range src {
		if c == '\n' && (i == 0 || src[i-1] != '\r') || c == '\r' && (i+1 == len(src) || src[i+1] != '\n') {
			canonical = false
			break
		}
	}
	if canonical {
		return src
	}
	return appendCRLF(make([]byte, 0, len(src)+len(src)/32), src)
}

// checkHeaderLines checks that b is empty or whole header fields: lines
// ending in CRLF, no other CR, LF or NUL, each field starting with a name of
// printable ASCII (not ':' and not starting with '.') and a ':',
// continuation lines starting with a space or a tab.
func checkHeaderLines(b []byte) error {
	first := true
	for len(b) > 0 {
		nl := bytes.IndexByte(b, '\n')
		if nl < 1 || b[nl-1] != '\r' {
			return ErrExtraHeaders
		}
		line := b[:nl-1]
		b = b[nl+1:]
		if bytes.IndexByte(line, '\r') >= 0 || bytes.IndexByte(line, 0) >= 0 {
			return ErrExtraHeaders
		}
		if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
			if first {
				return ErrExtraHeaders
			}
			continue
		}
		first = false
		if !validFieldName(line) {
			return ErrExtraHeaders
		}
	}
	return nil
}

// validFieldName reports whether line starts with "name:" where name is
// RFC 5322 ftext (and does not start with '.').
func validFieldName(line []byte) bool {
	colon := bytes.IndexByte(line, ':')
	if colon < 1 || line[0] == '.' {
		return false
	}
	for _, c := range line[:colon] {
		if c < '!' || c > '~' {
			return false
		}
	}
	return true
}

// compiler holds the state of one CompileTemplate call.
type compiler struct {
	t       *Template
	src     []byte // CRLF-canonical source
	index   map[string]int
	cs      Stuffer // stuffs static bytes; its state runs through the whole message
	pend    []byte  // static bytes not yet in an op
	pendQP  bool
	pendDot bool
	holePrv bool // the last op emitted is a text hole
	bounds  []string
	seen    map[int]bool
}

// lineAt returns the 1-based source line of offset off.
func (c *compiler) lineAt(off int) int {
	return 1 + bytes.Count(c.src[:off], []byte{'\n'})
}

func (c *compiler) errf(off int, format string, args ...any) error {
	return &TemplateError{Line: c.lineAt(off), Msg: fmt.Sprintf(format, args...)}
}

// lookup returns the column index of a merge field.
func (c *compiler) lookup(name string) (int, bool) {
	if i, ok := c.index[name]; ok {
		return i, true
	}
	for i, col := range c.t.cols {
		if strings.EqualFold(col, name) {
			return i, true
		}
	}
	return 0, false
}

func (c *compiler) unknown(line int, name string) error {
	return &TemplateError{Line: line, Msg: fmt.Sprintf("unknown merge field %q (columns: %s)", name, strings.Join(c.t.cols, ", "))}
}

// checkFields checks every well-formed merge field visible in the source,
// so that unknown-field errors carry exact lines.
func (c *compiler) checkFields() error {
	b, off := c.src, 0
	for {
		start, end, name, err := nextHole(b)
		if start < 0 {
			return nil
		}
		if err != nil { // maybe split by a soft line break: compile will tell
			b, off = b[start+2:], off+start+2
			continue
		}
		if _, ok := c.lookup(name); !ok {
			return c.unknown(c.lineAt(off+start), name)
		}
		b, off = b[end:], off+end
	}
}

// nextHole finds the next {{name}} in b: start and end offsets of the
// braces and the trimmed name; start < 0 when there is none.
func nextHole(b []byte) (start, end int, name string, err error) {
	start = bytes.Index(b, []byte("{{"))
	if start < 0 {
		return -1, 0, "", nil
	}
	rest := b[start+2:]
	if eol := bytes.IndexByte(rest, '\r'); eol >= 0 {
		rest = rest[:eol]
	}
	closeAt := bytes.Index(rest, []byte("}}"))
	if closeAt < 0 {
		return start, 0, "", errors.New("unclosed merge field (want {{name}} on one line)")
	}
	n := bytes.Trim(rest[:closeAt], " \t")
	if len(n) == 0 {
		return start, 0, "", errors.New("empty merge field {{}}")
	}
	for _, ch := range n {
		if !('a' <= ch && ch <= 'z' || 'A' <= ch && ch <= 'Z' || '0' <= ch && ch <= '9' || ch == '_' || ch == '-' || ch == '.') {
			return start, 0, "", fmt.Errorf("malformed merge field %q", "{{"+string(rest[:closeAt])+"}}")
		}
	}
	return start, start + 2 + closeAt + 2, string(n), nil
}

// emitStatic adds static bytes (stuffed on the way); qp marks bytes of a
// quoted-printable body.
func (c *compiler) emitStatic(b []byte, qp bool) {
	if len(b) == 0 {
		return
	}
	if len(c.pend) == 0 {
		c.pendQP = qp
		c.pendDot = c.holePrv && b[0] == '.'
	}
	c.pend = c.cs.Append(c.pend, b)
	c.holePrv = false
}

// flush turns the pending static bytes into an op.
func (c *compiler) flush() {
	if len(c.pend) == 0 {
		return
	}
	o := op{static: c.pend, qp: c.pendQP, leadDot: c.pendDot, dots: lineDots(c.pend)}
	o.first = len(o.static)
	if i := bytes.Index(o.static, []byte("\r\n")); i >= 0 {
		o.first, o.multi = i, true
		o.last = len(o.static) - bytes.LastIndex(o.static, []byte("\r\n")) - 2
	}
	c.t.ops = append(c.t.ops, o)
	c.pend = nil
}

// emitHole adds a hole op for merge field name.
func (c *compiler) emitHole(o op, name string, body bool) error {
	i, ok := c.lookup(name)
	if !ok {
		return c.unknown(o.line, name)
	}
	c.flush()
	o.col = i
	if o.kind == holeText {
		o.startLS = c.cs.AtLineStart()
		o.bounds = append([]string(nil), c.bounds...)
	}
	c.t.ops = append(c.t.ops, o)
	c.useField(i)
	if body {
		c.t.bodyHoles = true
	}
	c.cs.state = stuffMidLine
	c.holePrv = o.kind == holeText
	return nil
}

func (c *compiler) useField(i int) {
	if c.seen == nil {
		c.seen = make(map[int]bool)
	}
	if !c.seen[i] {
		c.seen[i] = true
		c.t.fields = append(c.t.fields, c.t.cols[i])
	}
}

// entity compiles one MIME entity (the message, or a part) at offset off.
func (c *compiler) entity(b []byte, off int, top bool) error {
	var hdr, body []byte
	bodyOff := off
	switch i := bytes.Index(b, []byte("\r\n\r\n")); {
	case bytes.HasPrefix(b, []byte("\r\n")):
		body, bodyOff = b[2:], off+2
	case i >= 0:
		hdr, body, bodyOff = b[:i+2], b[i+4:], off+i+4
	default:
		hdr = b
		if !bytes.HasSuffix(hdr, []byte("\r\n")) {
			hdr = append(hdr[:len(hdr):len(hdr)], '\r', '\n')
		}
	}
	if top && len(hdr) == 0 {
		return &TemplateError{Line: 1, Msg: "no header block"}
	}
	ctype, ctOff, cte, err := c.headers(hdr, off, top)
	if err != nil {
		return err
	}
	c.emitStatic([]byte("\r\n"), false)
	mt, params, err := mime.ParseMediaType(ctype)
	if ctype == "" {
		mt, err = "text/plain", nil
	}
	if err != nil {
		return c.errf(ctOff, "Content-Type %q: %v", ctype, err)
	}
	if strings.HasPrefix(mt, "multipart/") {
		if params["boundary"] == "" {
			return c.errf(ctOff, "multipart without a boundary parameter")
		}
		return c.multipart(body, bodyOff, params["boundary"])
	}
	html := mt == "text/html"
	switch cte = strings.ToLower(strings.TrimSpace(cte)); cte {
	case "", "7bit", "8bit", "binary":
		return c.text(body, bodyOff, html)
	case "quoted-printable":
		dec, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(body)))
		if err != nil {
			return c.errf(bodyOff, "quoted-printable body: %v", err)
		}
		if !bytes.Contains(dec, []byte("{{")) {
			c.emitStatic(body, false)
			return nil
		}
		return c.qp(dec, c.lineAt(bodyOff), html)
	case "base64":
		clean := make([]byte, 0, len(body))
		for _, ch := range body {
			if ch != '\r' && ch != '\n' && ch != ' ' && ch != '\t' {
				clean = append(clean, ch)
			}
		}
		dec, err := base64.StdEncoding.AppendDecode(nil, clean)
		if err != nil {
			return c.errf(bodyOff, "base64 body: %v", err)
		}
		if !bytes.Contains(dec, []byte("{{")) {
			c.emitStatic(body, false)
			return nil
		}
		text := strings.HasPrefix(mt, "text/")
		if text { // text/* content is CRLF-canonical (RFC 2045 §6.8)
			dec = canonicalCRLF(dec)
		}
		return c.base64(dec, c.lineAt(bodyOff), html, text)
	default:
		return c.errf(off, "unsupported Content-Transfer-Encoding %q", cte)
	}
}

var addressHeaders = []string{"from", "to", "cc", "bcc", "reply-to", "sender",
	"resent-from", "resent-to", "resent-cc", "resent-bcc", "resent-sender"}

// headers compiles a header block (whole lines, CRLF-terminated) at offset
// off and returns the unfolded Content-Type (and its offset) and
// Content-Transfer-Encoding.
func (c *compiler) headers(b []byte, off int, top bool) (ctype string, ctOff int, cte string, err error) {
	for len(b) > 0 {
		end := 0
		for {
			nl := bytes.IndexByte(b[end:], '\n')
			end += nl + 1
			if end >= len(b) || b[end] != ' ' && b[end] != '\t' {
				break
			}
		}
		f := b[:end]
		if !validFieldName(f) || bytes.IndexByte(f, ':') > bytes.IndexByte(f, '\r') {
			return "", 0, "", c.errf(off, "malformed header line %q", firstLine(f))
		}
		colon := bytes.IndexByte(f, ':')
		if bytes.Contains(f[:colon], []byte("{{")) {
			return "", 0, "", c.errf(off, "merge field in a header name")
		}
		name := string(f[:colon])
		value := strings.TrimSpace(strings.NewReplacer("\r\n", "").Replace(string(f[colon+1:])))
		if top {
			c.t.headers = append(c.t.headers, headerField{name, value})
		}
		switch lower := strings.ToLower(name); lower {
		case "content-type", "content-transfer-encoding", "mime-version":
			if bytes.Contains(f, []byte("{{")) {
				return "", 0, "", c.errf(off, "merge field not allowed in %s", name)
			}
			if lower == "content-type" {
				ctype, ctOff = value, off
			} else if lower == "content-transfer-encoding" {
				cte = value
			}
		}
		isAddr := false
		for _, a := range addressHeaders {
			if strings.EqualFold(name, a) {
				isAddr = true
			}
		}
		if err := c.headerField(f, colon+1, off, isAddr); err != nil {
			return "", 0, "", err
		}
		b, off = b[end:], off+end
	}
	return ctype, ctOff, cte, nil
}

func firstLine(b []byte) []byte {
	if i := bytes.IndexByte(b, '\r'); i >= 0 {
		return b[:i]
	}
	return b
}

// headerField compiles one field f (at offset off) whose value starts at
// f[vstart:].
func (c *compiler) headerField(f []byte, vstart, off int, isAddr bool) error {
	type piece struct {
		static []byte
		kind   holeKind
		name   string
		at     int
	}
	var ps []piece // statics at even indexes, holes at odd ones
	s0, pos := 0, vstart
	for {
		start, end, name, err := nextHole(f[pos:])
		if err != nil {
			return c.errf(off+pos, "%v", err)
		}
		if start < 0 {
			ps = append(ps, piece{static: f[s0:]})
			break
		}
		ps = append(ps, piece{static: f[s0 : pos+start]}, piece{kind: holeHeader, name: name, at: off + pos + start})
		pos += end
		s0 = pos
	}
	if isAddr {
		for i := 1; i < len(ps); i += 2 {
			before := bytes.TrimRight(ps[i-1].static, " \t")
			after := bytes.TrimLeft(ps[i+1].static, " \t")
			bl, al := byte(0), byte(0)
			if len(before) > 0 {
				bl = before[len(before)-1]
			}
			if len(after) > 0 {
				al = after[0]
			}
			if al == '\r' {
				al = 0
			}
			switch {
			case bl == '<',
				(bl == 0 || bl == ',' || bl == ':') && (al == 0 || al == ','):
				ps[i].kind = holeAddress
			default:
				ps[i].kind = holePhrase
				if b, a := ps[i-1].static, ps[i+1].static; len(b) > 0 && b[len(b)-1] == '"' && len(a) > 0 && a[0] == '"' {
					ps[i-1].static, ps[i+1].static = b[:len(b)-1], a[1:]
				}
			}
		}
	}
	for i, p := range ps {
		if i%2 == 0 {
			c.emitStatic(p.static, false)
			continue
		}
		if err := c.emitHole(op{kind: p.kind, line: c.lineAt(p.at)}, p.name, false); err != nil {
			return err
		}
	}
	return nil
}

// text compiles a 7bit/8bit body at offset off.
func (c *compiler) text(b []byte, off int, html bool) error {
	for {
		start, end, name, err := nextHole(b)
		if err != nil {
			return c.errf(off+start, "%v", err)
		}
		if start < 0 {
			c.emitStatic(b, false)
			return nil
		}
		c.emitStatic(b[:start], false)
		if err := c.emitHole(op{kind: holeText, html: html, line: c.lineAt(off + start)}, name, true); err != nil {
			return err
		}
		b, off = b[end:], off+end
	}
}

// qp compiles a decoded quoted-printable body whose first line is line.
func (c *compiler) qp(dec []byte, line int, html bool) error {
	for {
		start, end, name, err := nextHole(dec)
		if err != nil {
			return &TemplateError{Line: line, Msg: err.Error()}
		}
		if start < 0 {
			c.emitStatic(AppendQuotedPrintable(nil, dec), true)
			return nil
		}
		c.emitStatic(AppendQuotedPrintable(nil, dec[:start]), true)
		if err := c.emitHole(op{kind: holeQP, html: html, line: line + bytes.Count(dec[:start], []byte{'\n'})}, name, true); err != nil {
			return err
		}
		dec = dec[end:]
	}
}

// base64 compiles a decoded base64 body whose first line is line into one
// op that renders the whole part.
func (c *compiler) base64(dec []byte, line int, html, text bool) error {
	o := op{kind: holeBase64, line: line}
	for {
		start, end, name, err := nextHole(dec)
		if err != nil {
			return &TemplateError{Line: line, Msg: err.Error()}
		}
		if start < 0 {
			if len(dec) > 0 {
				o.b64 = append(o.b64, op{static: dec})
			}
			break
		}
		if start > 0 {
			o.b64 = append(o.b64, op{static: dec[:start]})
		}
		i, ok := c.lookup(name)
		if !ok {
			return c.unknown(line, name)
		}
		c.useField(i)
		o.b64 = append(o.b64, op{kind: holeText, col: i, html: html, text: text})
		dec = dec[end:]
	}
	c.flush()
	c.t.ops = append(c.t.ops, o)
	c.t.bodyHoles = true
	c.cs.state = stuffMidLine
	c.holePrv = false
	return nil
}

// multipart compiles a multipart body at offset off.
func (c *compiler) multipart(b []byte, off int, boundary string) error {
	delim := []byte("--" + boundary)
	// find returns the offset in b of the next delimiter line at or after
	// from (at the start of b, or after a CRLF), or -1.
	find := func(from int) int {
		if from == 0 && bytes.HasPrefix(b, delim) {
			return 0
		}
		i := bytes.Index(b[from:], append([]byte("\r\n"), delim...))
		if i < 0 {
			return -1
		}
		return from + i + 2
	}
	d := find(0)
	if d < 0 {
		return c.errf(off, "multipart boundary %q not found", boundary)
	}
	if err := c.text(b[:d], off, false); err != nil { // preamble
		return err
	}
	c.bounds = append(c.bounds, boundary)
	defer func() { c.bounds = c.bounds[:len(c.bounds)-1] }()
	for {
		rest := b[d+len(delim):]
		if bytes.HasPrefix(rest, []byte("--")) { // close delimiter
			c.emitStatic(b[d:], false) // close delimiter and epilogue
			return nil
		}
		eol := bytes.Index(rest, []byte("\r\n"))
		if eol < 0 {
			return c.errf(off+d, "multipart boundary line not terminated")
		}
		partStart := d + len(delim) + eol + 2
		c.emitStatic(b[d:partStart], false)
		next := find(partStart)
		if next < 0 {
			return c.errf(off+d, "multipart boundary %q not closed", boundary)
		}
		partEnd := max(next-2, partStart)
		if err := c.entity(b[partStart:partEnd], off+partStart, false); err != nil {
			return err
		}
		c.emitStatic(b[partEnd:next], false)
		d = next
	}
}
