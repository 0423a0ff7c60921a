package userpass_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pullpass/pullpass/pkg/credentials/userpass"
)

func TestNeverPrintsPassword(t *testing.T) {
	const pw = "hunter2-very-secret"
	c := userpass.Credentials{Username: "bob", Password: pw, ExpiresAt: time.Unix(1e9, 0), Version: "7"}
	for _, s := range []string{
		c.String(),
		fmt.Sprint(c),
		fmt.Sprint(&c),
		fmt.Sprintf("%v", c),
		fmt.Sprintf("%+v", c),
		fmt.Sprintf("%v", &c),
		fmt.Sprintf("%+v", &c),
		fmt.Sprint([]userpass.Credentials{c}),
		fmt.Sprintf("%+v", struct{ C userpass.Credentials }{c}),
	} {
		if strings.Contains(s, pw) {
			t.Errorf("printed the password: %q", s)
		}
		if !strings.Contains(s, "bob") || !strings.Contains(s, "<redacted>") {
			t.Errorf("%q: want the username and <redacted>", s)
		}
	}
}
