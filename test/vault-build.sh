#!/usr/bin/env bash
# test/vault-build.sh builds Vault v1.13.0 (the last MPL-2.0 line that builds
# from its Go module here) into a cache outside the repository, keyed by
# version, and prints the binary's path. A cold build takes ~7 minutes on 2
# cores; later calls return at once. Override the cache with DSV_CACHE_DIR.
set -euo pipefail
export PATH=/usr/local/go/bin:$PATH
version=1.13.0
cache=${DSV_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dsv}
bin=$cache/vault-$version
if [[ -x $bin ]] && "$bin" version 2>/dev/null | grep -q "v$version"; then
	echo "$bin"
	exit 0
fi
mkdir -p "$cache"
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/servers/vaultbin" && pwd)
echo "vault-build.sh: building Vault v$version into $bin (cold: ~7 minutes)" >&2
tmp=$(mktemp "$cache/.vault-XXXXXX")
(cd "$src" && CGO_ENABLED=0 GOOS= GOARCH= GOFLAGS=-mod=mod go build -trimpath -o "$tmp" .) >&2
mv "$tmp" "$bin"
echo "$bin"
