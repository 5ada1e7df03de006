package awsauth

import (
	"context"
	"errors"
	"sync"
	"testing"
)

// TestClients: one build per region, shared by concurrent callers; a failed
// build is not kept, so the next call tries again.
func TestClients(t *testing.T) {
	var mu sync.Mutex
	builds := map[string]int{}
	fail := true
	c := NewClients(func(_ context.Context, region string) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		builds[region]++
		if region == "bad" && fail {
			return "", errors.New("no credentials")
		}
		return "client-" + region, nil
	})
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if got, err := c.Get(context.Background(), "eu-west-1"); err != nil || got != "client-eu-west-1" {
				t.Errorf("Get = %q, %v", got, err)
			}
		}()
	}
	wg.Wait()
	if _, err := c.Get(context.Background(), "bad"); err == nil {
		t.Fatal("a failed build was not reported")
	}
	mu.Lock()
	fail = false
	mu.Unlock()
	if got, err := c.Get(context.Background(), "bad"); err != nil || got != "client-bad" {
		t.Fatalf("after a failed build, Get = %q, %v", got, err)
	}
	if builds["eu-west-1"] != 1 || builds["bad"] != 2 {
		t.Fatalf("builds = %v, want eu-west-1 once and bad twice", builds)
	}
}
