package main

import (
	"bufio"
	"cmp"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
)

// pageSize is the size of one entry of /proc/PID/pagemap.
const pageSize = 4096

// symbols are the binary's symbols sorted by address, and its sections.
type symbols struct {
	syms     []elf.Symbol
	sections []*elf.Section
}

// readSymbols reads the symbol table of bin: a binary built without -s
// (make build strips it; go build -trimpath without -ldflags -s keeps it,
// and lays out the loaded segments the same way).
func readSymbols(bin string) (*symbols, error) {
	f, err := elf.Open(bin)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ss, err := f.Symbols()
	if errors.Is(err, elf.ErrNoSymbols) {
		return nil, fmt.Errorf("%s has no symbol table: -pages needs a build without -ldflags -s", bin)
	}
	if err != nil {
		return nil, err
	}
	ss = slices.DeleteFunc(ss, func(s elf.Symbol) bool { return s.Value == 0 || s.Size == 0 })
	slices.SortFunc(ss, func(a, b elf.Symbol) int { return cmp.Compare(a.Value, b.Value) })
	return &symbols{syms: ss, sections: f.Sections}, nil
}

func (s *symbols) section(addr uint64) string {
	for _, sec := range s.sections {
		if sec.Addr <= addr && addr < sec.Addr+sec.Size && sec.Flags&elf.SHF_ALLOC != 0 {
			return sec.Name
		}
	}
	return "(between sections)"
}

// pkgOf is the Go package a symbol belongs to ("net/http" for
// net/http.(*conn).serve, "type:" for type descriptors without one).
func pkgOf(name string) string {
	for _, p := range []string{"type:.eq.", "go:itab.", "type:"} {
		if strings.HasPrefix(name, p) {
			name = strings.TrimLeft(strings.TrimPrefix(name, p), "*[]")
			break
		}
	}
	if strings.HasPrefix(name, "go:") {
		return name // go:string.*, go:func.*: shared tables
	}
	slash := max(strings.LastIndex(name, "/"), 0)
	if dot := strings.IndexByte(name[slash:], '.'); dot >= 0 {
		return name[:slash+dot]
	}
	return name
}

// residency is the KiB of the binary's pages resident in a process, by
// section and, within a section, by package (the part of a page that no
// symbol covers is counted under "(no symbol)": the runtime's tables in
// .gopclntab and type descriptors in .rodata have none of their own).
type residency struct {
	total     float64
	bySection map[string]float64
	byPackage map[string]map[string]float64
}

// pages reads which of the binary's pages are mapped in the process
// (/proc/PID/pagemap, root only) and attributes each to the symbols it
// holds, in proportion to their bytes in it.
func (p *plugin) pages(bin string, syms *symbols) (residency, error) {
	r := residency{bySection: map[string]float64{}, byPackage: map[string]map[string]float64{}}
	add := func(sec, pkg string, kib float64) {
		r.total += kib
		r.bySection[sec] += kib
		if r.byPackage[sec] == nil {
			r.byPackage[sec] = map[string]float64{}
		}
		r.byPackage[sec][pkg] += kib
	}
	mf, err := os.Open(fmt.Sprintf("/proc/%d/maps", p.pid))
	if err != nil {
		return r, err
	}
	defer mf.Close()
	pm, err := os.Open(fmt.Sprintf("/proc/%d/pagemap", p.pid))
	if err != nil {
		return r, err
	}
	defer pm.Close()
	sc := bufio.NewScanner(mf)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 6 || f[5] != bin {
			continue
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if !ok || err1 != nil || err2 != nil {
			return r, fmt.Errorf("maps: unexpected line %q", sc.Text())
		}
		entries := make([]byte, (end-start)/pageSize*8)
		if _, err := pm.ReadAt(entries, int64(start/pageSize*8)); err != nil && !errors.Is(err, io.EOF) {
			return r, fmt.Errorf("pagemap: %w", err)
		}
		for i := range (end - start) / pageSize {
			if binary.LittleEndian.Uint64(entries[i*8:])&(1<<63) == 0 {
				continue // not present
			}
			page := start + i*pageSize
			covered := uint64(0)
			k := sort.Search(len(syms.syms), func(j int) bool { return syms.syms[j].Value+syms.syms[j].Size > page })
			for ; k < len(syms.syms) && syms.syms[k].Value < page+pageSize; k++ {
				s := syms.syms[k]
				a, b := max(s.Value, page), min(s.Value+s.Size, page+pageSize)
				if b <= a {
					continue
				}
				covered += b - a
				add(syms.section(a), pkgOf(s.Name), float64(b-a)/1024)
			}
			if covered < pageSize {
				add(syms.section(page), "(no symbol)", float64(pageSize-covered)/1024)
			}
		}
	}
	return r, sc.Err()
}

// printPages writes one binary's residency at both stages: sections side
// by side, then the largest packages of each section after the runs.
func printPages(w io.Writer, bin string, nruns int, idle, runs residency, top int) {
	fmt.Fprintf(w, "\n%s: its own pages resident, by section (KiB; the last process)\n", bin)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "section\tidle\tafter %d mounts\t\n", nruns)
	secs := slices.SortedFunc(maps.Keys(runs.bySection), func(a, b string) int {
		return cmp.Compare(runs.bySection[b], runs.bySection[a])
	})
	for _, s := range secs {
		fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t\n", s, idle.bySection[s], runs.bySection[s])
	}
	fmt.Fprintf(tw, "total\t%.0f\t%.0f\t\n", idle.total, runs.total)
	tw.Flush()
	for _, s := range secs {
		pk := runs.byPackage[s]
		names := slices.SortedFunc(maps.Keys(pk), func(a, b string) int { return cmp.Compare(pk[b], pk[a]) })
		if len(names) > top {
			names = names[:top]
		}
		fmt.Fprintf(w, "\n%s after %d mounts, largest %d (KiB, idle in brackets)\n", s, nruns, len(names))
		for _, n := range names {
			fmt.Fprintf(w, "%8.1f  (%6.1f)  %s\n", pk[n], idle.byPackage[s][n], n)
		}
	}
}
