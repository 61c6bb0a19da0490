//go:build unix

package logging

import (
	"fmt"
	"io"
	"os"
	"syscall"
)

// underJournald reports whether w is the stream systemd connected to the
// journal: $JOURNAL_STREAM holds "device:inode" of that stream
// (systemd.exec(5)), which must match w, since a child process may inherit
// the variable with other output.
func underJournald(w io.Writer) bool {
	want := os.Getenv("JOURNAL_STREAM")
	if want == "" {
		return false
	}
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return false
	}
	return want == fmt.Sprintf("%d:%d", st.Dev, st.Ino)
}
