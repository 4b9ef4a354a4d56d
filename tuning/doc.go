// Package tuning loads and explains spate's shaping configuration (TOML):
// layered per-destination settings (default < provider < site < domain <
// source), throttle specs, egress sources, pools, warm-up schedules, reply
// rules and bounce classes. It imports neither engine nor scheduler.
package tuning
