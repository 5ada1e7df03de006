#!/usr/bin/env bash
# test/under-load.sh runs make targets while CPU hogs keep every core busy,
# as on a shared 2-core CI machine running another build: the suite must not
# depend on how fast the machine is (tests wait for events, never a fixed
# time).
#
# Usage: test/under-load.sh [-n HOGS] [-r ROUNDS] TARGET...
#   -n HOGS    busy processes beside the tests (default: 2)
#   -r ROUNDS  runs of the targets, one after the other (default: 2)
# Example: test/under-load.sh unit e2e     (make unit, make e2e, twice)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

hogs=2 rounds=2
while getopts n:r: opt; do
	case $opt in
	n) hogs=$OPTARG ;;
	r) rounds=$OPTARG ;;
	*) exit 2 ;;
	esac
done
shift $((OPTIND - 1))
(($# > 0)) || { echo "usage: $0 [-n HOGS] [-r ROUNDS] TARGET..." >&2; exit 2; }

pids=()
stop_hogs() { ((${#pids[@]})) && kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null || true; }
trap stop_hogs EXIT
for ((i = 0; i < hogs; i++)); do
	# A busy loop at the tests' own priority.
	bash -c 'while :; do :; done' &
	pids+=($!)
done
echo "under-load.sh: $hogs CPU hogs running (pids ${pids[*]}) on $(nproc) cores"

for ((r = 1; r <= rounds; r++)); do
	for target in "$@"; do
		start=$SECONDS
		echo "=== under-load.sh: round $r/$rounds: make $target"
		make --no-print-directory "$target"
		echo "=== under-load.sh: round $r/$rounds: make $target passed in $((SECONDS - start))s"
	done
done
