#!/usr/bin/env bash
# Builds the container images: one per workload and one for NATS, each
# FROM scratch around a static binary compiled here, so that no registry
# is ever reached. Run it as `make images` from the repository root.
#
#   IMAGE_TAG   tag of every image (default: dev)
#
# The images run as user 65532 and are meant to run with a read-only root
# filesystem and every capability dropped; README.md shows how.
set -euo pipefail
export GOTOOLCHAIN=go1.27.3 CGO_ENABLED=0
cd "$(dirname "$0")/.."

if ! docker info >/dev/null 2>&1; then
	echo "images: no Docker engine reachable" >&2
	exit 1
fi

tag=${IMAGE_TAG:-dev}
out=.build/images
workloads=(gateway user order payment)
roots=/etc/ssl/certs/ca-certificates.crt

# Binaries: stripped, without cgo, without build paths.
mkdir -p "$out/bin"
go build -trimpath -ldflags='-s -w' -o "$out/bin/" \
	./gateway/cmd/gateway ./services/user/cmd/user \
	./services/order/cmd/order ./services/payment/cmd/payment
# nats-server at the version platform/go.mod pins.
go build -trimpath -ldflags='-s -w' -o "$out/bin/nats-server" github.com/nats-io/nats-server/v2

if [ ! -r "$roots" ]; then
	echo "images: $roots is missing; install your distribution's CA certificates" >&2
	exit 1
fi

# One small build context per image, holding only what the image copies.
for name in "${workloads[@]}" nats; do
	image="rampart/$name:$tag"
	context="$out/context/$name"
	rm -rf "$context"
	mkdir -p "$context"
	if [ "$name" = nats ]; then
		cp "$out/bin/nats-server" "$context/"
	else
		cp "$out/bin/$name" "$context/"
	fi
	if [ "$name" = gateway ]; then
		cp "$roots" "$context/"
	fi
	previous=$(docker image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
	# The log is shown only on failure: the legacy builder's deprecation
	# notice would bury the sizes printed below.
	if ! log=$(docker build --tag "$image" --file "images/$name.Dockerfile" "$context" 2>&1); then
		echo "$log" >&2
		exit 1
	fi
	# An image the new build replaced would linger untagged; one still in
	# use by a container stays.
	current=$(docker image inspect --format '{{.Id}}' "$image")
	if [ -n "$previous" ] && [ "$previous" != "$current" ]; then
		docker image rm "$previous" >/dev/null 2>&1 || true
	fi
done

printf '%-24s %10s\n' IMAGE SIZE
for name in "${workloads[@]}" nats; do
	size=$(docker image inspect --format '{{.Size}}' "rampart/$name:$tag")
	awk -v n="rampart/$name:$tag" -v s="$size" 'BEGIN { printf "%-24s %7.1f MB\n", n, s / 1e6 }'
done
