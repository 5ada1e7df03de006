package gate_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/dsv-plugin/dsv/metrics"
	"github.com/dsv-plugin/dsv/secrets"
	"github.com/dsv-plugin/dsv/secrets/awssm"
	"github.com/dsv-plugin/dsv/secrets/cache"
	"github.com/dsv-plugin/dsv/secrets/gate"
	"github.com/dsv-plugin/dsv/test/fakes/faultproxy"
	"github.com/dsv-plugin/dsv/test/servers/moto"
)

// TestIntegrationStormAgainstThrottlingStore: 50 concurrent reads of 50
// secrets, by the plugin's own path (cache, gate, the aws backend with its
// real SDK configuration), at a real Secrets Manager (moto) behind a proxy
// that answers ThrottlingException above 5 requests a second, as AWS does
// to an account over its quota. Through the gate every read succeeds
// within TIMEOUT; straight to the store, without it, most fail.
func TestIntegrationStormAgainstThrottlingStore(t *testing.T) {
	const n = 50
	srv := moto.Start(t)
	srv.SetEnv(t)
	for i := range n {
		srv.CreateSecret(t, fmt.Sprintf("fleet/obj%02d", i), fmt.Sprintf("value-%02d", i))
	}
	proxy, err := faultproxy.Start(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	t.Setenv("AWS_ENDPOINT_URL", proxy.URL())

	storm := func(t *testing.T, gates *gate.Gates, timeout time.Duration) (failed []error, took time.Duration) {
		t.Helper()
		reg, err := secrets.NewRegistry(awssm.New(awssm.Config{DefaultRegion: moto.Region}))
		if err != nil {
			t.Fatal(err)
		}
		f, err := cache.New(reg, cache.Config{TTL: 0, Timeout: timeout, Gates: gates})
		if err != nil {
			t.Fatal(err)
		}
		if err := proxy.RateLimit(5, 5, faultproxy.AWSThrottling()); err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		var wg sync.WaitGroup
		start := time.Now()
		for i := range n {
			wg.Go(func() {
				ref := secrets.Ref{Backend: awssm.Name, Name: fmt.Sprintf("fleet/obj%02d", i)}
				sec, err := f.Fetch(context.Background(), ref, true)
				if err == nil && string(sec.Value) != fmt.Sprintf("value-%02d", i) {
					err = fmt.Errorf("%s: read another value", ref)
				}
				if err != nil {
					mu.Lock()
					failed = append(failed, err)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		return failed, time.Since(start)
	}

	t.Run("straight to the store", func(t *testing.T) {
		before, limitedBefore := proxy.Requests(), proxy.Limited()
		failed, _ := storm(t, nil, 20*time.Second)
		t.Logf("without the gate: %d requests, %d throttled", proxy.Requests()-before, proxy.Limited()-limitedBefore)
		if len(failed) == 0 {
			t.Fatal("every read succeeded without the gate: the proxy does not throttle, the test proves nothing")
		}
		if !errors.Is(failed[0], secrets.ErrThrottled) {
			t.Errorf("a read failed with %v, want throttled", failed[0])
		}
		t.Logf("without the gate: %d of %d reads failed", len(failed), n)
	})
	t.Run("through the gate", func(t *testing.T) {
		m := metrics.New(metrics.Config{})
		gates, err := gate.New(gate.Config{Concurrency: 8, Metrics: m})
		if err != nil {
			t.Fatal(err)
		}
		before, limitedBefore := proxy.Requests(), proxy.Limited()
		// 50 answers at 5 a second after a burst of 5 take 9s at best.
		failed, took := storm(t, gates, 25*time.Second)
		if len(failed) > 0 {
			t.Fatalf("%d of %d reads failed through the gate, first: %v", len(failed), n, failed[0])
		}
		requests, limited := proxy.Requests()-before, proxy.Limited()-limitedBefore
		t.Logf("through the gate: %d reads in %v, %d requests, %d throttled", n, took, requests, limited)
		// Each throttled answer holds every read of the node back, and at
		// most 8 wait to try again: about one throttled request per read
		// (54 in a run; 196 when the backoff was waited outside the slots,
		// by all 50), not 50 readers spinning for 9s.
		if limited > 2*n {
			t.Errorf("the store throttled %d requests for %d reads", limited, n)
		}
	})
}
