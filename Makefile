# dlite's developer entry points. Every target works on a fresh clone with Go installed.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)

.PHONY: all generate check-generated build test lint run mock-manager

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

## test: the whole test suite (what CI runs): this module, then each example module
test: lint
	$(GO) test -race -count=1 ./...
	for d in $(EXAMPLES); do (cd $$d && $(GO) build ./... && $(GO) test -race -count=1 ./...) || exit 1; done

## run: the runner; with no manager configured, a demo on an embedded mock manager
run:
	$(GO) run ./cmd/dlite run

## mock-manager: a mock manager on 127.0.0.1:8085 (needs DLITE_ACCOUNT_ID and DLITE_ACCOUNT_SECRET)
mock-manager:
	$(GO) run ./cmd/dlite mock-manager
