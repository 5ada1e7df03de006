#!/usr/bin/env bash
# test/engine-build.sh builds the current Docker engine from pinned Go
# modules (the module proxy is the only source) into a cache outside the
# repository, keyed by the pins, and prints the folder of its binaries:
#   dockerd docker-proxy            github.com/moby/moby/v2 (Engine 29)
#   containerd containerd-shim-runc-v2 ctr   github.com/containerd/containerd/v2
#   runc                            github.com/opencontainers/runc (cgo, seccomp)
#   docker                          github.com/docker/cli
#   cli-plugins/docker-compose      github.com/docker/compose/v5
# A cold build takes ~5 minutes on 2 cores (plus ~2 GB of module downloads
# when the module cache is empty); later calls return at once. A component
# built once is kept when a later one fails. runc needs gcc and
# libseccomp-dev, installed with apt when missing. When the proxy no longer
# serves a pin, the build fails naming that module.
#
# Usage: test/engine-build.sh [--print-pins|--built]
#   --print-pins  print the pinned modules, one MODULE@VERSION a line
#   --built       print the binaries' folder if they are built, else fail
# Environment:
#   DSV_CACHE_DIR  cache folder (default: ${XDG_CACHE_HOME:-~/.cache}/dsv)
set -euo pipefail
export PATH=/usr/local/go/bin:$PATH
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# The pins. v2.0.0-beta.24 is the newest moby/v2 whose whole build graph the
# proxy serves; it is Engine 29.8.1-dev (releases/versions.yaml), API 1.56.
moby=github.com/moby/moby/v2@v2.0.0-beta.24
containerd=github.com/containerd/containerd/v2@v2.4.1
# Debian's runc 1.1.5 fails under Engine 29 ("namespace time does not exist").
runc=github.com/opencontainers/runc@v1.5.3
cli=github.com/docker/cli@v29.10.0+incompatible
# The CLI's vendor.mod asks for swarmkit v2.1.3, which the proxy refuses.
swarmkit=github.com/moby/swarmkit/v2@v2.1.3-0.20260828175525-ad0357aedfca
compose=github.com/docker/compose/v5@v5.6.0
# recipe changes when the way of building changes, so that a cache built the
# old way is not taken for a new one.
recipe=1

mode=build
case ${1:-} in
"") ;;
--print-pins) mode=pins ;;
--built) mode=built ;;
*)
	sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
	exit 2
	;;
esac
if [[ $mode == pins ]]; then
	printf '%s\n' "$moby" "$containerd" "$runc" "$cli" "$swarmkit" "$compose"
	exit 0
fi

cache=${DSV_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dsv}
key=$(printf '%s\n' "$recipe" "$moby" "$containerd" "$runc" "$cli" "$swarmkit" "$compose" | sha256sum | cut -c1-12)
top=$cache/engine-${moby##*@}-$key
bin=$top/bin

log() { echo "engine-build.sh: $*" >&2; }

# done_mark NAME: the component NAME was built and checked into $bin.
done_mark() { echo "$top/.built-$1"; }

if [[ -f $(done_mark moby) && -f $(done_mark containerd) && -f $(done_mark runc) && -f $(done_mark cli) && -f $(done_mark compose) ]] &&
	"$bin/dockerd" --version >/dev/null 2>&1 && "$bin/docker" --version >/dev/null 2>&1; then
	echo "$bin"
	exit 0
fi
[[ $mode != built ]] || exit 1

mkdir -p "$bin/cli-plugins"
work=$(mktemp -d "$cache/.engine-XXXXXX")
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
started=$SECONDS
export GOFLAGS="-mod=mod -buildvcs=false"

# source MODULE@VERSION prints a writable copy of the module's source; it
# fails naming the module when the proxy does not serve it.
source_of() {
	local mv=$1 json dir dst
	if ! json=$(go mod download -json "$mv" 2>&1); then
		log "the Go module proxy does not serve $mv (the pin needs updating in ${BASH_SOURCE[0]}):"
		grep -E '"Error"' <<<"$json" >&2 || echo "$json" >&2
		return 1
	fi
	dir=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' <<<"$json")
	[[ -d $dir ]] || { log "go mod download $mv gave no source folder: $json"; return 1; }
	dst=$work/src/${mv//[\/@+]/_}
	mkdir -p "$dst"
	cp -a "$dir/." "$dst/"
	chmod -R u+w "$dst"
	echo "$dst"
}

# build NAME MODULE@VERSION: run "$@" after -- in a copy of its source, and
# on failure name the modules the proxy did not serve.
build() {
	local name=$1 mv=$2 src out t0=$SECONDS
	shift 3 # name, module, --
	[[ -f $(done_mark "$name") ]] && return 0
	log "building $mv"
	src=$(source_of "$mv") || return 1
	out=$work/$name.log
	if ! (cd "$src" && "$@") >"$out" 2>&1; then
		log "building $mv failed; last lines:"
		tail -n 25 "$out" >&2
		local missing
		missing=$(grep -oE '[[:alnum:]./_-]+@v[[:alnum:].+_-]+: (reading|verifying|unknown revision|invalid version).*' "$out" | sort -u | head -5 || true)
		[[ -z $missing ]] || log "modules the proxy did not serve, needed by $mv:"$'\n'"$missing"
		return 1
	fi
	touch "$(done_mark "$name")"
	log "built $mv in $((SECONDS - t0))s"
}

moby_build() {
	local next
	next=$(sed -n 's/^[[:space:]]*next: "\(.*\)"$/\1/p' releases/versions.yaml)
	CGO_ENABLED=0 go build -trimpath -tags "netgo osusergo static_build nri_no_wasm" \
		-ldflags "-s -w -X github.com/moby/moby/v2/dockerversion.Version=${next:-0.0.0}-dev -X github.com/moby/moby/v2/dockerversion.GitCommit=${moby##*@}" \
		-o "$bin/" ./cmd/dockerd ./cmd/docker-proxy
}

containerd_build() {
	CGO_ENABLED=0 go build -trimpath -tags "no_btrfs no_devmapper no_zfs" \
		-ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=${containerd##*@}" \
		-o "$bin/" ./cmd/containerd ./cmd/containerd-shim-runc-v2 ./cmd/ctr
}

runc_build() {
	CGO_ENABLED=1 go build -trimpath -tags "seccomp urfave_cli_no_docs" -ldflags "-s -w" -o "$bin/runc" .
}

cli_build() {
	# The CLI is no Go module of its own: its module files are vendor.mod
	# and vendor.sum, and vendor/ holds what they list.
	mv vendor.mod go.mod
	mv vendor.sum go.sum
	rm -rf vendor
	go mod edit -replace "${swarmkit%@*}=$swarmkit"
	local v=${cli##*@v}
	CGO_ENABLED=0 go build -trimpath -tags "osusergo netgo" \
		-ldflags "-s -w -X github.com/docker/cli/cli/version.Version=${v%+incompatible} -X github.com/docker/cli/cli/version.GitCommit=${cli##*@}" \
		-o "$bin/docker" ./cmd/docker
}

compose_build() {
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X github.com/docker/compose/v5/internal.Version=${compose##*@}" \
		-o "$bin/cli-plugins/docker-compose" ./cmd
}

log "building the current engine into $top (cold: ~5 minutes)"
"$here/deps.sh" gcc libc6-dev libseccomp-dev pkg-config
build moby "$moby" -- moby_build
build containerd "$containerd" -- containerd_build
build runc "$runc" -- runc_build
build cli "$cli" -- cli_build
build compose "$compose" -- compose_build
printf '%s\n' "$moby" "$containerd" "$runc" "$cli" "$swarmkit" "$compose" >"$top/PINS"
"$bin/dockerd" --version >&2
"$bin/docker" --version >&2
"$bin/runc" --version | head -1 >&2
log "done in $((SECONDS - started))s"
echo "$bin"
