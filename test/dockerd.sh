#!/usr/bin/env bash
# test/dockerd.sh makes sure a Docker engine answers for the end-to-end
# tests, and stops only an engine that it started itself. It knows two
# engines (DSV_ENGINE):
#   debian   Debian's docker.io (Engine 20.10) and docker-compose 1.29, the
#            oldest we support, on /var/run/docker.sock (the default)
#   current  the current engine that test/engine-build.sh builds (Engine 29,
#            CLI 29, Compose v5), on /run/dsv-current/docker.sock, with its
#            own containerd, data root, exec root, pid files, cgroup parent
#            and network namespace (dsv-current), so that it shares no bridge,
#            iptables rule or path with an engine already on the machine (but
#            /run/docker/plugins, where every dockerd keeps its managed
#            plugins' sockets, one folder per plugin id).
# With DSV_DOCKERD_ISOLATE=1, Debian's engine runs isolated in the same way
# (on /run/dsv-debian/docker.sock, network namespace dsv-debian), so that a
# developer can run the whole suite, which restarts the engine, on a machine
# whose shared engine must stay up.
#            Its clients must use its CLI (Engine 29 refuses the API of the
#            20.10 CLI) and run inside its network namespace when they serve
#            the plugin on 127.0.0.1 (the plugin runs on the engine's host
#            network): see `env` and `exec`.
#
# Usage: test/dockerd.sh ensure|stop|status|env|exec CMD...
#   ensure  install what is missing (docker.io, busybox-static, iptables and
#           docker-compose with apt; the current engine with
#           test/engine-build.sh); start the engine in the background when
#           nothing answers on its socket; wait until `docker version` answers
#   stop    stop the engine that `ensure` started (recorded in the pid file);
#           never one started by anything else
#   status  print whether an engine answers and whether this script owns it
#   env     print the shell exports that point docker, docker compose and
#           the end-to-end suite at the engine: eval "$(test/dockerd.sh env)"
#   exec    run CMD with that environment, inside the engine's network
#           namespace when it has one
# Sourced, it defines dsv_dockerd_ensure, dsv_dockerd_stop,
# dsv_dockerd_status, dsv_dockerd_env and dsv_dockerd_exec; after
# dsv_dockerd_ensure, DSV_DOCKERD_STARTED=1 tells that this call started
# the engine.
# Environment:
#   DSV_ENGINE           debian (default) or current
#   DSV_DOCKERD_ISOLATE  1: run Debian's engine isolated too (the current one always is)
#   DSV_DOCKERD_PIDFILE  pid file of the engine started here (default: /var/run/dsv-dockerd.pid; isolated: /run/dsv-ENGINE/dsv-dockerd.pid)
#   DSV_DOCKERD_LOG      its log (default: /var/log/dsv-dockerd.log; isolated: /var/log/dsv-ENGINE-dockerd.log)
#   DSV_DOCKERD_TIMEOUT  seconds to wait for it to answer (default: 60)
#   DSV_DOCKERD_ARGS     extra dockerd arguments

# shellcheck disable=SC2034 # DSV_DOCKERD_STARTED is read by the scripts that source this one
: "${DSV_ENGINE:=debian}"
case $DSV_ENGINE in
debian) [[ ${DSV_DOCKERD_ISOLATE:-0} == 1 ]] && DSV_ISOLATED=1 || DSV_ISOLATED=0 ;;
current) DSV_ISOLATED=1 ;;
*)
	echo "dockerd.sh: DSV_ENGINE=$DSV_ENGINE: want debian or current" >&2
	# shellcheck disable=SC2317 # return when sourced, exit when run
	return 2 2>/dev/null || exit 2
	;;
esac
if ((DSV_ISOLATED)); then
	# Every path of an isolated engine is under these two folders, and its own.
	DSV_ISO_RUN=/run/dsv-$DSV_ENGINE
	DSV_ISO_LIB=/var/lib/dsv-$DSV_ENGINE
	DSV_DOCKER_SOCK=$DSV_ISO_RUN/docker.sock
	: "${DSV_DOCKERD_PIDFILE:=$DSV_ISO_RUN/dsv-dockerd.pid}"
	: "${DSV_DOCKERD_LOG:=/var/log/dsv-$DSV_ENGINE-dockerd.log}"
	DSV_DOCKERD_NETNS=dsv-$DSV_ENGINE
else
	DSV_DOCKER_SOCK=/var/run/docker.sock
	: "${DSV_DOCKERD_PIDFILE:=/var/run/dsv-dockerd.pid}"
	: "${DSV_DOCKERD_LOG:=/var/log/dsv-dockerd.log}"
	DSV_DOCKERD_NETNS=
fi
: "${DSV_DOCKERD_TIMEOUT:=60}"
DSV_DOCKERD_STARTED=0
DSV_DOCKERD_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

dsv_dockerd_log() { echo "dockerd.sh: $*" >&2; }

# dsv_dockerd_bin sets DSV_ENGINE_BIN to the folder of the current engine's
# binaries, building them when needed (test/engine-build.sh).
dsv_dockerd_bin() {
	[[ -z ${DSV_ENGINE_BIN:-} ]] || return 0
	DSV_ENGINE_BIN=$("$DSV_DOCKERD_REPO/test/engine-build.sh")
}

# dsv_dockerd_binary NAME prints the engine's program NAME: the current
# engine's from its build, Debian's from the PATH.
dsv_dockerd_binary() {
	if [[ $DSV_ENGINE == current ]]; then
		echo "$DSV_ENGINE_BIN/$1"
	else
		command -v "$1"
	fi
}

# dsv_dockerd_cli prints the docker CLI that speaks to the engine: Engine 29
# refuses the API version of Debian's 20.10 CLI. Empty when the current
# engine was never built.
dsv_dockerd_cli() {
	case $DSV_ENGINE in
	debian) echo docker ;;
	current)
		local bin=${DSV_ENGINE_BIN:-$("$DSV_DOCKERD_REPO/test/engine-build.sh" --built 2>/dev/null)}
		[[ -z $bin ]] || echo "$bin/docker"
		;;
	esac
}

# dsv_dockerd_answers succeeds when an engine answers on the socket, whatever
# DOCKER_HOST says.
dsv_dockerd_answers() {
	local cli
	cli=$(dsv_dockerd_cli)
	[[ -n $cli && -S $DSV_DOCKER_SOCK ]] &&
		timeout 10 "$cli" -H "unix://$DSV_DOCKER_SOCK" version --format '{{.Server.Version}}' >/dev/null 2>&1
}

# dsv_dockerd_owned_pid PIDFILE NAME prints the pid recorded in PIDFILE if
# that process still runs and is named NAME.
dsv_dockerd_owned_pid() {
	local pidfile=$1 name=$2 pid
	[[ -f $pidfile ]] || return 1
	pid=$(<"$pidfile")
	# A pid recorded by an earlier run may have been reused: check the name.
	if [[ $pid =~ ^[0-9]+$ ]] && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$name" ]]; then
		echo "$pid"
		return 0
	fi
	rm -f "$pidfile"
	return 1
}

# dsv_dockerd_owned prints the pid of the dockerd this script started, if it
# still runs.
dsv_dockerd_owned() { dsv_dockerd_owned_pid "$DSV_DOCKERD_PIDFILE" dockerd; }

dsv_dockerd_install() {
	case $DSV_ENGINE in
	debian)
		"$DSV_DOCKERD_REPO/test/deps.sh" docker.io:dockerd docker-compose:docker-compose busybox-static iptables:iptables ca-certificates || return
		;;
	current)
		"$DSV_DOCKERD_REPO/test/deps.sh" busybox-static iptables:iptables iproute2:ip util-linux:nsenter ca-certificates || return
		dsv_dockerd_bin
		;;
	esac
}

# dsv_dockerd_cgroups mounts the cgroup hierarchies when the machine booted
# without them (runc cannot start a container otherwise).
dsv_dockerd_cgroups() {
	if [[ -e /sys/fs/cgroup/cgroup.controllers ]] || grep -q '^cgroup .*/sys/fs/cgroup/memory ' /proc/mounts; then
		return 0
	fi
	dsv_dockerd_log "no cgroup hierarchy mounted: mounting with cgroupfs-mount"
	"$DSV_DOCKERD_REPO/test/deps.sh" cgroupfs-mount:cgroupfs-mount || return
	cgroupfs-mount
}

# dsv_dockerd_iptables_args prints the dockerd arguments the machine's
# iptables allows: nft when it works, else legacy, else none at all.
dsv_dockerd_iptables_args() {
	if dsv_dockerd_in_netns iptables -t nat -L -n >/dev/null 2>&1; then
		return 0
	fi
	if command -v iptables-legacy >/dev/null && dsv_dockerd_in_netns iptables-legacy -t nat -L -n >/dev/null 2>&1; then
		dsv_dockerd_log "iptables (nft) fails here: switching to iptables-legacy"
		update-alternatives --set iptables /usr/sbin/iptables-legacy >/dev/null
		update-alternatives --set ip6tables /usr/sbin/ip6tables-legacy >/dev/null 2>&1 || true
		return 0
	fi
	dsv_dockerd_log "no working iptables: starting dockerd with --iptables=false (containers get no NAT)"
	echo "--iptables=false --ip6tables=false"
}

# dsv_dockerd_netns makes the current engine's network namespace, with its
# loopback up, unless it exists. stop leaves it in place: a restart of the
# engine (the e2e suite restarts it from inside) must find the same one.
dsv_dockerd_netns() {
	[[ -n $DSV_DOCKERD_NETNS ]] || return 0
	if [[ ! -e /run/netns/$DSV_DOCKERD_NETNS ]]; then
		dsv_dockerd_log "ip netns add $DSV_DOCKERD_NETNS"
		ip netns add "$DSV_DOCKERD_NETNS" || return
	fi
	ip -n "$DSV_DOCKERD_NETNS" link set lo up
}

# dsv_dockerd_in_netns runs "$@" in the engine's network namespace, if it
# has one. nsenter enters the network namespace only: `ip netns exec` would
# also give the command a mount namespace of its own and remount /sys,
# which hides dockerd's mounts from the host and the cgroups from dockerd.
dsv_dockerd_in_netns() {
	if [[ -n $DSV_DOCKERD_NETNS ]]; then
		nsenter --net="/run/netns/$DSV_DOCKERD_NETNS" "$@"
	else
		"$@"
	fi
}

# dsv_dockerd_close_fds closes every descriptor of the shell above 2.
dsv_dockerd_close_fds() {
	local fd
	for fd in /proc/$BASHPID/fd/*; do
		fd=${fd##*/}
		((fd <= 2)) || eval "exec $fd>&-" 2>/dev/null || true
	done
}

# dsv_dockerd_spawn PIDFILE LOG CMD... starts CMD in the background, in the
# engine's network namespace and in a session of its own, so that a Ctrl-C
# or the end of the calling make or shell does not reach it; it records the
# pid in PIDFILE and in DSV_DOCKERD_SPAWNED. Job control off, so the child
# is no process group leader and setsid execs in place; nsenter and env
# exec too: $! is then CMD's pid. CMD inherits no descriptor but 0, 1 and 2:
# a lock the caller holds (`flock /tmp/dsv-docker.lock make e2e`) must end
# with the caller, not live on in the engine, which would hold it until it
# stops.
dsv_dockerd_spawn() {
	local pidfile=$1 log=$2 jobctl=$- run=()
	shift 2
	[[ -z $DSV_DOCKERD_NETNS ]] || run=(nsenter --net="/run/netns/$DSV_DOCKERD_NETNS")
	# The current engine finds containerd-shim-runc-v2 and runc on its PATH.
	[[ $DSV_ENGINE != current ]] || run+=(env PATH="$DSV_ENGINE_BIN:$PATH")
	mkdir -p "$(dirname "$log")" "$(dirname "$pidfile")"
	set +m
	(
		dsv_dockerd_close_fds
		exec setsid "${run[@]}" "$@" </dev/null >>"$log" 2>&1
	) &
	DSV_DOCKERD_SPAWNED=$!
	[[ $jobctl != *m* ]] || set -m
	echo "$DSV_DOCKERD_SPAWNED" >"$pidfile"
}

# An isolated engine's containerd: its own root (under dockerd's data root,
# so that the e2e suite's canary check reads it too), state and socket.
dsv_containerd_pidfile() { echo "$DSV_ISO_RUN/dsv-containerd.pid"; }
dsv_containerd_sock() { echo "$DSV_ISO_RUN/containerd/containerd.sock"; }
dsv_containerd_answers() {
	timeout 10 "$(dsv_dockerd_binary ctr)" --address "$(dsv_containerd_sock)" version >/dev/null 2>&1
}

dsv_containerd_start() {
	local pidfile cfg log pid deadline
	pidfile=$(dsv_containerd_pidfile)
	log=/var/log/dsv-$DSV_ENGINE-containerd.log
	if dsv_dockerd_owned_pid "$pidfile" containerd >/dev/null; then
		dsv_containerd_answers && return 0
		dsv_containerd_stop
	fi
	cfg=$DSV_ISO_RUN/containerd.toml
	mkdir -p "$DSV_ISO_RUN/containerd" "$DSV_ISO_LIB/docker/containerd/daemon"
	# CRI off, as in the containerd that dockerd starts itself; NRI off
	# (containerd 2): its socket is one path for the whole machine
	# (/var/run/nri/nri.sock); opt off: /opt/containerd. Debian's containerd
	# 1.6 reads configuration version 2, containerd 2 version 3.
	local version=2
	[[ $DSV_ENGINE != current ]] || version=3
	cat >"$cfg" <<-TOML
		version = $version
		root = "$DSV_ISO_LIB/docker/containerd/daemon"
		state = "$DSV_ISO_RUN/containerd/daemon"
		disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime", "io.containerd.podsandbox.controller.v1.podsandbox", "io.containerd.nri.v1.nri", "io.containerd.internal.v1.opt"]

		[grpc]
		  address = "$(dsv_containerd_sock)"

		[ttrpc]
		  address = "$(dsv_containerd_sock).ttrpc"
	TOML
	dsv_dockerd_log "starting containerd (log: $log)"
	dsv_dockerd_spawn "$pidfile" "$log" "$(dsv_dockerd_binary containerd)" --config "$cfg"
	pid=$DSV_DOCKERD_SPAWNED
	deadline=$((SECONDS + DSV_DOCKERD_TIMEOUT))
	until dsv_containerd_answers; do
		if ! kill -0 "$pid" 2>/dev/null || ((SECONDS >= deadline)); then
			dsv_dockerd_log "containerd ($pid) does not answer; last lines of $log:"
			tail -n 20 "$log" >&2
			dsv_containerd_stop
			return 1
		fi
		sleep 0.5
	done
}

dsv_containerd_stop() {
	local pid
	pid=$(dsv_dockerd_owned_pid "$(dsv_containerd_pidfile)" containerd) || return 0
	dsv_dockerd_log "stopping containerd ($pid)"
	dsv_dockerd_kill "$pid" containerd
	rm -f "$(dsv_containerd_pidfile)"
}

# dsv_dockerd_kill PID NAME: SIGTERM, then SIGKILL if it still runs 30s later.
dsv_dockerd_kill() {
	local pid=$1 name=$2 i
	kill -TERM "$pid" 2>/dev/null || true
	# dockerd stops its containers, plugins and containerd first: allow 30s.
	for ((i = 0; i < 60; i++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.5
	done
	dsv_dockerd_log "$name ($pid) still runs after 30s: killing it"
	kill -KILL "$pid" 2>/dev/null || true
}

# dsv_dockerd_isolated_args prints an isolated engine's own paths as dockerd
# arguments, one a line.
dsv_dockerd_isolated_args() {
	local cfg=$DSV_ISO_RUN/daemon.json
	mkdir -p "$DSV_ISO_RUN" "$DSV_ISO_LIB"
	# Its own (empty) configuration, not the machine's /etc/docker/daemon.json.
	[[ -f $cfg ]] || echo '{}' >"$cfg"
	printf '%s\n' --config-file "$cfg" \
		--containerd "$(dsv_containerd_sock)" \
		--data-root "$DSV_ISO_LIB/docker" \
		--exec-root "$DSV_ISO_RUN/docker" \
		--pidfile "$DSV_ISO_RUN/docker.pid" \
		--host "unix://$DSV_DOCKER_SOCK" \
		--cgroup-parent "dsv-$DSV_ENGINE"
}

# dsv_dockerd_config makes the current engine's CLI configuration folder,
# whose cli-plugins/ holds Compose v5: DOCKER_CONFIG points there (see env).
dsv_dockerd_config() {
	local dir=$DSV_ISO_RUN/docker-config
	mkdir -p "$dir/cli-plugins"
	[[ -f $dir/config.json ]] || echo '{}' >"$dir/config.json"
	ln -sfn "$DSV_ENGINE_BIN/cli-plugins/docker-compose" "$dir/cli-plugins/docker-compose"
}

dsv_dockerd_ensure() {
	DSV_DOCKERD_STARTED=0
	dsv_dockerd_install || return
	if dsv_dockerd_answers; then
		return 0
	fi
	if dsv_dockerd_owned >/dev/null; then
		dsv_dockerd_log "the dockerd started earlier ($(<"$DSV_DOCKERD_PIDFILE")) does not answer: stopping it"
		dsv_dockerd_stop
	fi
	dsv_dockerd_cgroups || return
	local args=() extra pid deadline
	args=("$(dsv_dockerd_binary dockerd)")
	if ((DSV_ISOLATED)); then
		dsv_dockerd_netns || return
		[[ $DSV_ENGINE != current ]] || dsv_dockerd_config || return
		dsv_containerd_start || return
		mapfile -t -O 1 args < <(dsv_dockerd_isolated_args)
	fi
	read -ra extra <<<"$(dsv_dockerd_iptables_args) ${DSV_DOCKERD_ARGS:-}"
	args+=("${extra[@]}")
	dsv_dockerd_log "starting ${args[*]} (log: $DSV_DOCKERD_LOG)"
	dsv_dockerd_spawn "$DSV_DOCKERD_PIDFILE" "$DSV_DOCKERD_LOG" "${args[@]}"
	pid=$DSV_DOCKERD_SPAWNED
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
	dsv_dockerd_log "dockerd ($pid) answers on $DSV_DOCKER_SOCK${DSV_DOCKERD_NETNS:+, in network namespace $DSV_DOCKERD_NETNS}"
}

dsv_dockerd_stop() {
	local pid
	if ! pid=$(dsv_dockerd_owned); then
		dsv_dockerd_log "no dockerd started by this script is running: nothing to stop"
	else
		dsv_dockerd_log "stopping dockerd ($pid)"
		dsv_dockerd_kill "$pid" dockerd
		rm -f "$DSV_DOCKERD_PIDFILE"
	fi
	((!DSV_ISOLATED)) || dsv_containerd_stop
}

dsv_dockerd_status() {
	local pid
	if dsv_dockerd_answers; then
		echo "an engine answers on $DSV_DOCKER_SOCK"
	else
		echo "nothing answers on $DSV_DOCKER_SOCK"
	fi
	if pid=$(dsv_dockerd_owned); then
		echo "dockerd $pid was started by this script${DSV_DOCKERD_NETNS:+, in network namespace $DSV_DOCKERD_NETNS}"
	fi
}

# dsv_dockerd_env prints the exports that point docker, docker compose and
# the e2e suite (which restarts the engine with this script) at the engine.
dsv_dockerd_env() {
	printf 'export DSV_ENGINE=%q DSV_DOCKERD_PIDFILE=%q\n' "$DSV_ENGINE" "$DSV_DOCKERD_PIDFILE"
	if ((DSV_ISOLATED)); then
		printf 'export DSV_DOCKERD_ISOLATE=1 DSV_DOCKERD_NETNS=%q DOCKER_HOST=%q\n' "$DSV_DOCKERD_NETNS" "unix://$DSV_DOCKER_SOCK"
	else
		echo 'unset DSV_DOCKERD_ISOLATE DSV_DOCKERD_NETNS DOCKER_HOST'
	fi
	if [[ $DSV_ENGINE == current ]]; then
		dsv_dockerd_bin || return
		dsv_dockerd_config
		printf 'export DOCKER_CONFIG=%q PATH=%q\n' "$DSV_ISO_RUN/docker-config" "$DSV_ENGINE_BIN:$PATH"
	else
		echo 'unset DOCKER_CONFIG'
	fi
}

# dsv_dockerd_exec CMD... runs CMD with dsv_dockerd_env's environment, in
# the engine's network namespace when it has one.
dsv_dockerd_exec() {
	local exports
	exports=$(dsv_dockerd_env) || return
	(
		eval "$exports"
		dsv_dockerd_in_netns "$@"
	)
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
	set -euo pipefail
	case ${1:-} in
	ensure) dsv_dockerd_ensure ;;
	stop) dsv_dockerd_stop ;;
	status) dsv_dockerd_status ;;
	env) dsv_dockerd_env ;;
	exec)
		shift
		(($#)) || { echo "dockerd.sh: exec needs a command" >&2; exit 2; }
		dsv_dockerd_exec "$@"
		;;
	*)
		sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0" >&2
		exit 2
		;;
	esac
fi
