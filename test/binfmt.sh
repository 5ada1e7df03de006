#!/usr/bin/env bash
# test/binfmt.sh runs a command where this amd64 kernel runs linux/arm64
# programs, through Debian's qemu-user-static and binfmt_misc: `make
# unit-arm64` runs the unit tests' arm64 binaries this way, and `make
# e2e-arm64` the arm64 plugin under the real engine.
#
# It installs qemu-user-static when missing (test/deps.sh), mounts
# binfmt_misc when it is not mounted, and registers the package's
# /usr/lib/binfmt.d/qemu-aarch64.conf when no enabled entry runs aarch64
# programs already. Its flags are those of the package: F opens the
# interpreter at registration, so that it runs inside the plugin's rootfs
# too, which holds no qemu. When the command ends it undoes exactly what it
# did (removes the entry it registered, unmounts what it mounted), and
# leaves anything it found as it was; runs that overlap share the emulation,
# and the last to end undoes it.
#
# Usage: test/binfmt.sh arm64 CMD...
set -euo pipefail

case ${1:-} in
arm64) ;;
-h | --help)
	sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
	exit 0
	;;
*)
	echo "binfmt.sh: want arm64 as the first argument (got '${1:-}')" >&2
	exit 2
	;;
esac
shift
(($#)) || { echo "binfmt.sh: no command to run" >&2; exit 2; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
log() { echo "binfmt.sh: $*" >&2; }
"$here/deps.sh" qemu-user-static

dir=/proc/sys/fs/binfmt_misc
conf=/usr/lib/binfmt.d/qemu-aarch64.conf
entry=$dir/qemu-aarch64
# An aarch64 ELF header, as binfmt_misc prints an entry's magic.
magic=7f454c460201010000000000000000000200b700

# Runs may overlap (make unit-arm64 beside make e2e-arm64): each sets up and
# undoes holding the setup lock (8), runs holding the users lock (9) shared,
# and the last to end (the only one that gets 9 exclusive) undoes what the
# state file says a run set up (a killed run's too).
state=/run/dsv-binfmt.state
exec 8>/run/dsv-binfmt.lock 9>/run/dsv-binfmt.users
flock -x 8

mounted=0 enabled=0 registered=0
[[ ! -s $state ]] || read -r mounted enabled registered <"$state"

# shellcheck disable=SC2317 # run by the EXIT trap
undo() {
	local status=$?
	flock -x 8
	if ! flock -xn 9; then
		log "another run still uses the emulation: the last one undoes it"
		exit "$status"
	fi
	mounted=0 enabled=0 registered=0
	[[ ! -s $state ]] || read -r mounted enabled registered <"$state"
	if ((registered)) && [[ -e $entry ]]; then
		echo -1 >"$entry" || { log "could not remove $entry"; status=1; }
	fi
	if ((enabled)); then
		echo 0 >"$dir/status" || { log "could not disable binfmt_misc again"; status=1; }
	fi
	if ((mounted)); then
		umount "$dir" || { log "could not unmount $dir"; status=1; }
	fi
	rm -f "$state"
	((registered + enabled + mounted == 0)) || log "undone: what the runs set up is gone (registered $registered, enabled $enabled, mounted $mounted)"
	exit "$status"
}
trap undo EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if ! mountpoint -q "$dir"; then
	mount -t binfmt_misc binfmt_misc "$dir"
	mounted=1
fi
if [[ $(<"$dir/status") != enabled ]]; then
	echo 1 >"$dir/status"
	enabled=1
fi
found=
for f in "$dir"/*; do
	case ${f##*/} in register | status) continue ;; esac
	if grep -qx enabled "$f" && grep -qx "magic $magic" "$f"; then
		found=$f
		break
	fi
done
if [[ -n $found ]]; then
	((registered)) && [[ $found == "$entry" ]] || log "aarch64 programs already run through $found ($(sed -n 's/^interpreter //p' "$found")): kept as it is"
elif [[ -e $entry ]]; then
	log "$entry exists but does not run aarch64 programs: remove it (echo -1 > $entry) and run again"
	exit 1
else
	[[ -r $conf ]] || { log "$conf is missing (qemu-user-static installed?)"; exit 1; }
	cat "$conf" >"$dir/register"
	registered=1
	log "registered $conf for this run"
fi
if ((mounted + enabled + registered)); then
	echo "$mounted $enabled $registered" >"$state"
fi
flock -s 9
flock -u 8

status=0
"$@" 8>&- 9>&- || status=$?
exit "$status"
