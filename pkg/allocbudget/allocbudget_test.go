package allocbudget_test

import (
	"strings"
	"testing"

	"github.com/pullpass/pullpass/pkg/allocbudget"
)

type recorder struct {
	testing.TB
	failed string
}

func (r *recorder) Fatalf(format string, args ...any) { r.failed = format }
func (r *recorder) Helper()                           {}
func (r *recorder) Logf(string, ...any)               {}

var sink []byte

func TestCheck(t *testing.T) {
	alloc := func() { sink = make([]byte, len(t.Name())+100) }
	r := &recorder{TB: t}
	allocbudget.Check(r, "one make", 1, alloc)
	if r.failed != "" {
		t.Fatalf("one allocation failed a budget of one")
	}
	allocbudget.Check(r, "one make", 0, alloc)
	if !strings.Contains(r.failed, "budget") && allocbudget.Enforced {
		t.Fatalf("one allocation passed a budget of zero")
	}
}
