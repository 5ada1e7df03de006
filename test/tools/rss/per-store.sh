#!/usr/bin/env bash
# per-store.sh: what each store costs in resident memory. Builds cmd/dsv as
# make build does, once with every backend and once per store with only
# that store (the others replaced by the stand-ins in testdata/stubs through
# go build -overlay: the same main, none of their imports), plus a build
# whose main waits before doing anything (the cost of the packages' init
# alone), and measures each with test/tools/rss (the file backend's 20 runs).
#
#   test/tools/rss/per-store.sh            # from the repository's root, as root
#   N=5 test/tools/rss/per-store.sh        # processes per binary (default 3)
#
# Nothing is written into the source tree; the binaries go to a temp dir.
set -euo pipefail
cd "$(dirname "$0")/../../.."
n=${N:-3}
tmp=$(mktemp -d /tmp/dsv-per-store-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
stubs=$PWD/test/tools/rss/testdata/stubs
ldflags="-s -w -X main.version=per-store"

# overlay KEEP: a go build -overlay file that empties every backend package
# but KEEP (a directory under secrets/, or "" for none) and puts its stand-in
# in its place.
overlay() {
	local keep=$1 sep="" b f
	printf '{"Replace":{'
	for b in awssm ssm vault gcp azure; do
		[ "$b" = "$keep" ] && continue
		for f in secrets/$b/*.go; do
			case $f in *_test.go) continue ;; esac
			printf '%s"%s":""' "$sep" "$PWD/$f"
			sep=,
		done
		printf ',"%s":"%s"' "$PWD/secrets/$b/zz_stand_in.go" "$stubs/$b.go"
	done
	printf '}}\n'
}

build() { # NAME [go build flags]
	local name=$1
	shift
	CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" "$@" -o "$tmp/$name" ./cmd/dsv
}

echo "per-store.sh: building" >&2
build all
build file-only -overlay <(overlay "")
for b in awssm ssm vault gcp azure; do
	build "$b-only" -overlay <(overlay "$b")
done
# init-only: main sleeps before run, so that only the runtime and the
# packages' init have run.
sed 's|^func main() {$|func main() {\n\tif os.Getenv("DSV_INIT_ONLY") != "" {\n\t\ttime.Sleep(time.Hour)\n\t}|' cmd/dsv/main.go >"$tmp/main.go"
grep -q DSV_INIT_ONLY "$tmp/main.go"
printf '{"Replace":{"%s":"%s"}}\n' "$PWD/cmd/dsv/main.go" "$tmp/main.go" >"$tmp/init.json"
build init-only -overlay "$tmp/init.json"

ls -l "$tmp" | awk '$5 > 0 && $NF !~ /json|go$/ {printf "%-12s %6.1f MiB\n", $NF, $5/1048576}'

echo
echo "init only (every backend linked, main not started; median of $n, KiB):"
for i in $(seq "$n"); do
	DSV_INIT_ONLY=1 "$tmp/init-only" &
	pid=$!
	sleep 2
	awk '/^(VmRSS|RssAnon|RssFile):/ {printf "%s %s  ", $1, $2} END {print ""}' "/proc/$pid/status"
	kill "$pid"
	wait "$pid" 2>/dev/null || true
done

for b in all file-only awssm-only ssm-only vault-only gcp-only azure-only; do
	echo
	go run ./test/tools/rss -bin "$tmp/$b" -n "$n"
done
