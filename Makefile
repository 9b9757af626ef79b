# Rampart's commands. Every target works on a machine that has only Go: the
# toolchain, the tools and the third-party .proto files come from the Go
# module proxy, pinned by go.mod files.

export GOTOOLCHAIN := go1.27.3
export GOFLAGS := -buildvcs=false

# The workspace modules, in dependency order.
MODULES := proto platform gateway services/user services/order services/payment e2e
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
