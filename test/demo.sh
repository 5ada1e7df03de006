#!/usr/bin/env bash
# test/demo.sh: the README's first command (`make demo`). On a fresh Debian
# machine, as root: makes sure a Docker engine answers (installing docker.io
# and starting dockerd only when none does), builds and installs the dsv
# plugin, puts a demo secret in the file backend's folder, creates a volume
# that names its backend (so that it works whatever the plugin's BACKEND
# setting), mounts it into a container, prints it, and cleans up. The plugin
# stays installed and enabled; an engine this script started keeps running.
# Environment:
#   DSV_DEMO_PLUGIN   plugin name (default: dsv)
#   DSV_DEMO_VOLUME   volume name, also the secret's file name (default: dsv-demo)
#   DSV_DEMO_INSTALL  0: use the plugin as installed, skip steps 1 and 2
#   DSV_TEST_IMAGE    image of the container (default: dsv-test/busybox:latest)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH=/usr/local/go/bin:$PATH

plugin=${DSV_DEMO_PLUGIN:-dsv}
image=${DSV_TEST_IMAGE:-dsv-test/busybox:latest}
files=/var/lib/dsv/files
volume=${DSV_DEMO_VOLUME:-dsv-demo}
install=${DSV_DEMO_INSTALL:-1}
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

if [[ $install != 0 ]]; then
	say "1. a Docker engine"
	test/dockerd.sh ensure
	docker version --format 'engine {{.Server.Version}}'

	say "2. build and install the plugin ($plugin), and a busybox image made offline"
	./build-plugin.sh --name "$plugin" --enable
	test/busybox-image.sh
fi

# Config.Mounts: the source dockerd mounts (Settings.Mounts can be stale).
folder=$(docker plugin inspect -f '{{range .Config.Mounts}}{{if eq .Name "files"}}{{.Source}}{{end}}{{end}}' "$plugin")
folder=${folder:-$files}
say "3. a secret in the file backend's folder ($folder)"
value="hello from dsv at $(date -u +%FT%TZ): this file lives only in a tmpfs"
[[ -d $folder ]] || install -d -m 0700 "$folder"
umask 077
printf '%s\n' "$value" >"$folder/$volume"
echo "$folder/$volume"

cleanup() {
	docker volume rm "$volume" >/dev/null 2>&1 || true
	rm -f "$folder/$volume"
}
trap cleanup EXIT

# The volume names its backend: without it, it would take the plugin's
# BACKEND setting (after `docker plugin set dsv BACKEND=aws`, an AWS secret).
say "4. docker volume create -d $plugin -o backend=file -o secret=$volume $volume"
docker volume create -d "$plugin" -o backend=file -o secret="$volume" "$volume"

say "5. docker run --rm -v $volume:/run/secrets/demo $image cat /run/secrets/demo"
got=$(docker run --rm -v "$volume:/run/secrets/demo" "$image" \
	sh -c 'cat /run/secrets/demo; echo "--"; grep " /run/secrets/demo " /proc/mounts; ls -l /run/secrets/demo')
echo "$got"
if [[ $(head -n1 <<<"$got") != "$value" ]]; then
	echo "demo: the container did not read the secret" >&2
	exit 1
fi

say "6. docker volume inspect $volume (status: no value, ever)"
docker volume inspect "$volume" --format '{{json .Status}}'

say "done: the plugin '$plugin' stays installed; the demo volume and secret are removed"
