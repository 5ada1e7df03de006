package metrics

import (
	"bufio"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// family is one metric with its series: a counter, a gauge or a histogram,
// written in Prometheus's text exposition format (version 0.0.4). It is
// what dsv needs of a metrics library and no more: see the package comment
// for why not client_golang.
type family struct {
	name, help, kind string
	// labels are the label names, sorted as Prometheus writes them;
	// values are given in their order.
	labels []string
	// buckets are a histogram's upper bounds, ascending, without +Inf.
	buckets []float64

	mu     sync.Mutex
	series map[string]*series
}

// series is one set of label values and what was recorded for it.
type series struct {
	values []string
	value  float64  // a counter's or gauge's value; a histogram's sum
	counts []uint64 // a histogram's count per bucket (not cumulative), +Inf last
}

func newFamily(name, help, kind string, labels ...string) *family {
	return &family{name: name, help: help, kind: kind, labels: labels, series: map[string]*series{}}
}

func newHistogram(name, help string, buckets []float64, labels ...string) *family {
	f := newFamily(name, help, "histogram", labels...)
	f.buckets = buckets
	return f
}

// get returns the series of values, made if new. f.mu must be held.
func (f *family) get(values []string) *series {
	if len(values) != len(f.labels) {
		panic("metrics: " + f.name + ": wrong number of label values")
	}
	key := strings.Join(values, "\xff")
	s, ok := f.series[key]
	if !ok {
		s = &series{values: slices.Clone(values)}
		if f.kind == "histogram" {
			s.counts = make([]uint64, len(f.buckets)+1)
		}
		f.series[key] = s
	}
	return s
}

// add adds v to a counter's series.
func (f *family) add(v float64, values ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.get(values).value += v
}

// dropWhere removes the series whose value of the label name is one gone
// says is gone; a family without that label keeps all.
func (f *family) dropWhere(name string, gone func(string) bool) {
	i := slices.Index(f.labels, name)
	if i < 0 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for key, s := range f.series {
		if gone(s.values[i]) {
			delete(f.series, key)
		}
	}
}

// observe records one observation in a histogram's series.
func (f *family) observe(v float64, values ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.get(values)
	i, _ := slices.BinarySearch(f.buckets, v) // the first bound >= v; len: +Inf
	s.counts[i]++
	s.value += v
}

// sample is one line of a family that is computed at scrape time.
type sample struct {
	values []string
	value  float64
}

// write writes f's series, sorted by label values; nothing when it has
// none yet, as client_golang does.
func (f *family) write(w *bufio.Writer) {
	f.mu.Lock()
	all := make([]*series, 0, len(f.series))
	for _, s := range f.series {
		c := *s
		c.counts = slices.Clone(s.counts)
		all = append(all, &c)
	}
	f.mu.Unlock()
	if len(all) == 0 {
		return
	}
	slices.SortFunc(all, func(a, b *series) int { return slices.Compare(a.values, b.values) })
	writeHeader(w, f.name, f.help, f.kind)
	for _, s := range all {
		if f.kind != "histogram" {
			writeSample(w, f.name, f.labels, s.values, "", "", s.value)
			continue
		}
		var cum uint64
		for i, n := range s.counts {
			cum += n
			le := "+Inf"
			if i < len(f.buckets) {
				le = formatFloat(f.buckets[i])
			}
			writeSample(w, f.name+"_bucket", f.labels, s.values, "le", le, float64(cum))
		}
		writeSample(w, f.name+"_sum", f.labels, s.values, "", "", s.value)
		writeSample(w, f.name+"_count", f.labels, s.values, "", "", float64(cum))
	}
}

func writeHeader(w *bufio.Writer, name, help, kind string) {
	w.WriteString("# HELP " + name + " ")
	writeEscaped(w, help, false)
	w.WriteString("\n# TYPE " + name + " " + kind + "\n")
}

// writeEscaped escapes backslashes and line feeds, and double quotes in a
// label value (quotes), as the text format requires.
func writeEscaped(w *bufio.Writer, s string, quotes bool) {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			w.WriteString(`\\`)
		case c == '\n':
			w.WriteString(`\n`)
		case c == '"' && quotes:
			w.WriteString(`\"`)
		default:
			w.WriteByte(c)
		}
	}
}

// writeSample writes one line: name{labels} value. extra is one more
// label (a histogram's le) when not empty.
func writeSample(w *bufio.Writer, name string, labels, values []string, extra, extraValue string, v float64) {
	w.WriteString(name)
	if len(labels) > 0 || extra != "" {
		w.WriteByte('{')
		for i, l := range labels {
			if i > 0 {
				w.WriteByte(',')
			}
			writeLabel(w, l, values[i])
		}
		if extra != "" {
			if len(labels) > 0 {
				w.WriteByte(',')
			}
			writeLabel(w, extra, extraValue)
		}
		w.WriteByte('}')
	}
	w.WriteByte(' ')
	w.WriteString(formatFloat(v))
	w.WriteByte('\n')
}

func writeLabel(w *bufio.Writer, name, value string) {
	w.WriteString(name + `="`)
	writeEscaped(w, value, true)
	w.WriteByte('"')
}

func formatFloat(v float64) string {
	switch {
	case math.IsInf(v, +1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// writeGauges writes a gauge family computed at scrape time; nothing when
// it has no sample.
func writeGauges(w *bufio.Writer, name, help string, labels []string, samples []sample) {
	if len(samples) == 0 {
		return
	}
	slices.SortFunc(samples, func(a, b sample) int { return slices.Compare(a.values, b.values) })
	writeHeader(w, name, help, "gauge")
	for _, s := range samples {
		writeSample(w, name, labels, s.values, "", "", s.value)
	}
}
