#!/usr/bin/env bash
# Builds one image for Tilt's Kubernetes mode the way `make images` builds
# them all: a static binary compiled here, copied into a FROM scratch
# image, with nothing pulled. Tilt sets EXPECTED_REF to the tag it wants.
#
#   tilt/build-image.sh MAIN_PACKAGE DOCKERFILE
set -euo pipefail
export GOTOOLCHAIN=go1.27.3 CGO_ENABLED=0 GOOS=linux
cd "$(dirname "$0")/.."

main=$1
dockerfile=$2
: "${EXPECTED_REF:?set by Tilt: the image reference to build}"

context=.build/tilt/$(basename "$dockerfile" .Dockerfile)
rm -rf "$context"
mkdir -p "$context"
go build -trimpath -ldflags='-s -w' -o "$context/" "$main"

# The gateway's image carries public CA roots for an HTTPS issuer.
if grep -q ca-certificates.crt "$dockerfile"; then
	for roots in /etc/ssl/certs/ca-certificates.crt /etc/ssl/cert.pem; do
		if [ -r "$roots" ]; then
			cp "$roots" "$context/ca-certificates.crt"
			break
		fi
	done
	[ -r "$context/ca-certificates.crt" ] || { echo "build-image: no CA roots found" >&2; exit 1; }
fi

docker build --quiet --tag "$EXPECTED_REF" --file "$dockerfile" "$context"
