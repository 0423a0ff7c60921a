package credentials

import (
	"sync"
	"time"
)

// FailingSince records since when each registry's source could not be read, while it cannot:
// the bounded time its last good credentials are kept (KeepLastGood) counts from it. The zero
// value is ready to use.
type FailingSince struct{ since sync.Map }

// Record records that registry's source could not be read at now (zero: it could, or it said
// something else, which ends the failure) and returns since when it has been failing.
func (f *FailingSince) Record(registry string, now time.Time) time.Time {
	if now.IsZero() {
		f.since.Delete(registry)
		return time.Time{}
	}
	v, _ := f.since.LoadOrStore(registry, now)
	return v.(time.Time)
}

// Forget drops the registries keep does not keep.
func (f *FailingSince) Forget(keep func(registry string) bool) {
	f.since.Range(func(k, _ any) bool {
		if !keep(k.(string)) {
			f.since.Delete(k)
		}
		return true
	})
}
