package volumes

import "github.com/dsv-plugin/dsv/tmpfs"

// fileEntry is one file of a volume's content, as the tmpfs writers take it.
type fileEntry = tmpfs.File
