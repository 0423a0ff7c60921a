// Package userpass holds the one type for a registry's credentials: a username and password (or
// token), with when they stop working. It imports nothing of pullpass's, so every package that
// reads, resolves, writes or logs in with credentials can share it without an import cycle and
// without pulling in what pkg/credentials needs (the AWS SDK).
package userpass

import (
	"fmt"
	"time"
)

// Credentials are a username and password (or token), with when they stop working (zero:
// never). Empty ones log in anonymously.
type Credentials struct {
	Username  string
	Password  string
	ExpiresAt time.Time
	// Version changes whenever the credentials do: a Secret's resourceVersion, a token's expiry.
	Version string
}

// String never prints the password; fmt's %v and %+v use it too.
func (c Credentials) String() string {
	return fmt.Sprintf("{username:%q password:<redacted>}", c.Username)
}
