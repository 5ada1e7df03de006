package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Section 5: the time from a swap to the signal in the containers
// (issue 18: under 100 ms for 20 containers).
//
// NotifyContainers containers trap SIGHUP on one file-store volume with
// refresh=1s and notify=SIGHUP. Both ends are seen on the host, by inotify,
// on the host's clock: the swap as the `..data` link renamed into the
// volume's tmpfs (its Mountpoint), and each container's signal as a write
// to its record file in a host folder bound into it, which its trap appends
// to (a shell builtin, no fork). So the figure is what an app sees: from
// the new files in place to the signal handled.

// notifyScript traps SIGHUP, appending a line to /out/NAME; /out/NAME.ready
// says the trap is set. `sleep & wait` lets the trap run at once.
const notifyScript = `f=/out/$(hostname); trap 'echo >> $f' HUP; touch $f.ready; while :; do sleep 1 & wait $!; done`

// watcher timestamps inotify events as they are read.
type watcher struct {
	fd  int
	mu  sync.Mutex
	wds map[int32]string
	evs []fsEvent
	// more gets a token after each batch of events read.
	more chan struct{}
}

type fsEvent struct {
	dir, name string
	mask      uint32
	at        time.Time
}

func newWatcher() (*watcher, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("inotify_init1: %w", err)
	}
	w := &watcher{fd: fd, wds: map[int32]string{}, more: make(chan struct{}, 1)}
	go w.read()
	return w, nil
}

func (w *watcher) add(dir string, mask uint32) error {
	wd, err := unix.InotifyAddWatch(w.fd, dir, mask)
	if err != nil {
		return fmt.Errorf("inotify watch of %s: %w", dir, err)
	}
	w.mu.Lock()
	w.wds[int32(wd)] = dir
	w.mu.Unlock()
	return nil
}

func (w *watcher) read() {
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Read(w.fd, buf)
		at := time.Now()
		if err != nil || n <= 0 {
			if err == unix.EINTR {
				continue
			}
			return
		}
		w.mu.Lock()
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			name := strings.TrimRight(string(buf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+int(ev.Len)]), "\x00")
			w.evs = append(w.evs, fsEvent{dir: w.wds[ev.Wd], name: name, mask: ev.Mask, at: at})
			off += unix.SizeofInotifyEvent + int(ev.Len)
		}
		w.mu.Unlock()
		select {
		case w.more <- struct{}{}:
		default:
		}
	}
}

// since returns the events from index i on.
func (w *watcher) since(i int) []fsEvent {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.evs[min(i, len(w.evs)):])
}

func (w *watcher) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.evs)
}

func (w *watcher) stop() { _ = unix.Close(w.fd) }

func (b *bench) notifyLatency(ctx context.Context) (err error) {
	n, rotations := b.cfg.NotifyContainers, b.cfg.Rotations
	progress(fmt.Sprintf("section 5: swap to signal, %d containers, %d rotations", n, rotations))
	out := filepath.Join(b.cfg.Dir, "notify-out")
	if err := os.RemoveAll(out); err != nil {
		return err
	}
	if err := os.MkdirAll(out, 0o777); err != nil {
		return err
	}
	defer os.RemoveAll(out)
	secret := b.prefix + "notify"
	if err := b.writeFile(secret); err != nil {
		return err
	}
	vol := b.prefix + "notify"
	if _, err := dockerCLI(ctx, "volume", "create", "-d", b.cfg.Plugin, "-o", "backend=file", "-o", "secret="+secret,
		"-o", "layout=dir", "-o", "filename=x", "-o", "refresh=1s", "-o", "notify=SIGHUP", vol); err != nil {
		return err
	}
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("%snotify-%02d", b.prefix, i)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		if _, rerr := dockerCLI(cctx, append([]string{"rm", "-f"}, names...)...); rerr != nil && err == nil {
			err = rerr
		}
		if _, rerr := dockerCLI(cctx, "volume", "rm", vol); rerr != nil && err == nil {
			err = rerr
		}
	}()
	if err := parallel(ctx, 4, n, func(ctx context.Context, i int) error {
		_, err := dockerCLI(ctx, "run", "-d", "--name", names[i], "--hostname", names[i], "--network", "none",
			"-v", out+":/out", "-v", vol+":/run/secrets", b.cfg.Image, "sh", "-c", notifyScript)
		return err
	}); err != nil {
		return err
	}
	deadline := time.Now().Add(time.Minute)
	for _, c := range names {
		for {
			if _, err := os.Stat(filepath.Join(out, c+".ready")); err == nil {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("container %s: its SIGHUP trap was not set within a minute", c)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// The volume as the host sees it: its Mountpoint is the plugin's own
	// path, under the PropagatedMount (/mnt/dsv), which the host sees
	// under Docker's root.
	mp, err := dockerCLI(ctx, "volume", "inspect", "--format", "{{.Mountpoint}}", vol)
	if err != nil {
		return err
	}
	root, err := dockerCLI(ctx, "info", "--format", "{{.DockerRootDir}}")
	if err != nil {
		return err
	}
	rel, ok := strings.CutPrefix(strings.TrimSpace(mp), "/mnt/dsv/")
	if !ok {
		return fmt.Errorf("volume %s: Mountpoint %q is not under the plugin's /mnt/dsv", vol, mp)
	}
	mp = filepath.Join(strings.TrimSpace(root), "plugins", b.plugin.id, "propagated-mount", rel)
	w, err := newWatcher()
	if err != nil {
		return err
	}
	defer w.stop()
	if err := w.add(mp, unix.IN_MOVED_TO|unix.IN_CREATE); err != nil {
		return err
	}
	if err := w.add(out, unix.IN_MODIFY); err != nil {
		return err
	}

	var last, each durations
	for r := range rotations {
		mark := w.count()
		if err := b.writeFile(secret); err != nil {
			return err
		}
		// Wait for the swap, then for one signal per container after it.
		limit := time.NewTimer(30 * time.Second)
		var swap time.Time
		got := map[string]time.Time{}
		for next := mark; len(got) < n; {
			evs := w.since(next)
			next += len(evs)
			for _, e := range evs {
				switch {
				case e.dir == out && !swap.IsZero() && !e.at.Before(swap):
					if _, ok := got[e.name]; !ok && slices.Contains(names, e.name) {
						got[e.name] = e.at
					}
				case e.dir != out && e.name == "..data" && swap.IsZero():
					swap = e.at
				}
			}
			if len(got) == n {
				break
			}
			select {
			case <-w.more:
			case <-limit.C:
				return fmt.Errorf("rotation %d: the swap (seen: %v) reached %d of %d containers' traps within 30 s", r+1, !swap.IsZero(), len(got), n)
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		limit.Stop()
		var worst time.Duration
		for _, at := range got {
			d := at.Sub(swap)
			each = append(each, d)
			worst = max(worst, d)
		}
		last = append(last, worst)
	}
	fmt.Fprintf(b.out, "\n== 5. Swap to signal: %d containers trap SIGHUP on one volume (file store, refresh=1s, notify=SIGHUP), %d rotations; both ends by inotify on the host\n", n, rotations)
	fmt.Fprintf(b.out, "   swap to the last container's trap: median %s, max %s (%v)\n", ms(last.median()), ms(last.max()), last)
	fmt.Fprintf(b.out, "   swap to each container's trap: median %s, p90 %s\n", ms(each.median()), ms(each.p90()))
	fmt.Fprintf(b.out, "   target: the last of %d containers within 100 ms: %s\n", n, verdict(last.max() < 100*time.Millisecond))
	return nil
}
