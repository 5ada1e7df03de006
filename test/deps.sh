#!/usr/bin/env bash
# test/deps.sh installs, with apt-get, those of the Debian packages it is given
# that are not installed yet, and does nothing when all are. Every make target
# calls it for what its own suite needs (the Makefile's *_DEPS lists), as do
# the scripts that need a package (build-plugin.sh, test/dockerd.sh,
# test/engine-build.sh, test/busybox-image.sh): a fresh Debian machine needs
# nothing installed by hand but Go, make and git.
#
# Quiet: one line names what it installs; apt's output is shown only when the
# install fails. apt-get update runs only when the install fails without it
# (the empty package lists of a fresh machine, stale ones). It waits for
# apt's lock when another install holds it, rather than failing.
#
# Usage: test/deps.sh [--check] PACKAGE[:COMMAND]...
#   PACKAGE:COMMAND  the package counts as there when COMMAND is on the PATH
#                    (an engine or a tool installed another way than Debian's
#                    package, such as docker-ce's dockerd)
#   --check          install nothing: print the missing packages, exit 1 when
#                    any is missing
set -euo pipefail

check=0
if [[ ${1:-} == --check ]]; then
	check=1
	shift
fi
case ${1:-} in
-h | --help | "")
	sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
	[[ -n ${1:-} ]] && exit 0 || exit 2
	;;
esac

missing=()
for arg in "$@"; do
	pkg=${arg%%:*}
	if [[ $arg == *:* ]] && command -v "${arg#*:}" >/dev/null; then
		continue
	fi
	dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
((${#missing[@]})) || exit 0
if ((check)); then
	echo "${missing[*]}"
	exit 1
fi
if ((EUID != 0)); then
	echo "deps.sh: missing Debian packages: ${missing[*]}: install them (apt-get install ${missing[*]}), or run this as root" >&2
	exit 1
fi

echo "deps.sh: apt-get install ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT
apt=(apt-get -o DPkg::Lock::Timeout=600 -y -q)
if ! "${apt[@]}" install --no-install-recommends "${missing[@]}" >"$log" 2>&1; then
	if ! { "${apt[@]}" update && "${apt[@]}" install --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
		cat "$log" >&2
		echo "deps.sh: apt-get install ${missing[*]} failed (its output is above)" >&2
		exit 1
	fi
fi
