# dsv: developer and CI entry points. `make test` is what CI runs (.ci/run).
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
# go lives in /usr/local/go/bin, which a login PATH may lack.
export PATH := /usr/local/go/bin:$(PATH)

GO       ?= go
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
# Each fuzz target runs this many inputs in `make fuzz`; `make test` runs each
# for CI_FUZZTIME (for longer runs: make fuzz FUZZTIME=5000000x). Budgets are
# counts, not durations: with Go 1.26 a duration can fail a target that found
# nothing, with "context deadline exceeded" when the deadline races a worker
# (golang/go#75804, fixed in Go 1.27; it failed our CI once). A count has no
# deadline to race. ~10,000 inputs/s per target on 2 cores.
FUZZTIME ?= 300000x
CI_FUZZTIME ?= 50000x
# The end-to-end suite installs the plugin under this name and runs its
# containers from this image; both are passed to it in the environment.
export DSV_E2E_PLUGIN ?= dsv
export DSV_TEST_IMAGE ?= dsv-test/busybox:latest
# RUN=regex runs only the tests it matches (go test -run), in unit, e2e,
# e2e-current and the arm64 targets; unset: every test. Read with $(value)
# so that a regex's `$` reaches go test as typed.
GOTEST_RUN = $(if $(value RUN),-run '$(subst ','\'',$(value RUN))')
# The Debian packages each suite needs, installed by test/deps.sh when
# missing (PACKAGE:COMMAND: there when COMMAND is on the PATH). The engine,
# busybox-static and the current engine's build tools are installed by the
# scripts that use them (test/dockerd.sh, test/busybox-image.sh,
# test/engine-build.sh), which call test/deps.sh too.
UNIT_DEPS  := postgresql docker-registry:docker-registry
E2E_DEPS   := postgresql docker-registry:docker-registry podman:podman iproute2:ip util-linux:nsenter
# Tests make unit-arm64 leaves to make unit: Debian 12's qemu-user (7.2)
# answers ENOSYS to open_tree and move_mount (QEMU 8.1 added them) and to
# mount_setattr, which tmpfs's reattach and seal paths call.
ARM64_SKIP := ^(TestAttachFromHolder|TestAttachFromUnmarked|TestAttachViewSealsWritableView)$$
# The lifecycle model test runs this many sequences under emulation (make
# unit runs thousands natively; the arm64 leg checks the arm64 build).
ARM64_RAPID_CHECKS ?= 300
# make e2e-arm64's subset of the suite (RUN= replaces it): the plugin's
# architecture, file and aws mounts, a rotation of each, the plugin killed
# and started again by Docker, docker cp.
E2E_ARM64_RUN := ^(TestPluginArch|TestQuickStart|TestAWSBackend|TestRefreshRotation|TestPluginKilled|TestDockerCp)$$

.PHONY: fleet fleet-small fleet-report vault-bin engine-bin install-legacy build plugin push demo test lint unit unit-arm64 e2e e2e-arm64 e2e-current e2e-isolated e2e-deps bench fuzz clean under-load

## build: the static binary bin/dsv
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/dsv ./cmd/dsv

## plugin: build and install the managed plugin (disabled; see build-plugin.sh)
plugin:
	./build-plugin.sh

## push: publish the plugin: linux/amd64 as REF, linux/arm64 as REF-arm64 (make push REF=registry.example.com/dsv:1.0)
push:
	@[[ "$(REF)" =~ :[^/]+$$ ]] || { echo "make push: give REF with a tag, e.g. make push REF=registry.example.com/dsv:1.0" >&2; exit 2; }
	./build-plugin.sh --push "$(REF)" --arch amd64
	./build-plugin.sh --push "$(REF)-arm64" --arch arm64

## install-legacy: binary + systemd unit for hosts that run dsv unmanaged
install-legacy: build
	install -D -m 0755 bin/dsv /usr/local/bin/dsv
	install -D -m 0644 cmd/dsv/dsv.service /etc/systemd/system/dsv.service
	install -d -m 0700 /var/lib/dsv /var/lib/dsv/files /etc/dsv /etc/dsv/credentials /etc/dsv/credentials/vault
	install -d -m 0755 /etc/dsv/templates
	@echo "next: put settings in /etc/dsv/dsv.env, then: systemctl daemon-reload && systemctl enable --now dsv"

## demo: the walk-through in test/demo.sh
demo:
	test/demo.sh

## test: lint, unit (amd64, then arm64 under qemu), every fuzz target
## briefly, then e2e on Engine 20.10, on the current engine and with the
## arm64 plugin (what CI runs); fails when any e2e run fails
test:
	time $(MAKE) --no-print-directory lint
	time $(MAKE) --no-print-directory unit
	time $(MAKE) --no-print-directory unit-arm64
	time $(MAKE) --no-print-directory fuzz FUZZTIME=$(CI_FUZZTIME)
	status=0; \
	time $(MAKE) --no-print-directory e2e || { status=$$?; echo "make test: e2e on Engine 20.10 failed" >&2; }; \
	time $(MAKE) --no-print-directory e2e-current || { status=$$?; echo "make test: e2e on the current engine failed" >&2; }; \
	time $(MAKE) --no-print-directory fleet-small || { status=$$?; echo "make test: the 3-node fleet failed" >&2; }; \
	time $(MAKE) --no-print-directory e2e-arm64 || { status=$$?; echo "make test: e2e of the arm64 plugin failed" >&2; }; \
	exit $$status

## lint: gofmt finds nothing to change; go vet, also over the e2e-tagged code
lint:
	@echo "gofmt -l ."
	@out=$$(gofmt -l .); if [[ -n $$out ]]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@if [[ -d test/e2e ]]; then echo "$(GO) vet -tags e2e ./test/e2e/..."; $(GO) vet -tags e2e ./test/e2e/...; fi

## unit: every package's tests with the race detector (RUN=regex: only
## those); installs PostgreSQL and docker-registry when missing; moto must be there
unit: vault-bin
	test/deps.sh $(UNIT_DEPS)
	DSV_REQUIRE_MOTO=1 DSV_REQUIRE_VAULT=1 DSV_REQUIRE_POSTGRES=1 DSV_REQUIRE_REGISTRY=1 $(GO) test -race -count=1 $(GOTEST_RUN) ./...

## unit-arm64: every package's tests built for linux/arm64 and run under
## qemu-user-static (test/binfmt.sh registers it for the run only); without
## -race, which Go's arm64 race detector cannot run under qemu-user, and
## without ARM64_SKIP
unit-arm64: vault-bin
	test/deps.sh $(UNIT_DEPS)
	DSV_REQUIRE_MOTO=1 DSV_REQUIRE_VAULT=1 DSV_REQUIRE_POSTGRES=1 DSV_REQUIRE_REGISTRY=1 RAPID_CHECKS=$(ARM64_RAPID_CHECKS) \
		test/binfmt.sh arm64 env GOARCH=arm64 $(GO) test -count=1 -timeout 20m -skip '$(ARM64_SKIP)' $(GOTEST_RUN) ./...

## vault-bin: Vault v1.13.0 (MPL) built once into ~/.cache/dsv (cold ~7 min)
vault-bin:
	test/vault-build.sh >/dev/null

## e2e: the end-to-end suite (build tag e2e) against a real Docker engine
## (RUN=regex: only those tests)
e2e: e2e-deps
	@[[ -d test/e2e ]] || { echo "make e2e: test/e2e does not exist: no end-to-end suite to run" >&2; exit 1; }
	$(GO) test -tags e2e -count=1 -timeout 30m -v $(GOTEST_RUN) ./test/e2e/...

## e2e-arm64: the arm64 plugin, built as make push builds it, installed as
## $(DSV_E2E_PLUGIN)-arm64 in the real engine and run there under
## qemu-user-static, against E2E_ARM64_RUN (RUN=regex: those tests instead);
## the plugin is removed after, before the emulation goes
e2e-arm64:
	test/deps.sh $(E2E_DEPS)
	test/dockerd.sh ensure
	test/busybox-image.sh
	test/binfmt.sh arm64 bash -c 'status=0; \
		DSV_E2E_PLUGIN=$$0 DSV_E2E_ARCH=arm64 $(GO) test -tags e2e -count=1 -timeout 20m -v -run "$$1" ./test/e2e/... || status=$$?; \
		docker plugin rm -f "$$0" >/dev/null 2>&1 || true; exit $$status' \
		'$(DSV_E2E_PLUGIN)-arm64' '$(subst ','\'',$(or $(value RUN),$(value E2E_ARM64_RUN)))'

# e2e_isolated,ENGINE runs the suite on an engine of its own (test/dockerd.sh,
# DSV_ENGINE=ENGINE, isolated: own containerd, paths and network namespace),
# beside any other engine of the machine: started if needed, stopped after if
# started here. The suite runs inside the engine's network namespace, which
# reaches no module proxy: every module is fetched before.
define e2e_isolated
	$(GO) mod download
	test/deps.sh $(E2E_DEPS)
	export DSV_ENGINE=$(1) DSV_DOCKERD_ISOLATE=1; source test/dockerd.sh; \
	dsv_dockerd_ensure; started=$$DSV_DOCKERD_STARTED; \
	status=0; dsv_dockerd_exec $(MAKE) --no-print-directory e2e || status=$$?; \
	if ((started)); then dsv_dockerd_stop; fi; \
	exit $$status
endef

## e2e-current: the end-to-end suite on the current engine (Engine 29, CLI 29,
## Compose v5, built by test/engine-build.sh: cold ~5 min), isolated
e2e-current: vault-bin engine-bin
	$(call e2e_isolated,current)

## e2e-isolated: the end-to-end suite on Debian's Engine 20.10, isolated as
## e2e-current is: for a machine whose shared engine must not be restarted
e2e-isolated: vault-bin
	$(call e2e_isolated,debian)

## engine-bin: the current engine's binaries, built once into ~/.cache/dsv (cold ~5 min)
engine-bin:
	test/engine-build.sh >/dev/null

## e2e-deps: what the suite needs installed, a Docker engine, the plugin
## installed and enabled, the test image
e2e-deps:
	test/deps.sh $(E2E_DEPS)
	test/dockerd.sh ensure
	./build-plugin.sh --enable --name $(DSV_E2E_PLUGIN)
	test/busybox-image.sh

# The fleet harness (test/fleet, docs/fleet.md): NODES engines of the
# current engine on this machine, each in its own network namespace, in
# one Swarm; the plugin built from PLUGIN_SRC (default: this checkout;
# LABEL names the build in the report). 20 nodes fit this 2-core, 24 GiB
# machine (docs/fleet.md: memory per node).
NODES      ?= 20
REPORT     ?= fleet-$(NODES).json
PLUGIN_SRC ?=
LABEL      ?=
FLEET_DEPS := docker-registry:docker-registry iproute2:ip util-linux:nsenter iptables:iptables busybox-static
FLEET_ARGS = $(if $(PLUGIN_SRC),-plugin-src '$(PLUGIN_SRC)') $(if $(LABEL),-label '$(LABEL)')

## fleet: run every fleet scenario on NODES engines, write REPORT (JSON), fail when a bound fails
fleet: engine-bin
	test/deps.sh $(FLEET_DEPS)
	$(GO) run ./test/fleet -nodes $(NODES) -report '$(REPORT)' $(FLEET_ARGS)

## fleet-small: 3 nodes, one rotation and one storm (part of make test)
fleet-small: engine-bin
	test/deps.sh $(FLEET_DEPS)
	$(GO) run ./test/fleet -nodes 3 -scenarios rotation,storm $(FLEET_ARGS)

## fleet-report: docs/fleet.md and its charts from the runs in docs/fleet/runs/
fleet-report:
	$(GO) run ./test/fleet/report -out docs/fleet.md -svg docs/fleet

## under-load: make unit and make e2e twice each beside two CPU hogs (test/under-load.sh)
under-load:
	test/under-load.sh unit e2e

## bench: the benchmarks in test/bench.sh
bench:
	test/bench.sh

## fuzz: every Fuzz target of every package for FUZZTIME (default 300000x) each
# Targets are found in the sources: `go test -list` would first build every
# package's tests, 40s of a cold CI run.
fuzz:
	@targets=$$(grep -rlE --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*\(' . | xargs -r -n1 dirname | sort -u | \
		while read -r dir; do echo "$$dir" $$(grep -hoE '^func Fuzz[A-Za-z0-9_]*' "$$dir"/*_test.go | sed 's/^func //' | sort); done); \
	if [[ -z $$targets ]]; then echo "make fuzz: no Fuzz targets found" >&2; exit 1; fi; \
	while read -r pkg names; do \
		for t in $$names; do \
			echo "== $$pkg $$t ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) "$$pkg"; \
		done; \
	done <<<"$$targets"

## clean: remove build outputs (bin/, plugin/); the installed plugin stays
clean:
	rm -rf bin plugin
