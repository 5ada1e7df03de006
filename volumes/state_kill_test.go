package volumes

import (
	"bufio"
	"fmt"
	"github.com/dsv-plugin/dsv/render"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// envStateWriter makes the test binary a state writer (see TestMain): it
// saves the state at the path it names, generation after generation, until
// it is killed.
const envStateWriter = "DSV_TEST_STATE_WRITER"

// killVolumes is how many volumes each saved generation holds: enough for
// a file of some 40 KB, so kills land inside writes.
const killVolumes = 300

func TestMain(m *testing.M) {
	if path := os.Getenv(envStateWriter); path != "" {
		if err := writeStateForever(path); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		return
	}
	os.Exit(m.Run())
}

// writeStateForever continues from the saved generation: every volume of
// generation n has the mount id "gen-n".
func writeStateForever(path string) error {
	store, err := NewStore(path)
	if err != nil {
		return err
	}
	recs, err := store.Load()
	if err != nil {
		return err
	}
	gen, err := generation(recs.Volumes)
	if err != nil {
		return err
	}
	for {
		gen++
		vols := make(map[string]volumeRecord, killVolumes)
		for i := range killVolumes {
			vols[fmt.Sprintf("volume-%03d", i)] = volumeRecord{
				Options:   render.Options{Objects: []render.Object{{Name: "secret", Mode: 0o444}}},
				CreatedAt: time.Unix(1, 0).UTC(),
				Instances: []instanceRecord{{ID: "i", Mounts: map[string]int{"gen-" + strconv.Itoa(gen): 1, fmt.Sprintf("%064x", i): 1}}},
			}
		}
		if err := store.Save(State{Volumes: vols}); err != nil {
			return err
		}
		// Tells the test that a generation is saved: it kills on events,
		// not after a guessed time.
		if _, err := fmt.Println(gen); err != nil {
			return err
		}
	}
}

// generation checks that every volume is of one generation and returns it
// (0 for an empty state).
func generation(recs map[string]volumeRecord) (int, error) {
	if len(recs) == 0 {
		return 0, nil
	}
	if len(recs) != killVolumes {
		return 0, fmt.Errorf("state holds %d volumes, want %d", len(recs), killVolumes)
	}
	gen := -1
	for name, r := range recs {
		if len(r.Instances) != 1 || len(r.Instances[0].Mounts) != 2 {
			return 0, fmt.Errorf("volume %s has instances %v", name, r.Instances)
		}
		var g int
		for id := range r.Instances[0].Mounts {
			if n, err := fmt.Sscanf(id, "gen-%d", &g); n == 1 && err == nil {
				break
			}
		}
		if gen >= 0 && g != gen {
			return 0, fmt.Errorf("volumes of generations %d and %d in one state", gen, g)
		}
		gen = g
	}
	return gen, nil
}

// TestStateKilledDuringSave kills (SIGKILL) a process that saves the state
// in a loop, at random moments, many times: every time, the state on disk
// loads and is one whole generation, never older than the last one seen,
// and the next start removes the killed writer's temporary file.
func TestStateKilledDuringSave(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "state.json")
	last, progressed := 0, 0
	for i := range 25 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), envStateWriter+"="+path)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Kill once the writer has saved 1 to 3 generations: it is then
		// inside the next save, or between two, however slow the machine.
		lines := bufio.NewScanner(out)
		for range 1 + rand.IntN(3) {
			if !lines.Scan() {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				t.Fatalf("kill %d: the writer stopped before saving: %v", i, lines.Err())
			}
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		err = cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("kill %d: the writer ended on its own: %v", i, err)
		}

		store, err := NewStore(path)
		if err != nil {
			t.Fatal(err)
		}
		if left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), tempPattern)); len(left) > 0 {
			t.Fatalf("kill %d: NewStore left the killed writer's temporary files %v", i, left)
		}
		recs, err := store.Load()
		if err != nil {
			t.Fatalf("kill %d: the state does not load: %v", i, err)
		}
		gen, err := generation(recs.Volumes)
		if err != nil {
			t.Fatalf("kill %d: torn state: %v", i, err)
		}
		if gen < last {
			t.Fatalf("kill %d: state went back from generation %d to %d", i, last, gen)
		}
		if gen > last {
			progressed++
		}
		last = gen
	}
	// Every writer saved before its kill: the state moved on each time.
	if progressed < 25 {
		t.Fatalf("only %d of 25 writers saved a generation before the kill: the test proves little", progressed)
	}
	t.Logf("25 kills; the state reached generation %d, always whole", last)
}
