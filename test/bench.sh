#!/usr/bin/env bash
# test/bench.sh runs the dsv benchmark (test/tools/bench) on the local Docker engine
# and prints its report: container start overhead against a local volume,
# Mount handler latency against moto, the plugin's resident memory, and the
# backend reads of 50 parallel container starts and of a refresh, counted
# by a proxy in front of moto, with the latency of a rotation.
#
# It makes sure an engine and the test image exist (test/dockerd.sh,
# test/busybox-image.sh), builds the plugin and installs it under its own
# name, runs the benchmark, which starts moto_server and configures the
# plugin, and finally removes every volume it left, that plugin, and then the
# host folder its mounts pointed at (/var/lib/dsv-bench/NAME). The
# report exits 0 whether targets are met or missed; a non-zero exit means
# something could not be measured.
#
# Usage: test/bench.sh [bench flags...]   (test/bench.sh -h lists them)
# Environment:
#   DSV_BENCH_PLUGIN  plugin name to install, reconfigure and remove
#                     (default: dsvbench; never the e2e suite's plugin)
#   DSV_TEST_IMAGE    image of the containers (default: dsv-test/busybox:latest)
#   MOTO_SERVER       moto_server to run (default: found by test/servers/moto)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
name=${DSV_BENCH_PLUGIN:-dsvbench}
export DSV_TEST_IMAGE=${DSV_TEST_IMAGE:-dsv-test/busybox:latest}
export PATH=/usr/local/go/bin:$PATH
started=$SECONDS

say() { echo "bench.sh: $*" >&2; }

for a in "$@"; do
	case $a in
	-h | -help | --help)
		sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
		cd "$repo" && go run ./test/tools/bench -h 2>&1
		exit 0
		;;
	esac
done

if [[ ! $name =~ ^[a-z0-9][a-z0-9._-]*$ ]]; then
	say "DSV_BENCH_PLUGIN=$name is not a plain plugin name"
	exit 2
fi
# The benchmark disables, reconfigures and removes its plugin: never the one
# the end-to-end suite or a user relies on.
if [[ $name == "${DSV_E2E_PLUGIN:-dsv}" || $name == dsv ]]; then
	say "DSV_BENCH_PLUGIN=$name would reconfigure and remove a plugin others use; pick another name"
	exit 2
fi

if [[ -x $repo/test/dockerd.sh ]]; then
	"$repo/test/dockerd.sh" ensure
fi
if [[ -x $repo/test/busybox-image.sh ]]; then
	DSV_TEST_IMAGE=$DSV_TEST_IMAGE "$repo/test/busybox-image.sh" >&2
fi
docker image inspect "$DSV_TEST_IMAGE" >/dev/null 2>&1 || { say "image $DSV_TEST_IMAGE missing"; exit 1; }

work=$(mktemp -d)
# The plugin's mounts point into this folder: it may only go once the plugin
# has (Docker 20.10 panics at start-up restoring volumes of a plugin whose
# mount source is missing).
bench_dir=/var/lib/dsv-bench/$name
# remove_plugin removes the plugin and its volumes, if it exists.
remove_plugin() {
	local vols
	docker plugin inspect "$name" >/dev/null 2>&1 || return 0
	vols=$(docker volume ls -q --filter "driver=$name" 2>/dev/null || true)
	if [[ -n $vols ]]; then
		say "removing $(wc -w <<<"$vols") volume(s) of plugin $name"
		# shellcheck disable=SC2086 # one word per volume name
		docker volume rm -f $vols >/dev/null 2>&1 || true
	fi
	say "removing plugin $name"
	docker plugin disable -f "$name" >/dev/null 2>&1 || true
	docker plugin rm -f "$name" >/dev/null 2>&1 || true
}
cleanup() {
	local rc=$?
	remove_plugin
	if docker plugin inspect "$name" >/dev/null 2>&1 || ! docker version >/dev/null 2>&1; then
		say "plugin $name may still exist: keeping $bench_dir, which its mounts point at"
	else
		rm -rf "$bench_dir"
		rmdir --ignore-fail-on-non-empty "$(dirname "$bench_dir")" 2>/dev/null || true
	fi
	rm -rf "$work"
	say "done in $((SECONDS - started))s"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "go build ./test/tools/bench"
(cd "$repo" && go build -o "$work/bench" ./test/tools/bench)

# A plugin left by an interrupted run would hand its settings and volumes
# over to the new build (build-plugin.sh upgrades in place): start clean.
remove_plugin
say "building plugin $name"
if ! DSV_PLUGIN_DIR=$work/plugin "$repo/build-plugin.sh" --name "$name" >"$work/build.log" 2>&1; then
	cat "$work/build.log" >&2
	exit 1
fi

say "running the benchmark (about a minute and a half)"
"$work/bench" -plugin "$name" -image "$DSV_TEST_IMAGE" -dir "$bench_dir" "$@"
