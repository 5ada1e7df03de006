#!/usr/bin/env bash
# build-plugin.sh builds the static dsv binary, lays out the managed plugin
# (plugin/config.json + plugin/rootfs/) without pulling any image, and
# installs it with `docker plugin create`, replacing a plugin of the same name;
# or, with --push, publishes it to a registry with `docker plugin push`.
#
# The rootfs holds exactly: /dsv, /etc/ssl/certs/ca-certificates.crt and the
# empty folders the plugin needs. The Dockerfile produces the same rootfs for
# those who have an image registry.
#
# Usage: ./build-plugin.sh [--enable] [--name NAME]
#        ./build-plugin.sh --push REF [--arch ARCH]
#   --enable     enable the plugin after creating it (default: leave it disabled
#                so that `docker plugin set` can still change its settings)
#   --name NAME  plugin name (default: dsv)
#   --push REF   create the plugin as REF (e.g. registry.example.com/dsv:1.0),
#                `docker plugin push` it, and remove the local copy; REF must
#                not be installed here. Users then run
#                `docker plugin install --grant-all-permissions --alias dsv REF`
#   --arch ARCH  amd64 or arm64: the binary's GOARCH (default: the host's);
#                another architecture than the host's is pushed under a tag of
#                its own (`make push` uses REF and REF-arm64), and installed
#                here only where the kernel runs it (`make e2e-arm64` runs the
#                arm64 plugin under qemu-user-static: test/binfmt.sh)
# Environment:
#   DSV_PLUGIN_DIR    where to assemble the plugin (default: <repo>/plugin)
#   DSV_STATE_BACKUP  where the old plugin's volume records wait while it is
#                     replaced (default: /var/lib/dsv/state-backup); a run
#                     that fails after removing the old plugin leaves them
#                     there, and the next run carries them over
#   VERSION           version stamped into the binary (default: git describe)
set -euo pipefail

usage() {
	sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

name=dsv
enable=0
push=
arch=
named=0
while (($#)); do
	case $1 in
	--enable) enable=1 ;;
	--push | --arch)
		[[ $# -ge 2 && -n $2 ]] || { echo "build-plugin.sh: $1 needs a value" >&2; exit 2; }
		if [[ $1 == --push ]]; then push=$2; else arch=$2; fi
		shift
		;;
	--push=?*) push=${1#--push=} ;;
	--arch=?*) arch=${1#--arch=} ;;
	--name)
		[[ $# -ge 2 && -n $2 ]] || { echo "build-plugin.sh: --name needs a value" >&2; exit 2; }
		name=$2
		named=1
		shift
		;;
	--name=?*) name=${1#--name=} named=1 ;;
	-h | --help) usage; exit 0 ;;
	*) echo "build-plugin.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
	esac
	shift
done

export PATH=/usr/local/go/bin:$PATH
host_arch=$(go env GOARCH)
arch=${arch:-$host_arch}
case $arch in
amd64 | arm64) ;;
*) echo "build-plugin.sh: --arch $arch: use amd64 or arm64" >&2; exit 2 ;;
esac
if [[ -n $push ]] && ((enable || named)); then
	echo "build-plugin.sh: --push creates the plugin as REF and removes it once pushed: --enable and --name do not apply" >&2
	exit 2
fi

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
plugin_dir=${DSV_PLUGIN_DIR:-$repo/plugin}
rootfs=$plugin_dir/rootfs
ca_bundle=/etc/ssl/certs/ca-certificates.crt
# The folders the plugin needs in its rootfs. Keep in step with the Dockerfile.
rootfs_dirs=(mnt/dsv var/lib/dsv run/docker/plugins run/dsv/files run/dsv/templates run/dsv/credentials tmp proc sys dev etc)
# Host folders of config.json's two mounts: docker refuses to enable the
# plugin when a bind source is missing.
host_dirs=(/var/lib/dsv/files /var/lib/dsv/templates /var/lib/dsv/credentials)

started=$SECONDS
step() { printf '==> [%3ds] %s\n' $((SECONDS - started)) "$*"; }

case $plugin_dir in
/ | "" | "$repo") echo "build-plugin.sh: refusing DSV_PLUGIN_DIR=$plugin_dir" >&2; exit 2 ;;
esac
command -v docker >/dev/null || { echo "build-plugin.sh: docker not found (test/dockerd.sh ensure installs it)" >&2; exit 1; }
docker version --format '{{.Server.Version}}' >/dev/null ||
	{ echo "build-plugin.sh: no Docker engine answers (test/dockerd.sh ensure starts one)" >&2; exit 1; }

version=${VERSION:-$(git -C "$repo" describe --always --dirty 2>/dev/null || echo dev)}

# Build into a scratch folder first, so a failed build leaves plugin/ as it was.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
step "go build ./cmd/dsv (version $version, linux/$arch)"
(cd "$repo" && GOOS=linux GOARCH=$arch CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$version" -o "$work/dsv" ./cmd/dsv)
if command -v readelf >/dev/null && readelf -l "$work/dsv" 2>/dev/null | grep -q INTERP; then
	echo "build-plugin.sh: $work/dsv is dynamically linked; the rootfs has no libc" >&2
	exit 1
fi

# Another architecture than the host's is installed here only where the
# kernel runs it (qemu-user-static registered with binfmt_misc, as
# test/binfmt.sh does for make e2e-arm64): try the binary itself.
if [[ -z $push && $arch != "$host_arch" ]] && ! "$work/dsv" -version >/dev/null 2>&1; then
	echo "build-plugin.sh: a linux/$arch plugin cannot run on this $host_arch host: build it with --push REF --arch $arch, or run it emulated (test/binfmt.sh arm64 ./build-plugin.sh --arch arm64 ...)" >&2
	exit 2
fi

[[ -s $ca_bundle ]] || "$repo/test/deps.sh" ca-certificates
[[ -s $ca_bundle ]] || { echo "build-plugin.sh: $ca_bundle missing after installing ca-certificates" >&2; exit 1; }

step "assemble $plugin_dir"
rm -rf "$rootfs" "$plugin_dir/config.json"
mkdir -p "$rootfs"
for d in "${rootfs_dirs[@]}"; do
	install -d -m 0755 "$rootfs/$d"
done
chmod 1777 "$rootfs/tmp"
install -D -m 0755 "$work/dsv" "$rootfs/dsv"
install -D -m 0644 "$ca_bundle" "$rootfs/etc/ssl/certs/ca-certificates.crt"
install -m 0644 "$repo/config.json" "$plugin_dir/config.json"

if [[ -n $push ]]; then
	if docker plugin inspect "$push" >/dev/null 2>&1; then
		echo "build-plugin.sh: a plugin named $push is installed here; --push creates it afresh: push another tag, or docker plugin rm it first" >&2
		exit 1
	fi
	step "docker plugin create $push (linux/$arch)"
	if ! out=$(docker plugin create "$push" "$plugin_dir" 2>&1); then
		echo "build-plugin.sh: docker plugin create $push: $out" >&2
		if [[ $out == *"already exists"* ]]; then
			echo "build-plugin.sh: an installed plugin has this very rootfs, and dockerd refuses to create a second one: stamp another VERSION" >&2
		fi
		exit 1
	fi
	trap 'docker plugin rm -f "$push" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
	step "docker plugin push $push"
	docker plugin push "$push"
	docker plugin rm -f "$push" >/dev/null
	step "done: pushed $push (linux/$arch, version $version, $(du -sh "$rootfs" | cut -f1) rootfs)"
	exit 0
fi

for d in "${host_dirs[@]}"; do
	[[ -d $d ]] || install -d -m 0700 "$d"
done

# A rebuild is an upgrade: the old plugin's volumes (its state file, which
# holds names, options and mount ids, never a value) and the settings its
# user changed carry over, so `docker volume ls` still lists every volume
# afterwards. A setting left at the old default takes the new default.
# The state lives in the PropagatedMount (kept by `docker plugin upgrade`);
# plugins built before that kept it in their rootfs.
state_rel=propagated-mount/.state/state.json
# The records wait outside the work folder (removed on exit), so that a
# failed `docker plugin create` after `docker plugin rm` loses none: the
# next run finds them here.
backup=${DSV_STATE_BACKUP:-/var/lib/dsv/state-backup}/$name.json
# Env: Settings.Env holds the values, Config.Env the defaults. Mounts:
# Config.Mounts holds the sources dockerd mounts, which `docker plugin set`
# changes (Settings.Mounts stops following them once dockerd reloads the
# plugin): a mount is kept when its source is not the new plugin's default.
settings_fmt='{{range .Settings.Env}}{{println .}}{{end}}{{range .Config.Mounts}}{{.Name}}.source={{.Source}}{{println}}{{end}}'
defaults_fmt='{{range .Config.Env}}{{.Name}}={{.Value}}{{println}}{{end}}'
old_settings=()
if docker plugin inspect "$name" >/dev/null 2>&1; then
	old_id=$(docker plugin inspect -f '{{.Id}}' "$name")
	docker_root=$(docker info -f '{{.DockerRootDir}}' 2>/dev/null || echo /var/lib/docker)
	old_state=$docker_root/plugins/$old_id/$state_rel
	[[ -f $old_state ]] || old_state=$docker_root/plugins/$old_id/rootfs/var/lib/dsv/state.json
	mapfile -t old_defaults < <(docker plugin inspect -f "$defaults_fmt" "$name" | sed '/^$/d')
	while IFS= read -r kv; do
		[[ -n $kv ]] || continue
		# Only what the user changed from the old plugin's defaults.
		printf '%s\n' "${old_defaults[@]}" | grep -qxF -- "$kv" || old_settings+=("$kv")
	done < <(docker plugin inspect -f "$settings_fmt" "$name")
	step "remove plugin $name"
	docker plugin disable -f "$name" >/dev/null 2>&1 || true
	if [[ -f $old_state ]]; then
		install -d -m 0700 "${backup%/*}"
		install -m 0600 "$old_state" "$backup.tmp"
		mv -f "$backup.tmp" "$backup"
		carried_from=$old_state
	fi
	docker plugin rm -f "$name" >/dev/null
fi
if [[ -f $backup && -z ${carried_from:-} ]]; then
	step "found the volumes of a plugin $name that an earlier run removed: $backup"
	carried_from=$backup
fi
step "docker plugin create $name"
if ! out=$(docker plugin create "$name" "$plugin_dir" 2>&1); then
	echo "build-plugin.sh: docker plugin create $name: $out" >&2
	if [[ -f $backup ]]; then
		echo "build-plugin.sh: the volumes of the old plugin are kept in $backup: run build-plugin.sh again to carry them over" >&2
	fi
	exit 1
fi
if [[ -f $backup ]]; then
	docker_root=${docker_root:-$(docker info -f '{{.DockerRootDir}}' 2>/dev/null || echo /var/lib/docker)}
	new_state=$docker_root/plugins/$(docker plugin inspect -f '{{.Id}}' "$name")/$state_rel
	install -d -m 0755 "${new_state%/.state/*}"
	install -d -m 0700 "${new_state%/*}"
	install -m 0600 "$backup" "$new_state"
	rm -f "$backup"
	step "carried over the volumes of the old plugin ($carried_from)"
fi
if ((${#old_settings[@]})); then
	# Settable names of the new plugin: env values, and mount sources.
	settable=$(docker plugin inspect -f '{{range .Config.Env}}{{.Name}} {{range .Settable}}{{.}},{{end}}{{println}}{{end}}{{range .Config.Mounts}}{{.Name}}.source {{range .Settable}}{{.}},{{end}}{{println}}{{end}}' "$name")
	mount_defaults=$(docker plugin inspect -f '{{range .Config.Mounts}}{{.Name}}.source={{.Source}}{{println}}{{end}}' "$name")
	kept=() dropped=()
	for kv in "${old_settings[@]}"; do
		key=${kv%%=*}
		! grep -qxF -- "$kv" <<<"$mount_defaults" || continue
		# A mount whose host folder (or, for engine, socket) is gone would stop
		# the plugin from enabling.
		if [[ $kv == *.source=* && ! -e ${kv#*=} ]]; then dropped+=("$key (source gone)"); continue; fi
		if ! grep -qE "^${key//./\\.} .*(value|source)," <<<"$settable"; then dropped+=("$key (not a setting any more)"); continue; fi
		case $key in
		# Keys in argv would show in the process list: set them again by hand.
		AWS_SECRET_ACCESS_KEY | AWS_SESSION_TOKEN | VAULT_TOKEN) dropped+=("$key (a credential: set it again, or use the credentials mount)"); continue ;;
		esac
		# One at a time: one refused setting must not cost the others.
		if docker plugin set "$name" "$kv" >/dev/null 2>&1; then kept+=("$key"); else dropped+=("$key (refused)"); fi
	done
	((${#kept[@]} == 0)) || step "kept settings: ${kept[*]}"
	((${#dropped[@]} == 0)) || step "NOT kept: $(IFS=';'; echo "${dropped[*]}")"
fi
if ((enable)); then
	step "docker plugin enable $name"
	docker plugin enable "$name" >/dev/null
fi
step "done: plugin $name ($(du -sh "$rootfs" | cut -f1) rootfs)"
# Not --filter capability=volumedriver: dockerd 20.10 lists a plugin under a
# capability filter only when every one of its types matches, and dsv has two.
docker plugin ls | grep -E "^ID|[[:space:]]$name:" || true

if ((!enable)); then
	cat <<EOF

The plugin is installed but not enabled. Next steps:
  docker plugin set $name LOG_LEVEL=debug BACKEND=file    # optional settings
  docker plugin set $name files.source=/path/to/secrets   # default /var/lib/dsv/files
  docker plugin enable $name
EOF
fi
