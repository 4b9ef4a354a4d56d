package demo

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"sort"
)

// Provider is a group of demo domains that share one MX host set, the way
// every Google-hosted domain shares Google's MX.
type Provider struct {
	Name    string
	MX      []string
	Domains []string
	Share   float64 // fraction of the list's recipients
}

// Mix returns the demo's providers over about n domains: big mailbox
// providers (their MX hosts under gmail.test, yahoo.test, outlook.test so the
// demo tuning file's provider suffixes match), a hosting company whose MX
// set serves ten customer domains, a long tail of small domains with their
// own MX, and one null-MX domain (RFC 7505) whose recipients bounce.
func Mix(n int) []Provider {
	ps := []Provider{
		{Name: "gmail", MX: []string{"gmail-smtp-in.l.gmail.test", "alt1.gmail-smtp-in.l.gmail.test"}, Domains: []string{"gmail.test", "googlemail.test"}, Share: 0.32},
		{Name: "yahoo", MX: []string{"mta5.am0.yahoodns.yahoo.test", "mta6.am0.yahoodns.yahoo.test"}, Domains: []string{"yahoo.test", "ymail.test", "aol.test"}, Share: 0.14},
		{Name: "outlook", MX: []string{"olc.protection.outlook.test"}, Domains: []string{"outlook.test", "hotmail.test", "live.test"}, Share: 0.16},
	}
	hosting := Provider{Name: "hostingco", MX: []string{"mx1.hostingco.test", "mx2.hostingco.test"}, Share: 0.10}
	for i := 1; i <= 10; i++ {
		hosting.Domains = append(hosting.Domains, fmt.Sprintf("shop%d.test", i))
	}
	ps = append(ps, hosting)
	tail := max(n-len(ps[0].Domains)-len(ps[1].Domains)-len(ps[2].Domains)-10-1, 1)
	share := 0.275 / float64(tail)
	for i := 1; i <= tail; i++ {
		d := fmt.Sprintf("company%03d.test", i)
		ps = append(ps, Provider{Name: d, MX: []string{"mx." + d}, Domains: []string{d}, Share: share})
	}
	ps = append(ps, Provider{Name: "nullmx", Domains: []string{"nomail.test"}, Share: 0.005})
	return ps
}

// Zone builds the DNS zone for the providers: every MX host resolves to ip.
func ZoneFor(ps []Provider, ip string) *Zone {
	z := NewZone()
	for _, p := range ps {
		for _, d := range p.Domains {
			if len(p.MX) == 0 {
				z.AddNullMX(d)
				continue
			}
			z.AddMX(d, p.MX...)
		}
		for _, h := range p.MX {
			z.AddA(h, ip)
		}
	}
	return z
}

var (
	firstNames = []string{"Ann", "Bob", "Chloé", "Dmitri", "Eva", "Farid", "Grace", "Hiro", "Inès", "José", "Kemal", "Lena", "Mia", "Noah", "Olu", "Priya"}
	cities     = []string{"Lyon", "Porto", "Kraków", "Gent", "Turku", "Bilbao", "Graz", "Malmö"}
	plans      = []string{"free", "plus", "pro"}
)

// WriteList writes n recipients over the providers' domains (weighted by
// Share, deterministic for seed) as CSV with columns email, first_name,
// city, plan, unsubscribe_url. About 0.5 % of the recipients (at most one per
// domain) are permfail@, which the sink refuses with 550 5.1.1, and badRows malformed rows
// are mixed in to show how the reader reports and skips them.
func WriteList(w io.Writer, n int, ps []Provider, seed uint64, badRows int) error {
	return WriteListWith(w, n, ps, seed, ListOptions{BadRows: badRows})
}

// ListOptions tune WriteListWith.
type ListOptions struct {
	// BadRows malformed rows are mixed in (as WriteList's badRows).
	BadRows int
	// NoPermfail leaves out the scripted permfail@ recipients, so that every
	// row is a deliverable userNNNNNN@ address (for benchmarks that count
	// deliveries). The random draws are the same, so the rest of the list
	// is unchanged.
	NoPermfail bool
}

// WriteListWith is WriteList with options; WriteListWith(w, n, ps, seed,
// ListOptions{BadRows: b}) writes exactly what WriteList(w, n, ps, seed, b)
// does.
func WriteListWith(w io.Writer, n int, ps []Provider, seed uint64, o ListOptions) error {
	badRows := o.BadRows
	rng := rand.New(rand.NewPCG(seed, seed+1))
	type dom struct {
		name string
		cum  float64
	}
	var doms []dom
	total := 0.0
	for _, p := range ps {
		for _, d := range p.Domains {
			total += p.Share / float64(len(p.Domains))
			doms = append(doms, dom{d, total})
		}
	}
	bw := bufio.NewWriter(w)
	fmt.Fprintln(bw, "email,first_name,city,plan,unsubscribe_url")
	failed := map[string]bool{}
	badEvery := 0
	if badRows > 0 {
		badEvery = n / (badRows + 1)
	}
	for i := 0; i < n; i++ {
		x := rng.Float64() * total
		j := sort.Search(len(doms), func(k int) bool { return doms[k].cum >= x })
		if j == len(doms) {
			j--
		}
		local := fmt.Sprintf("user%06d", i)
		if rng.IntN(200) == 0 && !o.NoPermfail && !failed[doms[j].name] {
			// The sink refuses this local part with 550 5.1.1 (one per domain:
			// the reader drops duplicate addresses).
			local, failed[doms[j].name] = "permfail", true
		}
		fmt.Fprintf(bw, "%s@%s,%s,%s,%s,https://news.example.com/u?r=%d\n", local, doms[j].name, firstNames[rng.IntN(len(firstNames))],
			cities[rng.IntN(len(cities))], plans[rng.IntN(len(plans))], i)
		if badEvery > 0 && i > 0 && i%badEvery == 0 && badRows > 0 {
			badRows--
			if badRows%2 == 0 {
				fmt.Fprintf(bw, "not-an-address,Bad,Row,free,https://x\n")
			} else {
				fmt.Fprintf(bw, "short@row.test,only-two-columns\n")
			}
		}
	}
	return bw.Flush()
}
