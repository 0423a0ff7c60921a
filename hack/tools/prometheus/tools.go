//go:build tools

// Package tools records the Prometheus server and promtool this module pins.
package tools

import (
	_ "github.com/prometheus/prometheus/cmd/prometheus"
	_ "github.com/prometheus/prometheus/cmd/promtool"
)
