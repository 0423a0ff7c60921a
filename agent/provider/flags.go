package provider

import (
	"flag"
	"time"
)

// Flags are the flags both plugins take (the agent writes them into the provider config's args).
type Flags struct {
	cfg      Config
	noRecord bool
}

// NewFlags declares the plugins' flags on fs; maxCache is the default --max-cache-duration.
func NewFlags(fs *flag.FlagSet, maxCache time.Duration) *Flags {
	f := &Flags{}
	fs.StringVar(&f.cfg.CachePath, "cache", "/var/lib/pullpass/credentials.json", "the node agent's credential cache (grants and the issuer's keys beside it)")
	fs.DurationVar(&f.cfg.MaxCacheDuration, "max-cache-duration", maxCache, "the longest the kubelet may keep an answer")
	fs.StringVar(&f.cfg.Generation, "generation", "", "the provider config's generation (set by the agent)")
	fs.BoolVar(&f.noRecord, "no-record", false, "do not count requests beside the cache")
	return f
}

// Config is the plugin's configuration from the parsed flags.
func (f *Flags) Config() Config {
	c := f.cfg
	c.Record = !f.noRecord
	return c
}
