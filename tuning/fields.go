package tuning

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// String returns the enable_tls spelling of m.
func (m TLSMode) String() string {
	switch m {
	case TLSOpportunistic:
		return "opportunistic"
	case TLSOpportunisticInsecure:
		return "opportunistic_insecure"
	case TLSRequired:
		return "required"
	case TLSRequiredInsecure:
		return "required_insecure"
	case TLSDisabled:
		return "disabled"
	}
	return "TLSMode(" + strconv.Itoa(int(m)) + ")"
}

// ParseTLSMode parses an enable_tls value: opportunistic, opportunistic_insecure,
// required, required_insecure, disabled (KumoMTA names, '-' or '_'), and the
// PowerMTA use-starttls values yes (opportunistic), no (disabled), required.
func ParseTLSMode(s string) (TLSMode, error) {
	switch strings.ReplaceAll(strings.ToLower(strings.TrimSpace(s)), "-", "_") {
	case "opportunistic", "yes", "true", "on":
		return TLSOpportunistic, nil
	case "opportunistic_insecure", "opportunisticinsecure":
		return TLSOpportunisticInsecure, nil
	case "required", "require":
		return TLSRequired, nil
	case "required_insecure", "requiredinsecure":
		return TLSRequiredInsecure, nil
	case "disabled", "no", "false", "off":
		return TLSDisabled, nil
	}
	return 0, fmt.Errorf("tuning: enable_tls %q: want opportunistic, opportunistic_insecure, required, required_insecure or disabled", s)
}

// MarshalText implements encoding.TextMarshaler.
func (m TLSMode) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (m *TLSMode) UnmarshalText(b []byte) error {
	v, err := ParseTLSMode(string(b))
	if err == nil {
		*m = v
	}
	return err
}

// ParseDuration parses a duration as time.ParseDuration does, plus the units
// d (24h) and w (7d): "20m", "3d", "1h30m", "1d12h". Negative durations are
// rejected.
func ParseDuration(s string) (time.Duration, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, errors.New("empty duration")
	}
	if strings.HasPrefix(t, "-") {
		return 0, fmt.Errorf("duration %q is negative", s)
	}
	var total time.Duration
	rest := t
	for rest != "" {
		i := 0
		for i < len(rest) && (rest[i] >= '0' && rest[i] <= '9' || rest[i] == '.') {
			i++
		}
		j := i
		for j < len(rest) && (rest[j] < '0' || rest[j] > '9') && rest[j] != '.' {
			j++
		}
		if i == 0 || j == i {
			if t == "0" {
				return 0, nil
			}
			return 0, fmt.Errorf("duration %q: want a number and a unit such as 20m, 3d, 1h30m", s)
		}
		num, unit := rest[:i], rest[i:j]
		rest = rest[j:]
		var d time.Duration
		switch unit {
		case "d", "w":
			f, err := strconv.ParseFloat(num, 64)
			if err != nil {
				return 0, fmt.Errorf("duration %q: bad number %q", s, num)
			}
			mul := Day
			if unit == "w" {
				mul = 7 * Day
			}
			if f*float64(mul) > math.MaxInt64/2 {
				return 0, fmt.Errorf("duration %q out of range", s)
			}
			d = time.Duration(f * float64(mul))
		default:
			var err error
			d, err = time.ParseDuration(num + unit)
			if err != nil {
				return 0, fmt.Errorf("duration %q: unknown unit %q (want ms, s, m, h, d or w)", s, unit)
			}
		}
		total += d
		if total < 0 {
			return 0, fmt.Errorf("duration %q out of range", s)
		}
	}
	return total, nil
}

// FormatDuration prints d compactly with days: 72h → "3d", 90m → "1h30m".
func FormatDuration(d time.Duration) string {
	if d == 0 {
		return "0s"
	}
	if d < time.Second || d%time.Second != 0 {
		return d.String()
	}
	var b []byte
	if days := d / Day; days > 0 {
		b = strconv.AppendInt(b, int64(days), 10)
		b = append(b, 'd')
		d -= days * Day
	}
	for _, u := range []struct {
		d time.Duration
		s byte
	}{{time.Hour, 'h'}, {time.Minute, 'm'}, {time.Second, 's'}} {
		if n := d / u.d; n > 0 {
			b = strconv.AppendInt(b, int64(n), 10)
			b = append(b, u.s)
			d -= n * u.d
		}
	}
	return string(b)
}

// fieldDef describes one layered setting: its TOML key (a nested timeouts key
// is "timeouts.connect"), accepted aliases, and how to decode, print and copy it.
type fieldDef struct {
	key     string
	aliases []string
	parse   func(s *Settings, v any) error
	get     func(s *Settings) string
	copy    func(dst, src *Settings)
}

// fields lists every layered setting in Explain order.
var fields = []fieldDef{
	intField("connection_limit", []string{"max-smtp-out", "max_smtp_out"}, 1, func(s *Settings) *int { return &s.ConnectionLimit }),
	throttleField("max_connection_rate", []string{"max-connect-rate", "max_connect_rate"}, func(s *Settings) *ThrottleSpec { return &s.MaxConnectionRate }),
	throttleField("max_message_rate", []string{"max-msg-rate", "max_msg_rate"}, func(s *Settings) *ThrottleSpec { return &s.MaxMessageRate }),
	intField("max_deliveries_per_connection", []string{"max-msg-per-connection", "max_msg_per_connection"}, 0, func(s *Settings) *int { return &s.MaxDeliveriesPerConnection }),
	intField("max_recipients_per_transaction", []string{"max-rcpt-per-message", "max_rcpt_per_message"}, 1, func(s *Settings) *int { return &s.MaxRecipientsPerTransaction }),
	durationField("idle_timeout", nil, func(s *Settings) *time.Duration { return &s.IdleTimeout }),
	{
		key:     "enable_tls",
		aliases: []string{"use-starttls", "use_starttls"},
		parse: func(s *Settings, v any) error {
			switch v := v.(type) {
			case bool:
				s.EnableTLS = TLSOpportunistic
				if !v {
					s.EnableTLS = TLSDisabled
				}
				return nil
			case string:
				m, err := ParseTLSMode(v)
				if err != nil {
					return errors.New(strings.TrimPrefix(err.Error(), "tuning: "))
				}
				s.EnableTLS = m
				return nil
			}
			return typeError("a string (opportunistic, required, disabled, ...)", v)
		},
		get:  func(s *Settings) string { return s.EnableTLS.String() },
		copy: func(dst, src *Settings) { dst.EnableTLS = src.EnableTLS },
	},
	durationField("timeouts.connect", []string{"connect_timeout"}, func(s *Settings) *time.Duration { return &s.Timeouts.Connect }),
	durationField("timeouts.greeting", []string{"banner_timeout", "greeting_timeout"}, func(s *Settings) *time.Duration { return &s.Timeouts.Greeting }),
	durationField("timeouts.ehlo", []string{"ehlo_timeout"}, func(s *Settings) *time.Duration { return &s.Timeouts.EHLO }),
	durationField("timeouts.starttls", []string{"starttls_timeout"}, func(s *Settings) *time.Duration { return &s.Timeouts.StartTLS }),
	durationField("timeouts.auth", []string{"auth_timeout"}, func(s *Settings) *time.Duration { return &s.Timeouts.Auth }),
	durationField("timeouts.mail", []string{"mail_from_timeout"}, func(s *Settings) *time.Duration { return &s.Timeouts.Mail }),
	durationField("timeouts.rcpt", []string{"rcpt_to_timeout"}, func(s *Settings) *time.Duration { return &s.Timeouts.Rcpt }),
	durationField("timeouts.data", []string{"data_timeout"}, func(s *Settings) *time.Duration { return &s.Timeouts.Data }),
	durationField("timeouts.data_block", []string{"data_block_timeout"}, func(s *Settings) *time.Duration { return &s.Timeouts.DataBlock }),
	durationField("timeouts.final", []string{"data_dot_timeout"}, func(s *Settings) *time.Duration { return &s.Timeouts.Final }),
	durationField("timeouts.quit", []string{"quit_timeout"}, func(s *Settings) *time.Duration { return &s.Timeouts.Quit }),
	durationField("retry_interval", []string{"retry-after", "retry_after"}, func(s *Settings) *time.Duration { return &s.RetryInterval }),
	durationField("max_retry_interval", nil, func(s *Settings) *time.Duration { return &s.MaxRetryInterval }),
	durationField("max_age", []string{"bounce-after", "bounce_after"}, func(s *Settings) *time.Duration { return &s.MaxAge }),
	boolField("mx_rollup", func(s *Settings) *bool { return &s.MXRollup }),
	boolField("chunking", func(s *Settings) *bool { return &s.Chunking }),
	intField("pipeline_depth", nil, 1, func(s *Settings) *int { return &s.PipelineDepth }),
}

// fieldByName maps every key and alias (and the bare timeouts sub-keys under
// "timeouts.") to its index in fields.
var fieldByName = func() map[string]int {
	m := map[string]int{}
	for i, f := range fields {
		m[f.key] = i
		for _, a := range f.aliases {
			m[a] = i
		}
	}
	return m
}()

// builtin is the bottom layer: what applies when no file says otherwise.
// Timeouts are RFC 5321 §4.5.3.2's; connect is ours.
var builtin = Settings{
	ConnectionLimit:             10,
	MaxDeliveriesPerConnection:  100,
	MaxRecipientsPerTransaction: 100,
	IdleTimeout:                 60 * time.Second,
	EnableTLS:                   TLSOpportunistic,
	Timeouts: Timeouts{
		Connect:   60 * time.Second,
		Greeting:  5 * time.Minute,
		EHLO:      5 * time.Minute,
		StartTLS:  5 * time.Minute,
		Auth:      5 * time.Minute,
		Mail:      5 * time.Minute,
		Rcpt:      5 * time.Minute,
		Data:      2 * time.Minute,
		DataBlock: 3 * time.Minute,
		Final:     10 * time.Minute,
		Quit:      1 * time.Minute,
	},
	RetryInterval:    20 * time.Minute,
	MaxRetryInterval: 8 * time.Hour,
	MaxAge:           3 * Day,
	MXRollup:         true,
	PipelineDepth:    4,
}

// Builtin returns the built-in bottom layer.
func Builtin() Settings { return builtin }

func typeError(want string, v any) error {
	return fmt.Errorf("want %s, got %s", want, describe(v))
}

func describe(v any) string {
	switch v := v.(type) {
	case string:
		return fmt.Sprintf("string %q", v)
	case int64:
		return fmt.Sprintf("integer %d", v)
	case float64:
		return fmt.Sprintf("float %v", v)
	case bool:
		return fmt.Sprintf("boolean %v", v)
	case []any:
		return "an array"
	case map[string]any:
		return "a table"
	}
	return fmt.Sprintf("%T", v)
}

func boolField(key string, p func(*Settings) *bool) fieldDef {
	return fieldDef{
		key: key,
		parse: func(s *Settings, v any) error {
			b, ok := v.(bool)
			if !ok {
				return typeError("true or false", v)
			}
			*p(s) = b
			return nil
		},
		get:  func(s *Settings) string { return strconv.FormatBool(*p(s)) },
		copy: func(dst, src *Settings) { *p(dst) = *p(src) },
	}
}

func intField(key string, aliases []string, min int, p func(*Settings) *int) fieldDef {
	return fieldDef{
		key: key, aliases: aliases,
		parse: func(s *Settings, v any) error {
			n, err := toInt(v, min)
			if err != nil {
				return err
			}
			*p(s) = n
			return nil
		},
		get:  func(s *Settings) string { return strconv.Itoa(*p(s)) },
		copy: func(dst, src *Settings) { *p(dst) = *p(src) },
	}
}

func toInt(v any, min int) (int, error) {
	n, ok := v.(int64)
	if !ok {
		return 0, typeError("an integer", v)
	}
	if n < int64(min) {
		if min == 0 {
			return 0, fmt.Errorf("%d is negative (0 means unlimited)", n)
		}
		return 0, fmt.Errorf("%d is below the minimum %d", n, min)
	}
	if n > math.MaxInt32 {
		return 0, fmt.Errorf("%d is too large", n)
	}
	return int(n), nil
}

func throttleField(key string, aliases []string, p func(*Settings) *ThrottleSpec) fieldDef {
	return fieldDef{
		key: key, aliases: aliases,
		parse: func(s *Settings, v any) error {
			t, err := toThrottle(v)
			if err != nil {
				return err
			}
			*p(s) = t
			return nil
		},
		get:  func(s *Settings) string { return p(s).String() },
		copy: func(dst, src *Settings) { *p(dst) = *p(src) },
	}
}

func toThrottle(v any) (ThrottleSpec, error) {
	str, ok := v.(string)
	if !ok {
		return ThrottleSpec{}, typeError(`a string such as "100/s"`, v)
	}
	t, err := ParseThrottleSpec(str)
	if err != nil {
		return ThrottleSpec{}, errors.New(strings.TrimPrefix(err.Error(), "tuning: "))
	}
	return t, nil
}

func durationField(key string, aliases []string, p func(*Settings) *time.Duration) fieldDef {
	return fieldDef{
		key: key, aliases: aliases,
		parse: func(s *Settings, v any) error {
			d, err := toDuration(v)
			if err != nil {
				return err
			}
			*p(s) = d
			return nil
		},
		get:  func(s *Settings) string { return FormatDuration(*p(s)) },
		copy: func(dst, src *Settings) { *p(dst) = *p(src) },
	}
}

// toDuration accepts a duration string or an integer number of seconds.
func toDuration(v any) (time.Duration, error) {
	switch v := v.(type) {
	case string:
		return ParseDuration(v)
	case int64:
		if v < 0 {
			return 0, fmt.Errorf("%d seconds is negative", v)
		}
		if v > math.MaxInt64/int64(time.Second) {
			return 0, fmt.Errorf("%d seconds is too large", v)
		}
		return time.Duration(v) * time.Second, nil
	}
	return 0, typeError(`a duration such as "20m", "3d" or "1h30m"`, v)
}

// String returns the TOML spelling of a: suspend, throttle or bounce.
func (a RuleAction) String() string {
	switch a {
	case ActionSuspend:
		return "suspend"
	case ActionThrottle:
		return "throttle"
	case ActionBounce:
		return "bounce"
	}
	return "RuleAction(" + strconv.Itoa(int(a)) + ")"
}
