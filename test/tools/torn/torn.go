// Package torn checks that a reader of a refreshed dsv volume never sees
// files of two versions at once. A secret version is a JSON object whose
// fields a and b are equal (the version, then 4 KiB derived from it, so a
// partial read shows) and whose sum is "n:sha256(a)"; mounted with key=*,
// it becomes the files a, b and sum. Reader is a shell loop for the
// container that checks every read; Parse reads its final report. The
// end-to-end suite (test/e2e) asserts on it and the benchmark (test/tools/bench)
// reports it.
package torn

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// padding is the number of bytes after the version in a and b.
const padding = 4096

// Secret is version n of the secret; seed makes values differ between runs.
func Secret(seed string, n int) string {
	var pad strings.Builder
	h := sha256.Sum256([]byte(seed + "-" + strconv.Itoa(n)))
	for pad.Len() < padding {
		pad.WriteString(hex.EncodeToString(h[:]))
		h = sha256.Sum256(h[:])
	}
	a := strconv.Itoa(n) + "-" + pad.String()[:padding]
	b, err := json.Marshal(map[string]string{"a": a, "b": a, "sum": Sum(a, n)})
	if err != nil {
		panic(err) // strings always marshal
	}
	return string(b)
}

// Sum is the sum field of version n whose a is a.
func Sum(a string, n int) string {
	s := sha256.Sum256([]byte(a))
	return strconv.Itoa(n) + ":" + hex.EncodeToString(s[:])
}

// SumOf is the content of the file sum for version n of Secret(seed, n).
func SumOf(seed string, n int) string {
	var v map[string]string
	if err := json.Unmarshal([]byte(Secret(seed, n)), &v); err != nil {
		panic(err)
	}
	return v["sum"]
}

// Reader runs in the container (sh -c) until /tmp/stop exists, on a
// volume mounted at /run/secrets. Each iteration resolves ..data once, as
// an application that opens the directory does, and reads sum, a and b
// from that one payload directory: they must be of one version. A payload
// directory removed by the next swap between the readlink and the reads is
// counted as gone (the reader would retry), not as torn. For comparison it
// also hashes a and b through their visible symlinks, which resolve ..data
// once each and may legitimately straddle a swap ("straddled"; not an
// error). Its last line is its report.
const Reader = `
n=0 torn=0 badsum=0 gone=0 seen=0 back=0 last=-1 straddled=0
while [ ! -e /tmp/stop ]; do
	d=$(readlink /run/secrets/..data) || { gone=$((gone+1)); continue; }
	p=/run/secrets/$d
	v= h=
	IFS=: read -r v h 2>/dev/null <"$p/sum"
	s=$(sha256sum "$p/a" "$p/b" 2>/dev/null) || { gone=$((gone+1)); continue; }
	[ -n "$v" ] || { gone=$((gone+1)); continue; }
	set -- $s
	n=$((n+1))
	[ "$1" = "$3" ] || torn=$((torn+1))
	[ "$1" = "$h" ] || badsum=$((badsum+1))
	if [ "$v" != "$last" ]; then
		[ "$v" -gt "$last" ] || back=$((back+1))
		seen=$((seen+1))
		last=$v
	fi
	if s=$(sha256sum /run/secrets/a /run/secrets/b 2>/dev/null); then
		set -- $s
		[ "$1" = "$3" ] || straddled=$((straddled+1))
	fi
done
echo "reads=$n torn=$torn badsum=$badsum gone=$gone versions=$seen backwards=$back straddled=$straddled last=$last"
`

// Report is Reader's final count.
type Report struct {
	Reads     int // consistent reads through one ..data target
	Torn      int // reads where a and b differ
	BadSum    int // reads where a does not match sum
	Gone      int // reads whose payload directory went before it was read
	Versions  int // distinct versions seen
	Backwards int // times an older version followed a newer one
	Straddled int // reads through the visible symlinks that straddled a swap
	Last      int // the last version seen
}

// Parse reads the report from Reader's output (its last line).
func Parse(out string) (Report, error) {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	fields := map[string]*int{}
	var r Report
	for k, p := range map[string]*int{"reads": &r.Reads, "torn": &r.Torn, "badsum": &r.BadSum, "gone": &r.Gone,
		"versions": &r.Versions, "backwards": &r.Backwards, "straddled": &r.Straddled, "last": &r.Last} {
		fields[k] = p
	}
	seen := map[string]bool{}
	for _, f := range strings.Fields(lines[len(lines)-1]) {
		k, v, _ := strings.Cut(f, "=")
		p, ok := fields[k]
		if !ok {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			return Report{}, fmt.Errorf("torn reader output %q: %s is not a count", out, f)
		}
		*p = n
		seen[k] = true
	}
	for k := range fields {
		if !seen[k] {
			return Report{}, fmt.Errorf("torn reader output %q lacks %s", out, k)
		}
	}
	return r, nil
}

// String is the report as one line.
func (r Report) String() string {
	return fmt.Sprintf("%d reads, %d torn, %d checksum mismatches, %d versions seen, %d backwards, %d straddled (through the visible symlinks, expected), %d gone (retried)",
		r.Reads, r.Torn, r.BadSum, r.Versions, r.Backwards, r.Straddled, r.Gone)
}
