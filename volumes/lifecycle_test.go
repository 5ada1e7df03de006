package volumes

import (
	"testing"
	"time"

	"github.com/docker/go-plugins-helpers/volume"
)

// The scenarios of issue 17 as named sequences of the model-based test
// (model_test.go), each checked with every invariant after every step.
// Each failed on the lifecycle before instances and generations.

// play runs steps, checking the invariants after each.
func play(t *testing.T, m *lifeModel, steps ...func()) {
	t.Helper()
	m.check()
	for _, step := range steps {
		step()
		m.check()
	}
}

func newScenario(t *testing.T) *lifeModel {
	m := newModel(t, modelDir(t))
	t.Cleanup(func() {
		m.finishSlow()
		m.drv.Close()
	})
	return m
}

// An in-flight renewal to a slow store returns after the last container
// stopped (its lease revoked) and a new one mounted (a new lease): it
// must not write the old lease back over the new one, which is then
// renewed until its container stops, and revoked then.
func TestScenarioLateRenewalAfterRemount(t *testing.T) {
	m := newScenario(t)
	play(t, m,
		func() { m.mount("a") },
		func() { m.advance(30 * time.Minute) },
		func() { m.startSlow() },
		func() { m.unmount("a") },
		func() { m.mount("a") }, // docker restart: a new lease
		func() { m.finishSlow() },
		func() { m.advance(2 * time.Hour) },
		func() { m.advance(2 * time.Hour) },
		func() { m.unmount("a") },
	)
	if live := m.liveLeases(); len(live) != 0 {
		t.Fatalf("leases alive after the last unmount: %v", live)
	}
}

// A late renewal of a lease that a refresh replaced meanwhile (same
// instance, next generation) must not put the replaced lease back.
func TestScenarioLateRenewalAfterSwap(t *testing.T) {
	m := newScenario(t)
	play(t, m,
		func() { m.mount("a") },
		func() { m.startSlow() },
		func() { m.rotate() },
		func() { m.advance(25 * time.Minute) }, // the refresh swaps in a new lease
		func() { m.finishSlow() },
		func() { m.advance(2 * time.Hour) },
	)
}

// Container A runs across a restart that lost the views (an upgrade);
// job containers then mount and leave the volume: each job's lease is
// revoked when it leaves, and a refresh of the jobs' tmpfs never retires
// A's lease.
func TestScenarioJobsBesideContainerFromBeforeRestart(t *testing.T) {
	m := newScenario(t)
	steps := []func(){
		func() { m.mount("A") },
		func() { m.restart(false) },
	}
	for _, job := range []string{"job1", "job2", "job3"} {
		steps = append(steps,
			func() { m.mount(job) },
			func() { m.rotate() },
			func() { m.advance(25 * time.Minute) }, // refresh of the job's tmpfs, then A's lease renewed
			func() { m.unmount(job) },
			func() { m.advance(15 * time.Minute) }, // past the grace
		)
	}
	play(t, m, steps...)
	if live := m.liveLeases(); len(live) != 1 {
		t.Fatalf("leases alive with A alone mounted: %v, want A's only", live)
	}
}

// Restart while A runs, docker cp into A (same ID, fresh tmpfs), restart
// again before the copy ends: the end of the copy must not end A's lease.
func TestScenarioIDBothBeforeAndAfterRestart(t *testing.T) {
	for _, kept := range []bool{true, false} {
		m := newScenario(t)
		play(t, m,
			func() { m.mount("A") },
			func() { m.restart(false) },
			func() { m.mount("A") }, // docker cp into A
			func() { m.restart(kept) },
			func() { m.unmount("A") }, // the copy ends
			func() { m.advance(2 * time.Hour) },
			func() { m.unmount("A") }, // A stops
		)
		if live := m.liveLeases(); len(live) != 0 {
			t.Fatalf("views kept %v: leases alive after A stopped: %v", kept, live)
		}
	}
}

// Unmount returns without waiting for a revocation; the revocation runs
// after, off the lock (I5), and a failed one is retried.
func TestScenarioRevocationOffTheLock(t *testing.T) {
	m := newScenario(t)
	play(t, m,
		func() { m.mount("a") },
		func() { m.failNext("revoke") },
		func() { m.unmount("a") },
	)
	if len(m.drv.revoker.pending()) != 1 {
		t.Fatalf("a failed revocation is not queued for a retry: %+v", m.drv.revoker.pending())
	}
	play(t, m, func() { m.advance(time.Minute) })
	if live := m.liveLeases(); len(live) != 0 {
		t.Fatalf("the revocation was not retried: %v alive", live)
	}
}

// A revocation queued when the plugin stops (a disable, an upgrade) is
// done by the next process: the state holds it until it is.
func TestScenarioRevocationSurvivesRestart(t *testing.T) {
	m := newScenario(t)
	play(t, m, func() { m.mount("a") })
	// The unmount queues the revocation, and the plugin stops before the
	// revoker ran.
	if err := m.drv.Unmount(&volume.UnmountRequest{Name: modelVolume, ID: "a"}); err != nil {
		t.Fatal(err)
	}
	m.mounts = nil
	if live := m.liveLeases(); len(live) != 1 {
		t.Fatalf("the revocation ran before the restart: %v alive", live)
	}
	m.restart(false)
	m.check()
	if live := m.liveLeases(); len(live) != 0 {
		t.Fatalf("the revocation was lost across the restart: %v alive", live)
	}
}

// Docker calls Remove only when no container references the volume, so a
// mount still counted is dead: Remove succeeds and revokes its leases.
func TestScenarioRemoveWithDeadMounts(t *testing.T) {
	m := newScenario(t)
	play(t, m,
		func() { m.mount("a") },
		func() { m.restart(false) },
		func() { m.mount("b") },
		func() { m.lose(0) },
		func() { m.lose(0) },
		func() { m.remove() },
	)
	if live := m.liveLeases(); len(live) != 0 {
		t.Fatalf("leases alive after Remove: %v", live)
	}
}
