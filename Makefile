# Rampart's commands. Every target works on a machine that has only Go: the
# toolchain, the tools and the third-party .proto files come from the Go
# module proxy, pinned by go.mod files.

export GOTOOLCHAIN := go1.27.3
export GOFLAGS := -buildvcs=false

# The workspace modules, in dependency order.
MODULES := proto platform gateway services/user services/order services/payment e2e tilt bench
# The binaries: every workload, and the rampart command that runs them.
COMMANDS := ./gateway/cmd/gateway ./services/user/cmd/user ./services/order/cmd/order \
	./services/payment/cmd/payment ./platform/cmd/rampart
# Tools pinned in tools/go.mod, which stays out of the workspace so that their
# dependencies never choose versions for the platform.
TOOL := GOWORK=off go -C $(CURDIR)/tools tool
PROTOVALIDATE := github.com/bufbuild/protovalidate@v1.2.2

.PHONY: all build run demo generate proto-deps lint-proto breaking-proto check-generated \
	tidy-check test

all: test

## build: static binaries of every workload, in bin/.
build:
	CGO_ENABLED=0 go build -trimpath -o bin/ $(COMMANDS)

## run: the whole platform on this machine; Ctrl-C stops it.
run: build
	bin/rampart up

## demo: a client session against `make run`: sign up, order, watch payments.
demo:
	CGO_ENABLED=0 go build -trimpath -o bin/ ./platform/cmd/rampart
	bin/rampart demo

## generate: regenerate the Go code of proto/ (committed).
generate: proto-deps
	$(TOOL) buf generate $(CURDIR)/proto --template $(CURDIR)/buf.gen.yaml -o $(CURDIR)

# protovalidate's validate.proto, copied from its pinned module, stands in for
# the Buf Schema Registry dependency.
proto-deps:
	@dir=$$(GOWORK=off go -C tools mod download -json $(PROTOVALIDATE) | sed -n 's/^\t"Dir": "\(.*\)",$$/\1/p'); \
	test -n "$$dir" || { echo "cannot download $(PROTOVALIDATE)" >&2; exit 1; }; \
	mkdir -p .build/protovalidate/buf/validate; \
	install -m 0644 "$$dir/proto/protovalidate/buf/validate/validate.proto" .build/protovalidate/buf/validate/

## lint-proto: buf lint and buf format.
lint-proto: proto-deps
	$(TOOL) buf lint $(CURDIR)/proto
	$(TOOL) buf format --diff --exit-code $(CURDIR)/proto

## breaking-proto: fail on changes that would break deployed clients, compared
## with the contracts at BUF_AGAINST (a git revision, main by default).
BUF_AGAINST ?= main
breaking-proto: proto-deps
	@rm -rf .build/against && mkdir -p .build/against
	@if ! git cat-file -e "$(BUF_AGAINST):proto" 2>/dev/null; then \
		echo "breaking-proto: $(BUF_AGAINST) has no proto/; nothing to compare"; exit 0; fi; \
	git archive "$(BUF_AGAINST)" proto buf.yaml | tar -x -C .build/against && \
	cp -R .build/protovalidate .build/against/.build-protovalidate && \
	sed -i 's#\.build/protovalidate#.build-protovalidate#' .build/against/buf.yaml && \
	$(TOOL) buf build $(CURDIR)/.build/against/proto -o $(CURDIR)/.build/against.binpb && \
	$(TOOL) buf breaking $(CURDIR)/proto --against $(CURDIR)/.build/against.binpb && \
	echo "breaking-proto: no breaking change against $(BUF_AGAINST)"

## check-generated: fail if the committed generated code is stale.
check-generated: generate
	git diff --exit-code -- proto
	@untracked=$$(git ls-files --others --exclude-standard -- proto); \
	test -z "$$untracked" || { echo "generated files not committed:"; echo "$$untracked"; exit 1; }

## tidy-check: every module tidies on its own, outside the workspace.
tidy-check:
	@for m in $(MODULES); do \
		echo "go mod tidy -diff ($$m)"; \
		GOWORK=off go -C $$m mod tidy -diff || exit 1; \
	done

## test: unit tests, and integration tests over real mutual TLS and NATS,
## with the workloads running as processes from bin/.
test: build
	RAMPART_BIN_DIR=$(CURDIR)/bin go test -count=1 $(addprefix ./,$(addsuffix /...,$(MODULES)))

## bench: what the platform's defaults cost per request, side by side with
## a bare path, as one table; raw figures for benchstat in .build/bench/.
## BENCH_FLAGS passes flags on (go run ./bench -h lists them).
.PHONY: bench
bench: build
	go run ./bench -bin $(CURDIR)/bin -out $(CURDIR)/.build/bench $(BENCH_FLAGS)

## images: one image per workload and one for NATS, FROM scratch around
## static binaries compiled here, so that no registry is reached; each
## image's size is printed. IMAGE_TAG names the tag (dev).
.PHONY: images e2e
IMAGE_TAG ?= dev
images:
	IMAGE_TAG=$(IMAGE_TAG) images/build.sh

## e2e: the end-to-end suite on containers, against freshly built images;
## it fails, rather than skips, without a Docker engine.
e2e: images
	IMAGE_TAG=$(IMAGE_TAG) RAMPART_CONTAINER_SUITE=1 TESTCONTAINERS_RYUK_DISABLED=true \
		TESTCONTAINERS_HOST_OVERRIDE=127.0.0.1 go test -count=1 -timeout 15m ./e2e/containers/

# The checks. Each fails on a finding and prints it; every tool is pinned in
# tools/go.mod and built with the Go above.

# Every module of go.work, read at run time so that a new one is checked too.
# $(shell) does not see the variables make exports, so the toolchain is
# passed by hand.
WORK_MODULES = $(patsubst $(CURDIR)/%,%,$(shell GOTOOLCHAIN=$(GOTOOLCHAIN) go list -m -f '{{.Dir}}'))
# The Go vulnerability database, built from the golang.org/x/vulndb module
# pinned in tools/go.mod (vuln.go.dev is not reachable from CI).
VULNDB := $(CURDIR)/.build/vulndb
# How long each fuzz target runs: a smoke run in `make check`, longer in
# `make fuzz` (any `go test -fuzztime` value).
FUZZTIME_SMOKE := 5s
FUZZTIME ?= 3m
CHECKS := lint-proto breaking-proto check-generated mod-verify tidy-all fmt-check lint-go vuln \
	fuzz-smoke

.PHONY: check $(CHECKS) vulndb fuzz

## check: every check, as CI runs it: contracts, supply chain, formatting,
## static analysis, known vulnerabilities and a smoke run of every fuzz
## target. It runs them all, prints how long each took, and fails if any did.
check:
	@failed=; for c in $(CHECKS); do \
		start=$$(date +%s); \
		$(MAKE) --no-print-directory $$c || failed="$$failed $$c"; \
		echo "check: $$c took $$(($$(date +%s) - start))s"; \
	done; \
	test -z "$$failed" || { echo "check: FAILED:$$failed"; exit 1; }; \
	echo "check: all passed"

## mod-verify: the module cache holds exactly what every go.sum pins.
mod-verify:
	@status=0; for m in $(WORK_MODULES) tools; do \
		echo "go mod verify ($$m)"; \
		GOWORK=off go -C $$m mod verify || status=1; \
	done; exit $$status

## tidy-all: tidy-check over every module of go.work, and tools/.
tidy-all:
	@$(MAKE) --no-print-directory tidy-check MODULES="$(WORK_MODULES) tools"

## fmt-check: gofmt would change nothing (buf format runs in lint-proto).
fmt-check:
	@out=$$("$$(go env GOROOT)/bin/gofmt" -l $(WORK_MODULES) tools); \
	test -z "$$out" || { echo "gofmt would change:"; "$$(go env GOROOT)/bin/gofmt" -d $$out; exit 1; }

## lint-go: golangci-lint over every module, configured in .golangci.yml
## (staticcheck, go vet, gosec and the rest); gomoddirectives, which reads
## one go.mod, runs in each module.
lint-go:
	@lint=$$($(TOOL) -n golangci-lint) || exit 1; status=0; \
	$$lint run --disable gomoddirectives $(addsuffix /...,$(addprefix $(CURDIR)/,$(WORK_MODULES))) \
		|| status=1; \
	for m in $(WORK_MODULES); do \
		(cd $$m && $$lint run --enable-only gomoddirectives --show-stats=false ./...) || status=1; \
	done; exit $$status

## vulndb: build the vulnerability database, when the pinned version changed.
vulndb:
	@tools/vulndb.sh $(VULNDB)

## vuln: govulncheck over every module, alone (GOWORK=off) as its go.mod
## builds it, tests included; it fails on a vulnerability the code reaches.
vuln: vulndb
	@status=0; for m in $(WORK_MODULES); do \
		echo "govulncheck ($$m)"; \
		$(TOOL) govulncheck -db file://$(VULNDB) -C $(CURDIR)/$$m -test ./... || status=1; \
	done; exit $$status

## fuzz-smoke: every fuzz target for FUZZTIME_SMOKE each.
fuzz-smoke:
	@tools/fuzz.sh $(FUZZTIME_SMOKE)

## fuzz: every fuzz target for FUZZTIME each (3m unless set).
fuzz:
	@tools/fuzz.sh $(FUZZTIME)
