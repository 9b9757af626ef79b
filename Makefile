# Rampart's commands. Every target works on a machine that has only Go: the
# toolchain, the tools and the third-party .proto files come from the Go
# module proxy, pinned by go.mod files.

export GOTOOLCHAIN := go1.27.3
export GOFLAGS := -buildvcs=false

# The workspace modules, in dependency order.
MODULES := proto platform
# Tools pinned in tools/go.mod, which stays out of the workspace so that their
# dependencies never choose versions for the platform.
TOOL := GOWORK=off go -C $(CURDIR)/tools tool
PROTOVALIDATE := github.com/bufbuild/protovalidate@v1.2.2

.PHONY: all generate proto-deps lint-proto breaking-proto check-generated tidy-check test

all: test

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

## test: unit and in-process integration tests of every module.
test:
	go test -count=1 $(addprefix ./,$(addsuffix /...,$(MODULES)))
