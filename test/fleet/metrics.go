package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// hist is dsv_mount_duration_seconds summed over the nodes: cumulative
// counts by upper bound (seconds).
type hist struct {
	buckets map[float64]float64
	count   float64
}

func (h hist) minus(o hist) hist {
	d := hist{buckets: map[float64]float64{}, count: h.count - o.count}
	for le, v := range h.buckets {
		d.buckets[le] = v - o.buckets[le]
	}
	return d
}

// quantileMS is the upper bound of the bucket that holds quantile q, in
// ms (the histogram's resolution).
func (h hist) quantileMS(q float64) int64 {
	if h.count <= 0 {
		return 0
	}
	les := make([]float64, 0, len(h.buckets))
	for le := range h.buckets {
		les = append(les, le)
	}
	sort.Float64s(les)
	rank := q * h.count
	for _, le := range les {
		if h.buckets[le] >= rank {
			if math.IsInf(le, 1) {
				return -1
			}
			return int64(math.Round(le * 1000))
		}
	}
	return -1
}

// mountHistograms scrapes every node's plugin (METRICS_ADDR, on the
// node's address).
func (f *fleet) mountHistograms(ctx context.Context) (hist, error) {
	sum := hist{buckets: map[float64]float64{}}
	var mu sync.Mutex
	err := parallel(f.nodes, 8, func(n *node) error {
		h, err := scrapeMountHist(ctx, "http://"+n.ip()+":9469/metrics")
		if err != nil {
			return fmt.Errorf("node %s: %w", n.name(), err)
		}
		mu.Lock()
		defer mu.Unlock()
		sum.count += h.count
		for le, v := range h.buckets {
			sum.buckets[le] += v
		}
		return nil
	})
	return sum, err
}

func scrapeMountHist(ctx context.Context, url string) (hist, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return hist{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return hist{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return hist{}, fmt.Errorf("%s: %s: %s", url, resp.Status, b)
	}
	return parseMountHist(resp.Body)
}

// parseMountHist reads dsv_mount_duration_seconds from Prometheus text,
// summing series that differ in labels other than le.
func parseMountHist(r io.Reader) (hist, error) {
	h := hist{buckets: map[float64]float64{}}
	s := bufio.NewScanner(r)
	for s.Scan() {
		line := s.Text()
		switch {
		case strings.HasPrefix(line, "dsv_mount_duration_seconds_bucket{"):
			i := strings.Index(line, `le="`)
			if i < 0 {
				continue
			}
			rest := line[i+4:]
			j := strings.IndexByte(rest, '"')
			if j < 0 {
				continue
			}
			le, err := strconv.ParseFloat(rest[:j], 64)
			if err != nil {
				return h, fmt.Errorf("bucket bound %q: %w", rest[:j], err)
			}
			v, err := lastFloat(line)
			if err != nil {
				return h, err
			}
			h.buckets[le] += v
		case strings.HasPrefix(line, "dsv_mount_duration_seconds_count"):
			v, err := lastFloat(line)
			if err != nil {
				return h, err
			}
			h.count += v
		}
	}
	return h, s.Err()
}

func lastFloat(line string) (float64, error) {
	f := strings.Fields(line)
	return strconv.ParseFloat(f[len(f)-1], 64)
}
