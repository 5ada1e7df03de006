// Package credfile tells a backend when a credentials file in the
// credentials mount has changed, so that it reads the file again only
// then: a rotated key is picked up at the next request, and an unchanged
// file is never parsed twice.
package credfile

import (
	"fmt"
	"os"
	"strings"
	"syscall"
)

// Stamp identifies what the named files hold now without reading them:
// the inode, size and modification time of each, or its absence ("" names
// no file and counts as absent). Two equal stamps mean unchanged files.
// A file replaced by a rename (a new inode) or written to (a new mtime)
// changes its stamp; so does one that appears or goes away.
func Stamp(names ...string) string {
	var b strings.Builder
	for _, name := range names {
		fi, err := os.Stat(name)
		if name == "" || err != nil {
			b.WriteString("-;")
			continue
		}
		var ino uint64
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			ino = st.Ino
		}
		fmt.Fprintf(&b, "%d,%d,%d;", ino, fi.Size(), fi.ModTime().UnixNano())
	}
	return b.String()
}
