package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/dsv-plugin/dsv/test/tools/torn"
)

// Targets of section 4.
const (
	// targetReadsPerSecret: concurrent mounts of one secret share one read
	// (and later ones within CACHE_TTL reuse it).
	targetReadsPerSecret = 1
	// targetReadsPerRefresh: a refresh reads each secret of the volume once.
	targetReadsPerRefresh = 1.0
)

// getSecretValue is the X-Amz-Target of the one call the aws backend makes.
const getSecretValue = "secretsmanager.GetSecretValue"

// countingProxy is a reverse proxy in front of moto that records every
// GetSecretValue the plugin makes: when, and for which secret.
type countingProxy struct {
	URL   string
	srv   *http.Server
	mu    sync.Mutex
	reads []proxyRead
}

type proxyRead struct {
	at     time.Time
	secret string
}

func startCountingProxy(target string) (*countingProxy, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &countingProxy{URL: "http://" + ln.Addr().String()}
	rp := httputil.NewSingleHostReverseProxy(u)
	p.srv = &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost && r.Header.Get("X-Amz-Target") == getSecretValue {
				body, err := io.ReadAll(r.Body)
				_ = r.Body.Close()
				if err != nil {
					http.Error(w, err.Error(), http.StatusBadRequest)
					return
				}
				r.Body = io.NopCloser(bytes.NewReader(body))
				var in struct{ SecretId string }
				_ = json.Unmarshal(body, &in)
				p.mu.Lock()
				p.reads = append(p.reads, proxyRead{at: time.Now(), secret: in.SecretId})
				p.mu.Unlock()
			}
			rp.ServeHTTP(w, r)
		}),
	}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

// count is the number of GetSecretValue calls so far.
func (p *countingProxy) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.reads)
}

// since returns the calls from the n-th on.
func (p *countingProxy) since(n int) []proxyRead {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.reads[n:])
}

func (p *countingProxy) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return p.srv.Shutdown(ctx)
}

// --- 4. backend reads --------------------------------------------------------

func (b *bench) backendReads(ctx context.Context) (err error) {
	progress("section 4: backend reads")
	proxy, err := startCountingProxy(b.moto.URL)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := proxy.close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	// The plugin talks to moto through the proxy for this section only,
	// so that the other sections' figures carry no proxy hop.
	progress("pointing the plugin's AWS_ENDPOINT_URL at the counting proxy " + proxy.URL)
	if err := b.plugin.configure(ctx, map[string]string{"AWS_ENDPOINT_URL": proxy.URL}); err != nil {
		return err
	}
	defer func() {
		if cerr := b.plugin.configure(context.WithoutCancel(ctx), map[string]string{"AWS_ENDPOINT_URL": b.moto.URL}); cerr != nil && err == nil {
			err = cerr
		}
	}()
	settings := b.plugin.settings(ctx)
	ttl := settings["CACHE_TTL"]

	w := b.out
	fmt.Fprintf(w, "\n== 4. Backend reads: GetSecretValue calls counted by a reverse proxy in front of moto (%s -> %s)\n", proxy.URL, b.moto.URL)
	fmt.Fprintf(w, "   plugin CACHE_TTL=%s, TIMEOUT=%s\n", cmp(ttl, "(unset)"), settings["TIMEOUT"])
	if err := b.parallelRuns(ctx, proxy, ttl); err != nil {
		return err
	}
	return b.rotationLatency(ctx, proxy)
}

// parallelRuns starts ReadRuns containers at once, on as many volumes that
// read ReadSecrets secrets (each volume a different key).
func (b *bench) parallelRuns(ctx context.Context, proxy *countingProxy, ttl string) error {
	runs, nsecrets := b.cfg.ReadRuns, b.cfg.ReadSecrets
	progress(fmt.Sprintf("%d docker run at once on %d volumes of %d secrets", runs, runs, nsecrets))
	perSecret := (runs + nsecrets - 1) / nsecrets
	secretNames := make([]string, nsecrets)
	want := make([]string, runs)
	vols := make([]string, runs)
	for s := range nsecrets {
		secretNames[s] = fmt.Sprintf("%sreads-%d", b.prefix, s)
		obj := map[string]string{}
		for k := range perSecret {
			obj[fmt.Sprintf("k%02d", k)] = randomValue()
		}
		raw, err := json.Marshal(obj)
		if err != nil {
			return err
		}
		if _, err := b.sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String(secretNames[s]), SecretString: aws.String(string(raw))}); err != nil {
			return fmt.Errorf("create secret %q in moto: %w", secretNames[s], err)
		}
		for k := range perSecret {
			i := s*perSecret + k
			if i >= runs {
				break
			}
			key := fmt.Sprintf("k%02d", k)
			vols[i] = fmt.Sprintf("%sreads-%d-%s", b.prefix, s, key)
			want[i] = obj[key]
			if err := b.docker.createVolume(ctx, vols[i], b.cfg.Plugin, map[string]string{"backend": "aws", "secret": secretNames[s], "key": key}); err != nil {
				return err
			}
		}
	}
	// Reads left over from creating the volumes (none are expected: create
	// fetches nothing) are not counted.
	time.Sleep(200 * time.Millisecond)
	before := proxy.count()

	type outcome struct {
		took time.Duration
		err  error
	}
	outcomes := make([]outcome, runs)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range runs {
		wg.Go(func() {
			<-start
			t0 := time.Now()
			out, err := dockerCLI(ctx, append(b.runArgs(), "-v", vols[i]+":"+secretTarget, b.cfg.Image, "cat", secretTarget)...)
			if err == nil && out != want[i] {
				err = fmt.Errorf("volume %s: the container printed %d bytes, not the value of its key (%d bytes)", vols[i], len(out), len(want[i]))
			}
			outcomes[i] = outcome{took: time.Since(t0), err: err}
		})
	}
	t0 := time.Now()
	close(start)
	wg.Wait()
	wall := time.Since(t0)
	reads := proxy.since(before)

	var ok int
	var took durations
	var failures []string
	for _, o := range outcomes {
		took = append(took, o.took)
		if o.err == nil {
			ok++
		} else if len(failures) < 3 {
			failures = append(failures, o.err.Error())
		}
	}
	bySecret := map[string][]time.Time{}
	var offsets []string
	for _, r := range reads {
		bySecret[r.secret] = append(bySecret[r.secret], r.at)
		offsets = append(offsets, "+"+ms(r.at.Sub(t0)))
	}
	// A secret read again: how long after its first read, against the TTL.
	var rereads durations
	for _, ts := range bySecret {
		for _, at := range ts[1:] {
			rereads = append(rereads, at.Sub(ts[0]))
		}
	}

	w := b.out
	fmt.Fprintf(w, "\n%d docker %s -v VOLUME:%s %s cat %s, all started at once; %d volumes, %d secrets, each volume a different key\n\n",
		runs, strings.Join(b.runArgs(), " "), secretTarget, b.cfg.Image, secretTarget, runs, nsecrets)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "successes\t%d of %d (target %d)\t%s\n", ok, runs, runs, verdict(ok == runs))
	fmt.Fprintf(tw, "backend reads (GetSecretValue)\t%d (target <= %d, one per secret)\t%s\n", len(reads), nsecrets*targetReadsPerSecret, verdict(len(reads) <= nsecrets*targetReadsPerSecret))
	fmt.Fprintf(tw, "wall time, first start to last exit\t%s\t\n", wall.Round(time.Millisecond))
	fmt.Fprintf(tw, "per docker run\tmedian %s, p90 %s, max %s\t\n", ms(took.median()), ms(took.p90()), ms(took.max()))
	var per []string
	for _, s := range secretNames {
		per = append(per, fmt.Sprintf("%d", len(bySecret[s])))
	}
	fmt.Fprintf(tw, "reads per secret\t%s\t\n", strings.Join(per, " "))
	fmt.Fprintf(tw, "reads at (from the start)\t%s\t\n", cmp(strings.Join(offsets, " "), "none"))
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(rereads) > 0 {
		fmt.Fprintf(w, "%d secret(s) read more than once: %s to %s after their first read (CACHE_TTL=%s): mounts that came later than the TTL read again\n",
			len(rereads), ms(rereads.min()), ms(rereads.max()), cmp(ttl, "(unset)"))
	}
	for _, f := range failures {
		fmt.Fprintf(w, "  failure: %s\n", f)
	}
	if _, err := dockerCLI(ctx, append([]string{"volume", "rm"}, vols...)...); err != nil {
		return err
	}
	if ok == 0 {
		return errors.New("no container of the parallel runs succeeded: " + strings.Join(failures, "; "))
	}
	return nil
}

// rotationLatency measures how long a PutSecretValue takes to reach a
// running container through a refreshed key=* volume, and counts torn reads
// meanwhile: a second container runs test/tools/torn's reader on the same volume
// through every rotation, checking that no read mixes two versions.
func (b *bench) rotationLatency(ctx context.Context, proxy *countingProxy) (err error) {
	const refresh = time.Second
	progress(fmt.Sprintf("rotation latency: %d rotations under a running container, refresh=%s", b.cfg.Rotations, refresh))
	secret, seed := b.prefix+"rot", randomValue()
	if _, err := b.sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String(secret), SecretString: aws.String(torn.Secret(seed, 0))}); err != nil {
		return fmt.Errorf("create secret %q in moto: %w", secret, err)
	}
	vol, container, reader := b.prefix+"rot", b.prefix+"rot", b.prefix+"rot-reader"
	if _, err := dockerCLI(ctx, "volume", "create", "-d", b.cfg.Plugin, "-o", "backend=aws", "-o", "secret="+secret,
		"-o", "key=*", "-o", "refresh="+refresh.String(), vol); err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if _, rerr := dockerCLI(cctx, "rm", "-f", container, reader); rerr != nil && err == nil {
			err = rerr
		}
		if _, rerr := dockerCLI(cctx, "volume", "rm", vol); rerr != nil && err == nil {
			err = rerr
		}
	}()
	for _, c := range []struct{ name, script string }{{container, "sleep 600"}, {reader, torn.Reader}} {
		if _, err := dockerCLI(ctx, "run", "-d", "--name", c.name, "--network", "none", "-v", vol+":/run/secrets", b.cfg.Image, "sh", "-c", c.script); err != nil {
			return err
		}
	}
	cat := func() (string, time.Duration, error) {
		t0 := time.Now()
		out, err := dockerCLI(ctx, "exec", container, "cat", "/run/secrets/sum")
		return out, time.Since(t0), err
	}
	if out, _, err := cat(); err != nil || out != torn.SumOf(seed, 0) {
		return fmt.Errorf("volume %s: the container does not read the secret's value at start (%v)", vol, err)
	}

	// Steady state: the reads that refreshes of an unchanged secret cost.
	const window = 5 * time.Second
	time.Sleep(300 * time.Millisecond)
	n0 := proxy.count()
	time.Sleep(window)
	steady := proxy.count() - n0

	var lats, execs durations
	rotationReads := 0
	for i := range b.cfg.Rotations {
		// De-phase the put from the refresh timer a little each time.
		time.Sleep(time.Duration(1100+137*i) * time.Millisecond)
		want := torn.SumOf(seed, i+1)
		n := proxy.count()
		t0 := time.Now()
		if _, err := b.sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String(secret), SecretString: aws.String(torn.Secret(seed, i+1))}); err != nil {
			return fmt.Errorf("put secret value %q in moto: %w", secret, err)
		}
		for {
			out, d, err := cat()
			if err != nil {
				return err
			}
			execs = append(execs, d)
			if out == want {
				lats = append(lats, time.Since(t0))
				break
			}
			if time.Since(t0) > 30*time.Second {
				return fmt.Errorf("volume %s: a rotation did not reach the container within 30 s", vol)
			}
		}
		rotationReads += proxy.count() - n
	}
	st, _ := dockerCLI(ctx, "volume", "inspect", "--format", "{{json .Status}}", vol)
	if _, err := dockerCLI(ctx, "exec", reader, "touch", "/tmp/stop"); err != nil {
		return err
	}
	if _, err := dockerCLI(ctx, "wait", reader); err != nil {
		return err
	}
	out, err := dockerCLI(ctx, "logs", reader)
	if err != nil {
		return err
	}
	tr, err := torn.Parse(out)
	if err != nil {
		return err
	}

	w := b.out
	perRefresh := float64(steady) / (float64(window) / float64(refresh))
	fmt.Fprintf(w, "\nrotation: a key=* volume with refresh=%s under two running containers; PutSecretValue, then docker exec cat until the new value shows; the other container checks every read for torn files (test/tools/torn)\n\n", refresh)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "rotations\t%d\t\n", len(lats))
	fmt.Fprintf(tw, "put -> visible in the container\tmedian %s, max %s (bound: refresh %s + one read and swap + one docker exec)\t\n", ms(lats.median()), ms(lats.max()), refresh)
	fmt.Fprintf(tw, "docker exec cat round trip\tmedian %s, max %s\t\n", ms(execs.median()), ms(execs.max()))
	fmt.Fprintf(tw, "torn reads\t%d of %d reads through one ..data target (%d versions seen)  target 0\t%s\n", tr.Torn+tr.BadSum, tr.Reads, tr.Versions, verdict(tr.Torn+tr.BadSum == 0 && tr.Backwards == 0 && tr.Reads > 0))
	fmt.Fprintf(tw, "reads per refresh, secret unchanged\t%.2f (%d GetSecretValue in %s; target %.0f)\t%s\n", perRefresh, steady, window, targetReadsPerRefresh, verdict(perRefresh <= targetReadsPerRefresh*1.2))
	fmt.Fprintf(tw, "reads from put to visible\t%d for %d rotations\t\n", rotationReads, len(lats))
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "torn reader: %s\n", tr)
	fmt.Fprintf(w, "volume status after the rotations: %s\n", st)
	return nil
}
