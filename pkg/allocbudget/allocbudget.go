// Package allocbudget checks allocation budgets in tests: a hot path that starts allocating more
// fails CI with a number, which a timing never gives reliably on shared machines.
package allocbudget

import "testing"

// Enforced is false under the race detector, where sync.Pool drops items at random: there,
// Check only logs.
const Enforced = !raceEnabled

// Check fails t when f allocates more than budget times per call, averaged over runs.
func Check(t testing.TB, what string, budget float64, f func()) {
	t.Helper()
	got := testing.AllocsPerRun(200, f)
	switch {
	case !Enforced:
		t.Logf("%s: %.0f allocations (budget %.0f, not checked under the race detector)", what, got, budget)
	case got > budget:
		t.Fatalf("%s: %.0f allocations, budget %.0f: the hot path allocates more than it did. Find what with "+
			"-memprofile (docs/benchmarks.md); raise the budget only with the reason in the commit.", what, got, budget)
	default:
		t.Logf("%s: %.0f allocations (budget %.0f)", what, got, budget)
	}
}
