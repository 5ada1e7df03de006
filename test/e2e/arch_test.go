//go:build e2e

package e2e

import (
	"debug/elf"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
)

// elfMachines are the architectures the plugin is built for.
var elfMachines = map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}

// TestPluginArch checks that the plugin process the suite tests runs the
// binary of the architecture it was built for (DSV_E2E_ARCH): /dsv in its
// rootfs is an ELF for that machine, and the program the kernel runs is
// that /dsv itself on the host's architecture, or a host-architecture
// emulator (qemu-user-static through binfmt_misc) on another. Without it,
// make e2e-arm64 could pass by testing an amd64 plugin.
func TestPluginArch(t *testing.T) {
	want, ok := elfMachines[env.arch]
	if !ok {
		t.Fatalf("DSV_E2E_ARCH=%s: want one of amd64, arm64", env.arch)
	}
	host := elfMachines[runtime.GOARCH]
	pid := pluginPid(t)
	proc := filepath.Join("/proc", strconv.Itoa(pid))
	bin := filepath.Join(proc, "root", "dsv")
	if got := elfMachine(t, bin); got != want {
		t.Fatalf("plugin %s: /dsv in its rootfs is for %v, want %v (linux/%s)", env.plugin, got, want, env.arch)
	}
	exe, err := os.Readlink(filepath.Join(proc, "exe"))
	if err != nil {
		t.Fatal(err)
	}
	running := elfMachine(t, filepath.Join(proc, "exe"))
	binInfo, err1 := os.Stat(bin)
	exeInfo, err2 := os.Stat(filepath.Join(proc, "exe"))
	if err1 != nil || err2 != nil {
		t.Fatalf("stat %s, %s/exe: %v, %v", bin, proc, err1, err2)
	}
	same := os.SameFile(binInfo, exeInfo)
	if env.arch == runtime.GOARCH {
		if !same {
			t.Fatalf("plugin process %d runs %s (%v), not its /dsv", pid, exe, running)
		}
		t.Logf("plugin %s: process %d runs /dsv (%v) natively", env.plugin, pid, want)
		return
	}
	if same || running != host {
		t.Fatalf("plugin process %d runs %s (%v): want a %v emulator that runs /dsv (%v)", pid, exe, running, host, want)
	}
	t.Logf("plugin %s: process %d runs /dsv (%v) emulated by %s (%v)", env.plugin, pid, want, exe, running)
}

// elfMachine returns the machine of the ELF file at path.
func elfMachine(t *testing.T, path string) elf.Machine {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	defer f.Close()
	return f.Machine
}
