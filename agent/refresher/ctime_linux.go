package refresher

import (
	"os"
	"syscall"
)

// changeTime is a file's status change time (ctime) in nanoseconds: unlike its modification
// time, no tool can set it back (cp -p, touch -r).
func changeTime(fi os.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ctim.Nano()
	}
	return 0
}
