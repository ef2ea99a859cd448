# dlite's developer entry points. Every target works on a fresh clone with Go installed.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)

.PHONY: all generate check-generated build test test-deps lint run mock-manager

all: generate lint build test

EXAMPLES := examples/textops

## generate: regenerate gen/ from openapi/*.yaml, then wire_gen.go, then the examples' generated code
generate:
	$(GO) generate ./gen/...
	$(GO) run github.com/google/wire/cmd/wire gen .
	for d in $(EXAMPLES); do (cd $$d && $(GO) generate ./...) || exit 1; done

## check-generated: fail when the committed generated code differs from a fresh `make generate`
check-generated: generate
	@git diff --exit-code --stat -- gen wire_gen.go examples || \
		(echo "generated code is stale: run 'make generate' and commit the result" >&2; exit 1)
	@test -z "$$(git status --porcelain -- gen wire_gen.go examples)" || \
		(git status --porcelain -- gen wire_gen.go examples; echo "make generate created files that are not committed" >&2; exit 1)

## build: build bin/dlite (static, version and commit stamped)
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/dlite ./cmd/dlite

## lint: gofmt and go vet, here and in the examples
lint:
	@out=$$(gofmt -l $$(find . -name '*.go' -not -path './.git/*')); \
		test -z "$$out" || (echo "gofmt needed on:"; echo "$$out"; exit 1)
	$(GO) vet ./...
	for d in $(EXAMPLES); do (cd $$d && $(GO) vet ./...) || exit 1; done

## test-deps: what the tests need beyond Go: Debian's chromium (browser test), docker.io and busybox-static
## (container tests), git (Drone clone tests); starts dockerd when no Docker daemon answers
test-deps:
	.ci/test-deps

## test: the whole test suite (what CI runs): this module, then each example module
test: test-deps lint
	$(GO) test -race -count=1 ./...
	for d in $(EXAMPLES); do (cd $$d && $(GO) build ./... && $(GO) test -race -count=1 ./...) || exit 1; done

## run: the runner; with no manager configured, a demo on an embedded mock manager
run:
	$(GO) run ./cmd/dlite run

## mock-manager: a mock manager on 127.0.0.1:8085 (needs DLITE_ACCOUNT_ID and DLITE_ACCOUNT_SECRET)
mock-manager:
	$(GO) run ./cmd/dlite mock-manager

# --- container image -------------------------------------------------------------------------
.PHONY: image
IMAGE ?= dlite:$(VERSION)

## image: build the container image from the Dockerfile (needs a Docker engine; CI has none)
image:
	docker build --build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT) -t $(IMAGE) .

# --- benchmarks --------------------------------------------------------------------------------
.PHONY: bench
.PHONY: bench-go
BENCH_DIR   ?= bin/bench
BENCH_JSON  ?= $(BENCH_DIR)/bench.json
BENCH_FLAGS ?=

## bench: the real dlite binary and a floor client against a mock manager on loopback: throughput
## with capped answers and with a backlog of 10,000 and 20,000 queued tasks, dispatch latency, CPU
## per task, memory; prints a table and JSON, and writes $(BENCH_JSON). About 4 minutes on two
## cores; BENCH_FLAGS=-long for medians of 3 runs of twice the tasks and the spool on tmpfs
bench:
	@mkdir -p $(BENCH_DIR)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BENCH_DIR)/dlite ./cmd/dlite
	$(GO) build -o $(BENCH_DIR)/dlite-bench ./cmd/dlite-bench
	$(BENCH_DIR)/dlite-bench run --dlite $(BENCH_DIR)/dlite --json $(BENCH_JSON) $(BENCH_FLAGS)

.PHONY: bench-profile
BENCH_PROFILES ?= $(BENCH_DIR)/profiles

## bench-profile: make bench with a dlite built to write a CPU profile of every run into
## $(BENCH_PROFILES) (go tool pprof $(BENCH_DIR)/dlite-profiling $(BENCH_PROFILES)/<run>.pprof)
bench-profile:
	@mkdir -p $(BENCH_PROFILES)
	CGO_ENABLED=0 $(GO) build -tags benchprofile -trimpath -ldflags "$(LDFLAGS)" -o $(BENCH_DIR)/dlite-profiling ./cmd/dlite
	$(GO) build -o $(BENCH_DIR)/dlite-bench ./cmd/dlite-bench
	$(BENCH_DIR)/dlite-bench run --dlite $(BENCH_DIR)/dlite-profiling --json $(BENCH_DIR)/bench-profile.json \
		--profile-dir $(BENCH_PROFILES) $(BENCH_FLAGS)

## bench-go: the Go benchmarks of the hot paths (event handling, dispatch, result encoding, spool)
bench-go:
	$(GO) test -run '^$$' -bench . -benchmem ./internal/...

# --- reliability: chaos suite and fuzzing -----------------------------------------------------
.PHONY: chaos
.PHONY: fuzz
CHAOS_TASKS ?= 2000
CHAOS_FLAGS ?=
FUZZTIME    ?= 10s

## chaos: $(CHAOS_TASKS) tasks through two real runner processes while the mock manager fails, resets
## and loses calls and one runner is killed with SIGKILL and restarted; prints its figures and fails
## unless no task was lost and none executed twice (`make test` runs a 300-task version)
chaos:
	@mkdir -p bin
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/dlite ./cmd/dlite
	$(GO) build -o bin/dlite-chaos ./cmd/dlite-chaos
	bin/dlite-chaos -binary bin/dlite -tasks $(CHAOS_TASKS) $(CHAOS_FLAGS)

## fuzz: every fuzz target of the module, one after another, for $(FUZZTIME) each
fuzz:
	@set -e; \
	for file in $$(find . -path ./examples -prune -o -path ./.git -prune -o -name '*_test.go' -print | sort); do \
		for target in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$file); do \
			echo "== $$(dirname $$file) $$target ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) $$(dirname $$file); \
		done; \
	done

# --- releases ----------------------------------------------------------------------------------
.PHONY: release
RELEASE_DIR            ?= dist
RELEASE_TARGETS        ?= linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64
RELEASE_ALLOW_UNLISTED ?=

## release: build the release archives of VERSION=vX.Y.Z into $(RELEASE_DIR): dlite for each of
## $(RELEASE_TARGETS), stamped with the version and commit, in a .tar.gz (.zip for windows) with
## LICENSE, README.md and CHANGELOG.md, plus SHA256SUMS; the same commit gives the same bytes.
## Refuses a version that is not semver or has no CHANGELOG.md entry (RELEASE_ALLOW_UNLISTED=1
## lets a pre-release without one through: CI's test build)
release:
	@if [ "$(origin VERSION)" != "command line" ] && [ "$(origin VERSION)" != "environment" ]; then \
		echo "make release needs the version to release: make release VERSION=vX.Y.Z" >&2; exit 2; fi
	$(GO) run ./cmd/dlite-release -version '$(VERSION)' -dir '$(RELEASE_DIR)' -targets '$(RELEASE_TARGETS)' \
		-go '$(GO)' $(if $(filter 1 true yes,$(RELEASE_ALLOW_UNLISTED)),-allow-unlisted)
