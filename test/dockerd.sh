#!/usr/bin/env bash
# test/dockerd.sh makes sure a Docker engine answers on /var/run/docker.sock
# for the end-to-end tests, and stops only an engine that it started itself.
#
# Usage: test/dockerd.sh ensure|stop|status
#   ensure  install docker.io, busybox-static, iptables and docker-compose
#           with apt when dockerd or docker-compose is missing; start dockerd
#           in the background when nothing answers on the socket; wait until
#           `docker version` answers
#   stop    stop the dockerd that `ensure` started (recorded in the pid file);
#           never one started by anything else
#   status  print whether an engine answers and whether this script owns it
# Sourced, it defines dsv_dockerd_ensure, dsv_dockerd_stop and
# dsv_dockerd_status; after dsv_dockerd_ensure, DSV_DOCKERD_STARTED=1 tells
# that this call started the engine.
# Environment:
#   DSV_DOCKERD_PIDFILE  pid file of the engine started here (default: /var/run/dsv-dockerd.pid)
#   DSV_DOCKERD_LOG      its log (default: /var/log/dsv-dockerd.log)
#   DSV_DOCKERD_TIMEOUT  seconds to wait for it to answer (default: 60)
#   DSV_DOCKERD_ARGS     extra dockerd arguments

# shellcheck disable=SC2034 # DSV_DOCKERD_STARTED is read by the scripts that source this one
DSV_DOCKER_SOCK=/var/run/docker.sock
: "${DSV_DOCKERD_PIDFILE:=/var/run/dsv-dockerd.pid}"
: "${DSV_DOCKERD_LOG:=/var/log/dsv-dockerd.log}"
: "${DSV_DOCKERD_TIMEOUT:=60}"
DSV_DOCKERD_STARTED=0

dsv_dockerd_log() { echo "dockerd.sh: $*" >&2; }

# dsv_dockerd_answers succeeds when an engine answers on the socket, whatever
# DOCKER_HOST says.
dsv_dockerd_answers() {
	[[ -S $DSV_DOCKER_SOCK ]] &&
		timeout 10 docker -H "unix://$DSV_DOCKER_SOCK" version --format '{{.Server.Version}}' >/dev/null 2>&1
}

# dsv_dockerd_owned prints the pid of the dockerd this script started, if it
# still runs.
dsv_dockerd_owned() {
	local pid
	[[ -f $DSV_DOCKERD_PIDFILE ]] || return 1
	pid=$(<"$DSV_DOCKERD_PIDFILE")
	# A pid recorded by an earlier run may have been reused: check the name.
	if [[ $pid =~ ^[0-9]+$ ]] && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == dockerd ]]; then
		echo "$pid"
		return 0
	fi
	rm -f "$DSV_DOCKERD_PIDFILE"
	return 1
}

dsv_dockerd_install() {
	local pkgs=(docker.io busybox-static iptables docker-compose ca-certificates)
	dsv_dockerd_log "apt-get install ${pkgs[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
}

# dsv_dockerd_cgroups mounts the cgroup hierarchies when the machine booted
# without them (runc cannot start a container otherwise).
dsv_dockerd_cgroups() {
	if [[ -e /sys/fs/cgroup/cgroup.controllers ]] || grep -q '^cgroup .*/sys/fs/cgroup/memory ' /proc/mounts; then
		return 0
	fi
	dsv_dockerd_log "no cgroup hierarchy mounted: mounting with cgroupfs-mount"
	command -v cgroupfs-mount >/dev/null ||
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends cgroupfs-mount >/dev/null
	cgroupfs-mount
}

# dsv_dockerd_iptables_args prints the dockerd arguments the machine's
# iptables allows: nft when it works, else legacy, else none at all.
dsv_dockerd_iptables_args() {
	if iptables -t nat -L -n >/dev/null 2>&1; then
		return 0
	fi
	if command -v iptables-legacy >/dev/null && iptables-legacy -t nat -L -n >/dev/null 2>&1; then
		dsv_dockerd_log "iptables (nft) fails here: switching to iptables-legacy"
		update-alternatives --set iptables /usr/sbin/iptables-legacy >/dev/null
		update-alternatives --set ip6tables /usr/sbin/ip6tables-legacy >/dev/null 2>&1 || true
		return 0
	fi
	dsv_dockerd_log "no working iptables: starting dockerd with --iptables=false (containers get no NAT)"
	echo "--iptables=false --ip6tables=false"
}

dsv_dockerd_ensure() {
	DSV_DOCKERD_STARTED=0
	if ! command -v dockerd >/dev/null || ! command -v docker-compose >/dev/null; then
		dsv_dockerd_install || return
	fi
	if dsv_dockerd_answers; then
		return 0
	fi
	if dsv_dockerd_owned >/dev/null; then
		dsv_dockerd_log "the dockerd started earlier ($(<"$DSV_DOCKERD_PIDFILE")) does not answer: stopping it"
		dsv_dockerd_stop
	fi
	dsv_dockerd_cgroups || return
	local args pid deadline jobctl=$-
	read -ra args <<<"$(dsv_dockerd_iptables_args) ${DSV_DOCKERD_ARGS:-}"
	mkdir -p "$(dirname "$DSV_DOCKERD_LOG")" "$(dirname "$DSV_DOCKERD_PIDFILE")"
	dsv_dockerd_log "starting dockerd${args[*]:+ ${args[*]}} (log: $DSV_DOCKERD_LOG)"
	# setsid: its own session, so that a Ctrl-C or the end of the calling
	# make or shell does not reach it; only dsv_dockerd_stop ends it.
	# Job control off, so the child is no process group leader and setsid
	# execs dockerd in place: $! is then dockerd's pid.
	set +m
	setsid dockerd "${args[@]}" </dev/null >>"$DSV_DOCKERD_LOG" 2>&1 &
	pid=$!
	[[ $jobctl != *m* ]] || set -m
	echo "$pid" >"$DSV_DOCKERD_PIDFILE"
	DSV_DOCKERD_STARTED=1
	deadline=$((SECONDS + DSV_DOCKERD_TIMEOUT))
	until dsv_dockerd_answers; do
		if ! kill -0 "$pid" 2>/dev/null; then
			rm -f "$DSV_DOCKERD_PIDFILE"
			DSV_DOCKERD_STARTED=0
			dsv_dockerd_log "dockerd exited; last lines of $DSV_DOCKERD_LOG:"
			tail -n 20 "$DSV_DOCKERD_LOG" >&2
			return 1
		fi
		if ((SECONDS >= deadline)); then
			dsv_dockerd_log "dockerd ($pid) does not answer after ${DSV_DOCKERD_TIMEOUT}s; last lines of $DSV_DOCKERD_LOG:"
			tail -n 20 "$DSV_DOCKERD_LOG" >&2
			return 1
		fi
		sleep 0.5
	done
	dsv_dockerd_log "dockerd ($pid) answers"
}

dsv_dockerd_stop() {
	local pid i
	if ! pid=$(dsv_dockerd_owned); then
		dsv_dockerd_log "no dockerd started by this script is running: nothing to stop"
		return 0
	fi
	dsv_dockerd_log "stopping dockerd ($pid)"
	kill -TERM "$pid" 2>/dev/null || true
	# dockerd stops its containers, plugins and containerd first: allow 30s.
	for ((i = 0; i < 60; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.5
	done
	if kill -0 "$pid" 2>/dev/null; then
		dsv_dockerd_log "dockerd ($pid) still runs after 30s: killing it"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$DSV_DOCKERD_PIDFILE"
}

dsv_dockerd_status() {
	local pid
	if dsv_dockerd_answers; then
		echo "an engine answers on $DSV_DOCKER_SOCK"
	else
		echo "nothing answers on $DSV_DOCKER_SOCK"
	fi
	if pid=$(dsv_dockerd_owned); then
		echo "dockerd $pid was started by this script"
	fi
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
	set -euo pipefail
	case ${1:-} in
	ensure) dsv_dockerd_ensure ;;
	stop) dsv_dockerd_stop ;;
	status) dsv_dockerd_status ;;
	*)
		sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0" >&2
		exit 2
		;;
	esac
fi
