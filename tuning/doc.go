// Package tuning loads and explains spate's shaping configuration (TOML):
// layered per-destination settings (default < provider < site < domain <
// source), throttle specs, egress sources, pools, warm-up schedules, reply
// rules and bounce classes. It imports neither engine nor scheduler.
//
// # File format
//
// sample.toml (embedded as SampleConfig) shows every key with a comment;
// demo.toml (DemoConfig) is what `spate demo` runs with. Top-level tables:
//
//	[default]                 layer 1: settings for every path
//	[default.timeouts]        per-command timeouts (connect, greeting, ehlo, starttls, auth, mail, rcpt, data, data_block, final, quit)
//	[provider.NAME]           layer 2: match_mx = [".google.com", ...] plus settings
//	[site."MX-HOST"]          layer 3: settings for every MX set containing MX-HOST
//	[domain."DOMAIN"]         layer 4: settings for one recipient domain (exact match)
//	[source.NAME]             egress source (source_address, ehlo_name, warmup) plus layer 5 settings
//	[pool.NAME]               members = [{ source = "ip1", weight = 2 }, "ip2"]
//	[campaign]                pool, suppression_file
//	[[rule]]                  reply rules (name, provider, pattern, codes, trigger, action, duration, rate)
//	[[bounce_rule]]           bounce classes (class, enhanced, code, pattern), before the built-in set
//
// Settings (KumoMTA names; PowerMTA aliases in parentheses): connection_limit
// (max-smtp-out), max_connection_rate (max-connect-rate), max_message_rate
// (max-msg-rate), max_deliveries_per_connection (max-msg-per-connection),
// max_recipients_per_transaction (max-rcpt-per-message), idle_timeout,
// enable_tls (use-starttls: yes/no/required), retry_interval (retry-after),
// max_retry_interval, max_age (bounce-after), mx_rollup, chunking and
// pipeline_depth (spate's own: BDAT, RFC 3030, with whole transactions
// pipelined; off by default), and the timeouts
// table (also as KumoMTA's flat connect_timeout, ehlo_timeout,
// mail_from_timeout, rcpt_to_timeout, data_timeout, data_dot_timeout, ...).
// A table that sets one setting twice (a key and its alias) is an error.
// Throttles are ThrottleSpec text ("100/s", "1,000/h", "500/d,max_burst=10",
// "unlimited"); durations are ParseDuration text ("20m", "3d", "1h30m") or
// integer seconds.
//
// # Layers
//
// Resolve starts from Builtin() and applies, in order, [default], the
// provider, the site, the domain and the source; each layer overrides only
// the keys it sets. Matching:
//   - provider: MX hosts are tried in preference order; the first host that
//     matches any match_mx suffix decides, the longest suffix winning. A
//     suffix with a leading dot matches hosts below it; without one, it also
//     matches the host itself.
//   - site: the first MX host (in preference order) that names a [site]
//     table selects it. Host names compare without case or trailing dot.
//   - domain: the recipient domain, without case.
//   - source: Query.Source, by name.
//
// Explain returns each effective setting with the layer ("builtin",
// "default", "provider:NAME", "site:HOST", "domain:NAME", "source:NAME") and
// the file:line that set it.
//
// # Errors
//
// Unknown keys are rejected, with a suggestion when one is close. Every error
// is an *Error naming file, line and dotted key (rule[1].pattern,
// domain.'example.com'.max_age); Parse reports the first in file order.
// go-toml/v2 decodes the document into map[string]any and reports syntax
// errors with a position; because it keeps no positions for decoded values, a
// second pass with go-toml's unstable parser indexes the line of every key
// and table header by its path, and the semantic checks (throttle specs,
// limits, durations, addresses, unknown sources, providers and pools, regular
// expressions, warm-up caps that are zero or decrease, rule actions without
// a duration or rate) look their line up there.
//
// A Config is immutable once loaded: every method is safe for concurrent use,
// and slices returned are copies.
package tuning
