#!/usr/bin/env bash
# Builds the tcpspan image with podman from the Containerfile: a static
# binary built here, and the host's CA bundle. No registry is needed.
#   IMAGE   the tag (default localhost/tcpspan:dev)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
image=${IMAGE:-localhost/tcpspan:dev}
if ! command -v podman >/dev/null; then
	echo "image: podman is not installed (sudo make deps)" >&2
	exit 1
fi
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
CGO_ENABLED=0 go build -trimpath -ldflags=-s -o "$ctx/tcpspan" ./cmd/tcpspan
cp /etc/ssl/certs/ca-certificates.crt "$ctx/"
podman build --quiet -f Containerfile -t "$image" "$ctx" >/dev/null
echo "$image"
