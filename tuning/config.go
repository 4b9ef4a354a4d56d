package tuning

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// Error is a configuration error. Every error from Parse and Load is an
// *Error naming the file, the line (1-based; 0 only when the whole file is
// at fault, e.g. it cannot be read) and the dotted key
// (domain.'example.com'.connection_limit, rule[1].pattern: TOML syntax).
type Error struct {
	File string
	Line int
	Key  string
	Msg  string
}

// Error formats e as `tuning.toml:14: key "default.conection_limit": unknown key (did you mean "connection_limit"?)`.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Key != "" {
		fmt.Fprintf(&b, "key %q: ", e.Key)
	}
	b.WriteString(e.Msg)
	return b.String()
}

// layer is one set of overrides with a mask of what it sets and where.
type layer struct {
	name  string // "default", "provider:google", ...
	set   []bool // indexed like fields
	where []string
	s     Settings
}

func newLayer(name string) *layer {
	return &layer{name: name, set: make([]bool, len(fields)), where: make([]string, len(fields))}
}

type providerDef struct {
	Provider
	layer *layer
}

// Config is a loaded, validated configuration. It is immutable after Parse
// returns, so any goroutine may call its methods concurrently.
type Config struct {
	file      string
	def       *layer
	providers []providerDef
	sites     map[string]*layer // by MX host name
	domains   map[string]*layer
	sources   []Source
	srcLayers map[string]*layer
	pools     map[string]Pool
	poolNames []string
	pool      string
	suppress  string
	rules     []Rule
	bounce    []BounceRule
}

// Load reads and parses the file at path. A relative suppression_file is
// resolved against the file's directory.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{File: path, Msg: err.Error()}
	}
	c, err := Parse(path, data)
	if err != nil {
		return nil, err
	}
	if c.suppress != "" && !filepath.IsAbs(c.suppress) {
		c.suppress = filepath.Join(filepath.Dir(path), c.suppress)
	}
	return c, nil
}

// Parse parses data; name is used in errors and in Explain's Where. Empty
// data gives the built-in defaults. On failure the error is one *Error: the
// first problem in file order.
func Parse(name string, data []byte) (*Config, error) {
	c, err := parseNoDefaults(name, data)
	if err != nil {
		return nil, err
	}
	c.bounce = append(c.bounce, defaultBounceRules...)
	return c, nil
}

func parseNoDefaults(name string, data []byte) (*Config, error) {
	raw := map[string]any{}
	if err := toml.Unmarshal(data, &raw); err != nil {
		return nil, decodeError(name, data, err)
	}
	d := &decoder{file: name, idx: indexLines(data), c: &Config{
		file:      name,
		def:       newLayer("default"),
		sites:     map[string]*layer{},
		domains:   map[string]*layer{},
		srcLayers: map[string]*layer{},
		pools:     map[string]Pool{},
	}}
	d.document(raw)
	if len(d.errs) > 0 {
		sort.SliceStable(d.errs, func(i, j int) bool { return d.errs[i].Line < d.errs[j].Line })
		return nil, d.errs[0]
	}
	return d.c, nil
}

func decodeError(name string, data []byte, err error) error {
	var de *toml.DecodeError
	if errors.As(err, &de) {
		line, _ := de.Position()
		key := strings.Join(de.Key(), ".")
		if key == "" {
			key = keyOnLine(data, line)
		}
		return &Error{File: name, Line: line, Key: key, Msg: "syntax error: " + strings.TrimPrefix(de.Error(), "toml: ")}
	}
	// go-toml reports some errors (a key defined twice) without a position.
	if x := indexLines(data); x.dup != nil {
		return &Error{File: name, Line: x.dupLine, Key: x.dup.String(), Msg: strings.TrimPrefix(err.Error(), "toml: ")}
	}
	return &Error{File: name, Line: 1, Msg: err.Error()}
}

// keyOnLine guesses the key of a syntax error from its line: the text before
// '=' (prefixed by the enclosing [table] header) or the header itself.
func keyOnLine(data []byte, line int) string {
	lines := bytes.Split(data, []byte("\n"))
	if line < 1 || line > len(lines) {
		return ""
	}
	l := strings.TrimSpace(string(lines[line-1]))
	if strings.HasPrefix(l, "[") {
		return strings.Trim(l, "[] \t\r")
	}
	k, _, ok := strings.Cut(l, "=")
	if !ok {
		return ""
	}
	k = strings.TrimSpace(k)
	for i := line - 2; i >= 0; i-- {
		h := strings.TrimSpace(string(lines[i]))
		if strings.HasPrefix(h, "[") {
			if t, _, ok := strings.Cut(strings.TrimLeft(h, "["), "]"); ok {
				return strings.TrimSpace(t) + "." + k
			}
			break
		}
	}
	return k
}

type decoder struct {
	file string
	idx  *lineIndex
	c    *Config
	errs []*Error
}

func (d *decoder) where(p keyPath) string {
	return d.file + ":" + strconv.Itoa(d.idx.line(p))
}

func (d *decoder) errorf(p keyPath, format string, args ...any) {
	d.errs = append(d.errs, &Error{File: d.file, Line: d.idx.line(p), Key: p.String(), Msg: fmt.Sprintf(format, args...)})
}

func (d *decoder) unknown(p keyPath, candidates []string) {
	msg := "unknown key"
	if s := suggest(p[len(p)-1], candidates); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	}
	d.errorf(p, "%s", msg)
}

// sortedKeys returns m's keys in file order (then by name), so the first
// error reported is the first in the file.
func (d *decoder) sortedKeys(p keyPath, m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		li, lj := d.idx.line(p.child(keys[i])), d.idx.line(p.child(keys[j]))
		if li != lj {
			return li < lj
		}
		return keys[i] < keys[j]
	})
	return keys
}

func (d *decoder) table(p keyPath, v any) (map[string]any, bool) {
	m, ok := v.(map[string]any)
	if !ok {
		d.errorf(p, "%s", typeError("a table", v))
	}
	return m, ok
}

var topKeys = []string{"default", "provider", "site", "domain", "source", "pool", "campaign", "rule", "bounce_rule"}

func (d *decoder) document(raw map[string]any) {
	// Providers first: rules and warm-ups refer to them.
	if v, ok := raw["provider"]; ok {
		d.named(keyPath{"provider"}, v, d.provider)
	}
	if v, ok := raw["source"]; ok {
		d.named(keyPath{"source"}, v, d.source)
	}
	for _, k := range d.sortedKeys(nil, raw) {
		p := keyPath{k}
		v := raw[k]
		switch k {
		case "provider", "source":
		case "default":
			if m, ok := d.table(p, v); ok {
				d.layer(p, m, d.c.def, nil)
			}
		case "site":
			d.named(p, v, func(p keyPath, name string, m map[string]any) {
				l := newLayer("site:" + name)
				d.layer(p, m, l, nil)
				if _, dup := d.c.sites[normHost(name)]; dup {
					d.errorf(p, "site %q is already defined (names compare without case or trailing dot)", name)
				}
				d.c.sites[normHost(name)] = l
			})
		case "domain":
			d.named(p, v, func(p keyPath, name string, m map[string]any) {
				l := newLayer("domain:" + name)
				d.layer(p, m, l, nil)
				if _, dup := d.c.domains[normHost(name)]; dup {
					d.errorf(p, "domain %q is already defined (names compare without case)", name)
				}
				d.c.domains[normHost(name)] = l
			})
		case "pool":
			d.named(p, v, d.pool)
		case "campaign":
			if m, ok := d.table(p, v); ok {
				d.campaign(p, m)
			}
		case "rule":
			d.array(p, v, d.rule)
		case "bounce_rule":
			d.array(p, v, d.bounceRule)
		default:
			d.unknown(p, topKeys)
		}
	}
	if d.c.pool == "" {
		if _, ok := d.c.pools["default"]; ok {
			d.c.pool = "default"
		} else if len(d.c.poolNames) == 1 {
			d.c.pool = d.c.poolNames[0]
		}
	}
}

// named decodes a table of named tables ([provider.NAME]) in file order.
func (d *decoder) named(p keyPath, v any, f func(p keyPath, name string, m map[string]any)) {
	outer, ok := d.table(p, v)
	if !ok {
		return
	}
	for _, name := range d.sortedKeys(p, outer) {
		q := p.child(name)
		if m, ok := d.table(q, outer[name]); ok {
			f(q, name, m)
		}
	}
}

// array decodes an array of tables ([[rule]]).
func (d *decoder) array(p keyPath, v any, f func(p keyPath, m map[string]any)) {
	list, ok := v.([]any)
	if !ok {
		if m, ok := v.(map[string]any); ok { // [rule] written as one table
			f(p, m)
			return
		}
		d.errorf(p, "%s", typeError("an array of tables ([[...]])", v))
		return
	}
	for i, e := range list {
		q := p.index(i)
		if m, ok := d.table(q, e); ok {
			f(q, m)
		}
	}
}

// layer decodes the layered settings of m into l; extra handles the keys
// that are not settings (match_mx, source_address, ...) and reports whether
// it knew the key.
func (d *decoder) layer(p keyPath, m map[string]any, l *layer, extra map[string]func(keyPath, any)) {
	for _, k := range d.sortedKeys(p, m) {
		q := p.child(k)
		v := m[k]
		if f, ok := extra[k]; ok {
			f(q, v)
			continue
		}
		if k == "timeouts" {
			tm, ok := d.table(q, v)
			if !ok {
				continue
			}
			for _, tk := range d.sortedKeys(q, tm) {
				i, ok := fieldByName["timeouts."+tk]
				if !ok {
					d.unknown(q.child(tk), timeoutKeys())
					continue
				}
				d.setField(q.child(tk), l, i, tm[tk])
			}
			continue
		}
		i, ok := fieldByName[k]
		if !ok || strings.HasPrefix(k, "timeouts.") {
			cands := layerKeys()
			for e := range extra {
				cands = append(cands, e)
			}
			d.unknown(q, cands)
			continue
		}
		d.setField(q, l, i, v)
	}
}

func (d *decoder) setField(p keyPath, l *layer, i int, v any) {
	if l.set[i] {
		d.errorf(p, "%s set twice in this table (an alias names the same setting)", fields[i].key)
		return
	}
	if err := fields[i].parse(&l.s, v); err != nil {
		d.errorf(p, "%v", err)
		return
	}
	l.set[i] = true
	l.where[i] = d.where(p)
}

func layerKeys() []string {
	var ks []string
	for _, f := range fields {
		if !strings.HasPrefix(f.key, "timeouts.") {
			ks = append(ks, f.key)
		}
		ks = append(ks, f.aliases...)
	}
	return append(ks, "timeouts")
}

func timeoutKeys() []string {
	var ks []string
	for _, f := range fields {
		if t, ok := strings.CutPrefix(f.key, "timeouts."); ok {
			ks = append(ks, t)
		}
	}
	return ks
}

func (d *decoder) str(p keyPath, v any) (string, bool) {
	s, ok := v.(string)
	if !ok {
		d.errorf(p, "%s", typeError("a string", v))
	}
	return s, ok
}

func (d *decoder) strings(p keyPath, v any) ([]string, bool) {
	if s, ok := v.(string); ok {
		return []string{s}, true
	}
	list, ok := v.([]any)
	if !ok {
		d.errorf(p, "%s", typeError("an array of strings", v))
		return nil, false
	}
	out := make([]string, 0, len(list))
	for i, e := range list {
		s, ok := d.str(p.index(i), e)
		if !ok {
			return nil, false
		}
		out = append(out, s)
	}
	return out, true
}

func normHost(h string) string { return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(h)), ".") }

func (d *decoder) provider(p keyPath, name string, m map[string]any) {
	pd := providerDef{Provider: Provider{Name: name}, layer: newLayer("provider:" + name)}
	d.layer(p, m, pd.layer, map[string]func(keyPath, any){
		"match_mx": func(q keyPath, v any) {
			list, ok := d.strings(q, v)
			if !ok {
				return
			}
			for i, s := range list {
				s = normHost(s)
				if s == "" || s == "." {
					d.errorf(q.index(i), "empty MX suffix")
					return
				}
				pd.MXSuffix = append(pd.MXSuffix, s)
			}
		},
	})
	if v, ok := m["match_mx"]; !ok {
		d.errorf(p, "provider needs match_mx (MX host suffixes such as \".google.com\")")
	} else if list, isList := v.([]any); isList && len(list) == 0 {
		d.errorf(p.child("match_mx"), "match_mx is empty: the provider would match nothing")
	}
	d.c.providers = append(d.c.providers, pd)
}

func (d *decoder) hasProvider(name string) bool {
	for _, p := range d.c.providers {
		if p.Name == name {
			return true
		}
	}
	return false
}

func (d *decoder) providerRef(q keyPath, v any) (string, bool) {
	s, ok := d.str(q, v)
	if !ok {
		return "", false
	}
	if !d.hasProvider(s) {
		var names []string
		for _, p := range d.c.providers {
			names = append(names, p.Name)
		}
		msg := fmt.Sprintf("unknown provider %q", s)
		if g := suggest(s, names); g != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", g)
		}
		d.errorf(q, "%s", msg)
		return "", false
	}
	return s, true
}

func (d *decoder) source(p keyPath, name string, m map[string]any) {
	src := Source{Name: name}
	l := newLayer("source:" + name)
	d.layer(p, m, l, map[string]func(keyPath, any){
		"source_address": func(q keyPath, v any) {
			s, ok := d.str(q, v)
			if !ok {
				return
			}
			a, err := netip.ParseAddr(strings.TrimSpace(s))
			if err != nil {
				d.errorf(q, "bad IP address %q", s)
				return
			}
			src.Address = a
		},
		"ehlo_name": func(q keyPath, v any) {
			if s, ok := d.str(q, v); ok {
				if strings.ContainsAny(s, " \t\r\n<>") || s == "" {
					d.errorf(q, "bad EHLO name %q", s)
					return
				}
				src.EHLOName = s
			}
		},
		"warmup": func(q keyPath, v any) {
			if _, ok := v.(map[string]any); ok {
				v = []any{v}
			}
			list, ok := v.([]any)
			if !ok {
				d.errorf(q, "%s", typeError("a table or an array of tables", v))
				return
			}
			seen := map[string]bool{}
			for i, e := range list {
				eq := q
				if len(list) > 1 || d.idx.lines[q.index(i).id()] != 0 {
					eq = q.index(i)
				}
				m, ok := d.table(eq, e)
				if !ok {
					continue
				}
				w, ok := d.warmup(eq, m)
				if !ok {
					continue
				}
				if seen[w.Provider] {
					d.errorf(eq, "second warm-up schedule for provider %q", w.Provider)
					continue
				}
				seen[w.Provider] = true
				src.Warmups = append(src.Warmups, w)
			}
		},
	})
	for i := range src.Warmups {
		if src.Warmups[i].Provider == "" {
			src.Warmup = &src.Warmups[i]
		}
	}
	if src.Warmup == nil && len(src.Warmups) > 0 {
		src.Warmup = &src.Warmups[0]
	}
	d.c.sources = append(d.c.sources, src)
	d.c.srcLayers[name] = l
}

func (d *decoder) warmup(p keyPath, m map[string]any) (Warmup, bool) {
	var w Warmup
	ok := true
	for _, k := range d.sortedKeys(p, m) {
		q, v := p.child(k), m[k]
		switch k {
		case "start":
			t, err := toDate(v)
			if err != nil {
				d.errorf(q, "%v", err)
				ok = false
			}
			w.Start = t
		case "caps":
			list, isList := v.([]any)
			if !isList || len(list) == 0 {
				d.errorf(q, "want a non-empty array of daily caps such as [50, 100, 200]")
				ok = false
				continue
			}
		caps:
			for i, e := range list {
				n, isInt := e.(int64)
				switch {
				case !isInt:
					d.errorf(q.index(i), "%s", typeError("an integer", e))
				case n <= 0:
					d.errorf(q.index(i), "cap %d on day %d: caps must be at least 1", n, i)
				case i > 0 && uint64(n) < w.Caps[i-1]:
					d.errorf(q.index(i), "cap %d on day %d is below day %d's %d: caps must not decrease", n, i, i-1, w.Caps[i-1])
				default:
					w.Caps = append(w.Caps, uint64(n))
					continue
				}
				ok = false
				break caps
			}
		case "provider":
			s, good := d.providerRef(q, v)
			ok = ok && good
			w.Provider = s
		default:
			d.unknown(q, []string{"start", "caps", "provider"})
			ok = false
		}
	}
	if _, has := m["start"]; !has && ok {
		d.errorf(p, "warm-up needs start (a date such as 2026-11-01)")
		ok = false
	}
	if _, has := m["caps"]; !has && ok {
		d.errorf(p, "warm-up needs caps")
		ok = false
	}
	return w, ok
}

// toDate accepts a TOML date, date-time, or a string "2026-11-01" or RFC 3339.
// Local dates and times are UTC.
func toDate(v any) (time.Time, error) {
	switch v := v.(type) {
	case toml.LocalDate:
		return v.AsTime(time.UTC), nil
	case toml.LocalDateTime:
		return v.AsTime(time.UTC), nil
	case time.Time:
		return v, nil
	case string:
		if t, err := time.Parse(time.DateOnly, v); err == nil {
			return t, nil
		}
		if t, err := time.Parse(time.RFC3339, v); err == nil {
			return t, nil
		}
		return time.Time{}, fmt.Errorf("bad date %q (want 2026-11-01 or RFC 3339)", v)
	}
	return time.Time{}, typeError("a date such as 2026-11-01", v)
}

func (d *decoder) pool(p keyPath, name string, m map[string]any) {
	pool := Pool{Name: name}
	for _, k := range d.sortedKeys(p, m) {
		q, v := p.child(k), m[k]
		if k != "members" {
			d.unknown(q, []string{"members"})
			continue
		}
		list, ok := v.([]any)
		if !ok {
			d.errorf(q, "%s", typeError("an array of {source, weight} tables", v))
			continue
		}
		seen := map[string]bool{}
		for i, e := range list {
			eq := q.index(i)
			mem := PoolMember{Weight: 1}
			switch e := e.(type) {
			case string:
				mem.Source = e
			case map[string]any:
				for _, mk := range d.sortedKeys(eq, e) {
					switch mk {
					case "source":
						mem.Source, _ = d.str(eq.child(mk), e[mk])
					case "weight":
						n, err := toInt(e[mk], 1)
						if err != nil {
							d.errorf(eq.child(mk), "%v", err)
						}
						mem.Weight = n
					default:
						d.unknown(eq.child(mk), []string{"source", "weight"})
					}
				}
			default:
				d.errorf(eq, "%s", typeError("a {source, weight} table or a source name", e))
				continue
			}
			sq := eq
			if _, ok := e.(map[string]any); ok {
				sq = eq.child("source")
			}
			if _, ok := d.c.srcLayers[mem.Source]; !ok {
				names := make([]string, 0, len(d.c.sources))
				for _, s := range d.c.sources {
					names = append(names, s.Name)
				}
				msg := fmt.Sprintf("unknown source %q", mem.Source)
				if g := suggest(mem.Source, names); g != "" {
					msg += fmt.Sprintf(" (did you mean %q?)", g)
				}
				d.errorf(sq, "%s", msg)
				continue
			}
			if seen[mem.Source] {
				d.errorf(sq, "source %q listed twice", mem.Source)
				continue
			}
			seen[mem.Source] = true
			pool.Members = append(pool.Members, mem)
		}
	}
	if len(pool.Members) == 0 {
		if _, has := m["members"]; !has {
			d.errorf(p, "pool needs members")
		}
	}
	d.c.pools[name] = pool
	d.c.poolNames = append(d.c.poolNames, name)
}

func (d *decoder) campaign(p keyPath, m map[string]any) {
	for _, k := range d.sortedKeys(p, m) {
		q, v := p.child(k), m[k]
		switch k {
		case "pool":
			s, ok := d.str(q, v)
			if !ok {
				continue
			}
			if _, ok := d.c.pools[s]; !ok && !d.poolDeclared(s) {
				d.errorf(q, "unknown pool %q", s)
				continue
			}
			d.c.pool = s
		case "suppression_file":
			d.c.suppress, _ = d.str(q, v)
		default:
			d.unknown(q, []string{"pool", "suppression_file"})
		}
	}
}

// poolDeclared reports whether a [pool.NAME] table exists, whether or not
// it has been decoded yet (campaign may come before pool in the file).
func (d *decoder) poolDeclared(name string) bool {
	_, ok := d.idx.lines[keyPath{"pool", name}.id()]
	return ok
}

var reCode = regexp.MustCompile(`^[245](\d\d|\.\d{1,3}(\.\d{1,3})?)$`)

func (d *decoder) rule(p keyPath, m map[string]any) {
	r := Rule{Name: p.String()}
	for _, k := range d.sortedKeys(p, m) {
		q, v := p.child(k), m[k]
		switch k {
		case "name":
			r.Name, _ = d.str(q, v)
		case "provider":
			r.Provider, _ = d.providerRef(q, v)
		case "pattern":
			if s, ok := d.str(q, v); ok {
				if _, err := regexp.Compile(s); err != nil {
					d.errorf(q, "bad regular expression: %v", strings.TrimPrefix(err.Error(), "error parsing regexp: "))
					continue
				}
				r.Pattern = s
			}
		case "codes":
			list, ok := d.strings(q, v)
			if !ok {
				if n, isInt := v.(int64); isInt { // codes = 421
					list, ok = []string{strconv.FormatInt(n, 10)}, true
				}
			}
			for i, c := range list {
				if !reCode.MatchString(c) {
					d.errorf(q.index(i), "bad code %q (want a reply code such as \"421\" or an enhanced code such as \"4.7.0\")", c)
					ok = false
					break
				}
			}
			if ok {
				r.Codes = list
			}
		case "trigger":
			t, err := toThrottle(v)
			if err != nil {
				d.errorf(q, "%v", err)
			}
			r.Trigger = t
		case "action":
			s, ok := d.str(q, v)
			if !ok {
				continue
			}
			switch strings.ToLower(s) {
			case "suspend":
				r.Action = ActionSuspend
			case "throttle":
				r.Action = ActionThrottle
			case "bounce":
				r.Action = ActionBounce
			default:
				d.errorf(q, "unknown action %q (want suspend, throttle or bounce)", s)
			}
		case "duration":
			dur, err := toDuration(v)
			if err != nil {
				d.errorf(q, "%v", err)
			}
			r.Duration = dur
		case "rate":
			t, err := toThrottle(v)
			if err != nil {
				d.errorf(q, "%v", err)
			}
			r.Rate = t
		default:
			d.unknown(q, []string{"name", "provider", "pattern", "codes", "trigger", "action", "duration", "rate"})
		}
	}
	_, hasAction := m["action"]
	switch {
	case !hasAction:
		d.errorf(p, "rule needs an action (suspend, throttle or bounce)")
	case m["pattern"] == nil && m["codes"] == nil:
		d.errorf(p, "rule needs a pattern or codes (it would match every reply)")
	case (r.Action == ActionSuspend || r.Action == ActionThrottle) && m["duration"] == nil:
		d.errorf(p.child("action"), "action %q needs a duration", m["action"])
	case r.Action == ActionThrottle && m["rate"] == nil:
		d.errorf(p.child("action"), "action \"throttle\" needs a rate")
	}
	d.c.rules = append(d.c.rules, r)
}

// BounceClasses are the classes a bounce rule may name.
var BounceClasses = []string{"invalid-recipient", "bad-domain", "mailbox-full", "policy", "rate-limited", "other"}

var reEnhanced = regexp.MustCompile(`^[245](\.\d{1,3}){0,2}$`)

func (d *decoder) bounceRule(p keyPath, m map[string]any) {
	var b BounceRule
	for _, k := range d.sortedKeys(p, m) {
		q, v := p.child(k), m[k]
		switch k {
		case "class":
			s, ok := d.str(q, v)
			if !ok {
				continue
			}
			known := false
			for _, c := range BounceClasses {
				known = known || c == s
			}
			if !known {
				msg := fmt.Sprintf("unknown class %q (want one of %s)", s, strings.Join(BounceClasses, ", "))
				d.errorf(q, "%s", msg)
				continue
			}
			b.Class = s
		case "enhanced":
			if s, ok := d.str(q, v); ok {
				if !reEnhanced.MatchString(s) {
					d.errorf(q, "bad enhanced status code prefix %q (want \"5.1.1\" or \"5.7\")", s)
					continue
				}
				b.Enhanced = s
			}
		case "code":
			n, err := toInt(v, 0)
			if err == nil && (n < 200 || n > 599) {
				err = fmt.Errorf("reply code %d out of range", n)
			}
			if err != nil {
				d.errorf(q, "%v", err)
				continue
			}
			b.Code = n
		case "pattern":
			if s, ok := d.str(q, v); ok {
				if _, err := regexp.Compile(s); err != nil {
					d.errorf(q, "bad regular expression: %v", strings.TrimPrefix(err.Error(), "error parsing regexp: "))
					continue
				}
				b.Pattern = s
			}
		default:
			d.unknown(q, []string{"class", "enhanced", "code", "pattern"})
		}
	}
	if m["class"] == nil {
		d.errorf(p, "bounce rule needs a class")
	} else if m["enhanced"] == nil && m["code"] == nil && m["pattern"] == nil {
		d.errorf(p, "bounce rule needs enhanced, code or pattern")
	}
	d.c.bounce = append(d.c.bounce, b)
}

// suggest returns the candidate closest to k (edit distance at most 2, or a
// third of k's length), or "".
func suggest(k string, candidates []string) string {
	best, bestD := "", 1<<30
	limit := max(2, len(k)/3)
	for _, c := range candidates {
		if dd := editDistance(strings.ToLower(k), c); dd < bestD && dd <= limit {
			best, bestD = c, dd
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
