package tmpfs

import (
	"fmt"
	"strings"
	"testing"
)

// TestFitsCountsFilesAndBytes: tmpfs counts a page per non-empty file and
// an inode per file, link and directory.
func TestFitsCountsFilesAndBytes(t *testing.T) {
	d := &Volumes{Size: 2 * (2 << 20)}
	many := make([]File, 600)
	for i := range many {
		many[i] = File{Path: fmt.Sprintf("k%d", i), Data: []byte("v")}
	}
	if err := d.Fits(many); err == nil || !strings.Contains(err.Error(), "600 files") {
		t.Fatalf("600 files (1,200 inodes with their links): %v", err)
	}
	if err := d.Fits(many[:400]); err != nil {
		t.Fatalf("400 small files: %v", err)
	}
	if err := d.Fits([]File{{Path: "a", Data: make([]byte, 2<<20)}}); err != nil {
		t.Fatalf("exactly the budget: %v", err)
	}
	if err := d.Fits([]File{{Path: "a", Data: make([]byte, 2<<20+1)}}); err == nil {
		t.Fatal("one byte over the budget fits")
	}
}
