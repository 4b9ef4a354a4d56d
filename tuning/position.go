package tuning

import (
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// Line numbers. go-toml/v2 decodes the document into map[string]any (and
// reports syntax errors, duplicate keys and type clashes with a position);
// it keeps no positions for the values it decodes. So a second pass over the
// same bytes with go-toml's unstable parser records the line of every table
// header and key, indexed by the key's path. Array elements are path segments
// "[0]", "[1]", ...; an [[array.table]] header counts its occurrences.

// keyPath is a path of TOML keys from the document root. Segments starting
// with '[' are array indices.
type keyPath []string

func (p keyPath) child(k string) keyPath {
	c := make(keyPath, len(p), len(p)+1)
	copy(c, p)
	return append(c, k)
}

func (p keyPath) index(i int) keyPath { return p.child("[" + strconv.Itoa(i) + "]") }

func (p keyPath) id() string { return strings.Join(p, "\x1f") }

// String renders p as a TOML dotted key with indices: domain.'example.com'.connection_limit, rule[2].pattern.
func (p keyPath) String() string {
	var b strings.Builder
	for i, k := range p {
		if strings.HasPrefix(k, "[") {
			b.WriteString(k)
			continue
		}
		if i > 0 {
			b.WriteByte('.')
		}
		if isBareKey(k) {
			b.WriteString(k)
		} else if !strings.ContainsAny(k, "'\n\r") {
			b.WriteString("'" + k + "'") // a TOML literal key: reads well inside %q
		} else {
			b.WriteString(strconv.Quote(k))
		}
	}
	return b.String()
}

func isBareKey(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// lineIndex maps key paths to the line that defines them.
type lineIndex struct {
	lines  map[string]int
	arrays map[string]int // array-table path id → number of elements so far

	dup     keyPath // the first key defined twice, for go-toml errors without a position
	dupLine int
}

func (x *lineIndex) set(p keyPath, line int) {
	if _, ok := x.lines[p.id()]; !ok {
		x.lines[p.id()] = line
	}
}

// line returns the line of p, or of its nearest indexed ancestor, or 0.
func (x *lineIndex) line(p keyPath) int {
	for n := len(p); n > 0; n-- {
		if l, ok := x.lines[p[:n].id()]; ok {
			return l
		}
	}
	return 0
}

// indexLines builds the index. Errors are ignored: the caller has already
// decoded data successfully with go-toml.
func indexLines(data []byte) *lineIndex {
	x := &lineIndex{lines: map[string]int{}, arrays: map[string]int{}}
	var p unstable.Parser
	p.Reset(data)
	var table keyPath
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			keys, line := x.keys(&p, e.Key())
			table = x.resolve(keys)
			if e.Kind == unstable.ArrayTable {
				n := x.arrays[table.id()]
				x.arrays[table.id()] = n + 1
				x.set(table, line)
				table = table.index(n)
			}
			x.set(table, line)
		case unstable.KeyValue:
			x.keyValue(&p, table, e)
		}
	}
	return x
}

// resolve maps a header's keys to a path, inserting the current (last)
// index after every prefix that names an array of tables.
func (x *lineIndex) resolve(keys []string) keyPath {
	var out keyPath
	for i, k := range keys {
		out = out.child(k)
		if i < len(keys)-1 {
			if n, ok := x.arrays[out.id()]; ok && n > 0 {
				out = out.index(n - 1)
			}
		}
	}
	return out
}

func (x *lineIndex) keys(p *unstable.Parser, it unstable.Iterator) ([]string, int) {
	var keys []string
	line := 0
	for it.Next() {
		n := it.Node()
		if line == 0 {
			line = p.Shape(n.Raw).Start.Line
		}
		keys = append(keys, string(n.Data))
	}
	return keys, line
}

func (x *lineIndex) keyValue(p *unstable.Parser, base keyPath, kv *unstable.Node) {
	keys, line := x.keys(p, kv.Key())
	path := base
	for _, k := range keys {
		path = path.child(k)
		x.set(path, line)
	}
	if x.lines[path.id()] != line && x.dup == nil {
		x.dup, x.dupLine = path, line
	}
	x.value(p, path, kv.Value(), line)
}

func (x *lineIndex) value(p *unstable.Parser, path keyPath, v *unstable.Node, line int) {
	switch v.Kind {
	case unstable.InlineTable:
		it := v.Children()
		for it.Next() {
			if c := it.Node(); c.Kind == unstable.KeyValue {
				x.keyValue(p, path, c)
			}
		}
	case unstable.Array:
		it := v.Children()
		for i := 0; it.Next(); i++ {
			c := it.Node()
			el := path.index(i)
			l := line
			if c.Kind == unstable.InlineTable {
				if kv := c.Child(); kv != nil && kv.Valid() && kv.Kind == unstable.KeyValue {
					if _, kl := x.keys(p, kv.Key()); kl > 0 {
						l = kl
					}
				}
			} else if c.Raw.Length > 0 {
				l = p.Shape(c.Raw).Start.Line
			}
			x.set(el, l)
			x.value(p, el, c, l)
		}
	}
}
