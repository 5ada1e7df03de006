#!/usr/bin/env bash
# test/busybox-image.sh builds the local image the end-to-end tests run their
# containers from, without any image registry: Debian's static busybox laid
# out as a rootfs and loaded with `docker import`.
#
# The image has /bin/busybox and a symlink per applet (`busybox --list`),
# /sbin, /usr/bin and /usr/sbin as links to /bin, /etc/passwd and /etc/group
# with root (0), nobody (65534) and app (1000:1000), /tmp (1777) and /run.
#
# Usage: test/busybox-image.sh [--force] [--podman]
#   --force   rebuild even when the image exists
#   --podman  build it for Podman (`podman import`), whose configuration and
#             storage follow CONTAINERS_CONF and CONTAINERS_STORAGE_CONF
# Environment:
#   DSV_TEST_IMAGE  image name (default: dsv-test/busybox:latest)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
image=${DSV_TEST_IMAGE:-dsv-test/busybox:latest}
force=0
engine=docker
while (($#)); do
	case $1 in
	--force) force=1 ;;
	--podman) engine=podman ;;
	-h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
	*) echo "busybox-image.sh: unknown argument: $1" >&2; exit 2 ;;
	esac
	shift
done

old_id=$($engine image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
if ((!force)) && [[ -n $old_id ]]; then
	echo "busybox-image.sh: $image exists (--force rebuilds it)"
	exit 0
fi

"$repo/test/deps.sh" busybox-static
busybox=$(dpkg -L busybox-static | grep -m1 '/bin/busybox$')
if command -v readelf >/dev/null && readelf -l "$busybox" 2>/dev/null | grep -q INTERP; then
	echo "busybox-image.sh: $busybox is not static" >&2
	exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
mkdir -p "$root"/{bin,etc,root,home/app,tmp,run,usr,dev,proc,sys}
chmod 1777 "$root/tmp"
chmod 0700 "$root/root"
install -m 0755 "$busybox" "$root/bin/busybox"
while read -r applet; do
	[[ -n $applet && $applet != busybox && ! -e $root/bin/$applet ]] || continue
	ln -s busybox "$root/bin/$applet"
done < <("$root/bin/busybox" --list)
ln -s bin "$root/sbin"
ln -s ../bin "$root/usr/bin"
ln -s ../bin "$root/usr/sbin"

cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
app:x:1000:1000:app:/home/app:/bin/sh
EOF
cat >"$root/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
app:x:1000:
EOF
chmod 0644 "$root/etc/passwd" "$root/etc/group"
chown 1000:1000 "$root/home/app"

tar --numeric-owner -C "$root" -cf - . |
	$engine import \
		--change 'ENV PATH=/bin:/usr/bin:/sbin:/usr/sbin' \
		--change 'CMD ["/bin/sh"]' \
		--change 'LABEL org.opencontainers.image.description="dsv end-to-end test image: Debian busybox-static"' \
		- "$image" >/dev/null

# Smoke test: a shell, an applet and the app user resolve in the new image.
if ! out=$($engine run --rm --network none --user app "$image" sh -c 'id -u; id -g; ls /bin/sh >/dev/null' 2>&1) ||
	[[ $out != $'1000\n1000' ]]; then
	echo "busybox-image.sh: smoke test of $image failed: $out" >&2
	exit 1
fi
# The image replaced by --force is left untagged: drop it unless a container uses it.
if [[ -n $old_id && $old_id != "$($engine image inspect --format '{{.Id}}' "$image")" ]]; then
	$engine image rm "$old_id" >/dev/null 2>&1 || true
fi
echo "busybox-image.sh: built $image for $engine ($("$root/bin/busybox" --list | wc -l) applets)"
