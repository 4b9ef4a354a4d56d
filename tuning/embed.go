package tuning

import _ "embed"

// SampleConfig is tuning/sample.toml: every key, commented. It parses.
//
//go:embed sample.toml
var SampleConfig []byte

// DemoConfig is tuning/demo.toml, the configuration of `spate demo`:
// providers for the demo's *.gmail.test, *.yahoo.test and *.outlook.test
// style hosts, modest limits, two loopback sources in a pool, one warming up.
//
//go:embed demo.toml
var DemoConfig []byte

//go:embed bounce_rules.toml
var bounceRulesTOML []byte

// defaultBounceRules is bounce_rules.toml, decoded once.
var defaultBounceRules = func() []BounceRule {
	c, err := parseNoDefaults("bounce_rules.toml", bounceRulesTOML)
	if err != nil {
		panic("tuning: BUG: built-in bounce_rules.toml: " + err.Error())
	}
	return c.bounce
}()
