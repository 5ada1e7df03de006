package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// memPerNodeMiB is the proportional set size (PSS: shared pages split
// among their users) of everything a node runs, averaged over the nodes:
// its containerd and dockerd, the containerd shims that name its
// containerd's socket (they outlive their parent, so the tree is found by
// the shims' command lines), and every descendant of those: the plugin and
// the tasks. The machine's MemAvailable moves too much with the page cache
// to tell tens of MiB apart.
func (f *fleet) memPerNodeMiB() float64 {
	procs := readProcs()
	children := map[int][]int{}
	for pid, p := range procs {
		children[p.ppid] = append(children[p.ppid], pid)
	}
	var total int64
	for _, n := range f.nodes {
		var roots []int
		for _, c := range []*exec.Cmd{n.dockerd, n.ctrd} {
			if c != nil && c.Process != nil {
				roots = append(roots, c.Process.Pid)
			}
		}
		marker := n.run() + "/"
		for pid, p := range procs {
			if strings.Contains(p.cmdline, marker) && strings.Contains(p.cmdline, "containerd-shim") {
				roots = append(roots, pid)
			}
		}
		seen := map[int]bool{}
		for len(roots) > 0 {
			pid := roots[len(roots)-1]
			roots = roots[:len(roots)-1]
			if seen[pid] {
				continue
			}
			seen[pid] = true
			total += pssKiB(pid)
			roots = append(roots, children[pid]...)
		}
	}
	return float64(total) / 1024 / float64(len(f.nodes))
}

type proc struct {
	ppid    int
	cmdline string
}

func readProcs() map[int]proc {
	out := map[int]proc{}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(d + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(stat[i+1:]))
		if len(fields) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(fields[1])
		cmd, _ := os.ReadFile(d + "/cmdline")
		out[pid] = proc{ppid: ppid, cmdline: string(bytes.ReplaceAll(cmd, []byte{0}, []byte{' '}))}
	}
	return out
}

func pssKiB(pid int) int64 {
	fh, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0
	}
	defer fh.Close()
	s := bufio.NewScanner(fh)
	for s.Scan() {
		if f := strings.Fields(s.Text()); len(f) >= 2 && f[0] == "Pss:" {
			v, _ := strconv.ParseInt(f[1], 10, 64)
			return v
		}
	}
	return 0
}
