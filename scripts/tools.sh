#!/usr/bin/env bash
# Builds one of the real programs that tcpspan's tests and demos talk to, from
# its own Go module under tools/, and prints the path of the binary.
#
#   scripts/tools.sh jaeger    Jaeger v2 (trace store with a query API), tools/jaeger
#   scripts/tools.sh otelcol   OpenTelemetry Collector (builder output), tools/otelcol
#   scripts/tools.sh otelapp   otelhttp-instrumented HTTP client and server, tools/otelapp
#   scripts/tools.sh golangci-lint   the linter scripts/test.sh runs, tools/golangci-lint
#   scripts/tools.sh otelcol-gateway
#                              OpenTelemetry Collector with the gateway tiers'
#                              components (loadbalancing, tail_sampling),
#                              tools/otelcol-gateway
#   scripts/tools.sh helm      Helm, tools/helm
#
# The binary goes to ${TCPSPAN_TOOLS_DIR:-$HOME/.cache/tcpspan/bin}. The build
# is skipped while the binary is newer than the tool's go.mod, go.sum and Go
# sources. Builds use Go's usual module and build caches, so only the first
# one is slow (Jaeger: several minutes; later ones: seconds).
#
# Progress goes to stderr; the binary's path is the last (and only) line on
# stdout, so callers can do: bin=$(scripts/tools.sh jaeger).
set -euo pipefail

usage() {
	echo "usage: $0 jaeger|otelcol|otelcol-gateway|otelapp|helm|golangci-lint" >&2
	exit 2
}
[ $# -eq 1 ] || usage

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GO=${GO:-go}
if ! command -v "$GO" >/dev/null 2>&1; then
	if [ -x /usr/local/go/bin/go ]; then
		GO=/usr/local/go/bin/go
	else
		echo "tools: go not found (set GO or add it to PATH)" >&2
		exit 1
	fi
fi

# The builder's output and go.mod must be of one release: every
# component in a collector's builder-config.yaml, the builder that generated
# the sources and the distribution's version are the collector's.
one_release() {
	local stray
	stray=$(grep -E '^[[:space:]]*(- gomod: |#.*cmd/builder@|version: )' "$dir/builder-config.yaml" |
		grep -vE "[ @v]${version#v}(-tcpspan)?( |\$)" || true)
	if [ -n "$stray" ]; then
		echo "tools: ${dir#"$root"/}/builder-config.yaml is not all at the collector's $version:" >&2
		echo "$stray" >&2
		exit 1
	fi
}

case $1 in
jaeger)
	dir=$root/tools/jaeger
	pkg=github.com/jaegertracing/jaeger/cmd/jaeger
	name=jaeger
	version=$(cd "$dir" && GOWORK=off "$GO" list -m -f '{{.Version}}' github.com/jaegertracing/jaeger)
	label="Jaeger $version"
	first="first time: several minutes"
	# Without this the binary reports an empty version.
	ldflags="-X github.com/jaegertracing/jaeger/internal/version.latestVersion=$version"
	;;
otelcol)
	dir=$root/tools/otelcol
	pkg=.
	name=otelcol-tcpspan
	version=$(cd "$dir" && GOWORK=off "$GO" list -m -f '{{.Version}}' go.opentelemetry.io/collector/otelcol)
	label="OpenTelemetry Collector $version (tcpspan build)"
	first="first time: a few minutes"
	ldflags=""
	one_release
	;;
otelcol-gateway)
	dir=$root/tools/otelcol-gateway
	pkg=.
	name=otelcol-tcpspan-gateway
	version=$(cd "$dir" && GOWORK=off "$GO" list -m -f '{{.Version}}' go.opentelemetry.io/collector/otelcol)
	label="OpenTelemetry Collector $version (tcpspan gateway build)"
	first="first time: several minutes"
	ldflags=""
	one_release
	;;
helm)
	dir=$root/tools/helm
	pkg=helm.sh/helm/v4/cmd/helm
	name=helm
	version=$(cd "$dir" && GOWORK=off "$GO" list -m -f '{{.Version}}' helm.sh/helm/v4)
	label="Helm $version"
	first="first time: a few minutes"
	# Without this the binary reports an unset version.
	ldflags="-X helm.sh/helm/v4/internal/version.version=$version"
	;;
otelapp)
	dir=$root/tools/otelapp
	pkg=.
	name=otelapp
	version=$(cd "$dir" && GOWORK=off "$GO" list -m -f '{{.Version}}' go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp)
	label="otelapp (otelhttp $version)"
	first="first time: about a minute"
	ldflags=""
	;;
golangci-lint)
	dir=$root/tools/golangci-lint
	pkg=github.com/golangci/golangci-lint/v2/cmd/golangci-lint
	name=golangci-lint
	version=$(cd "$dir" && GOWORK=off "$GO" list -m -f '{{.Version}}' github.com/golangci/golangci-lint/v2)
	label="golangci-lint $version"
	first="first time: a few minutes"
	# Without this the binary reports an unknown version.
	ldflags="-X main.version=${version#v}"
	;;
*)
	usage
	;;
esac

bin_dir=${TCPSPAN_TOOLS_DIR:-$HOME/.cache/tcpspan/bin}
mkdir -p "$bin_dir"
out=$bin_dir/$name

# Up to date when no input is newer than the binary.
fresh() {
	[ -x "$out" ] || return 1
	local f
	for f in "$dir"/go.mod "$dir"/go.sum "$dir"/*.go; do
		[ -e "$f" ] || continue
		[ "$f" -nt "$out" ] && return 1
	done
	return 0
}

# Several test packages may ask at once (go test runs packages in parallel):
# one builds, the others wait for it and then find the binary fresh.
exec 9>"$out.lock"
if command -v flock >/dev/null 2>&1; then
	if ! flock -n 9; then
		echo "tools: waiting for another build of $name..." >&2
		flock 9
	fi
fi

if fresh; then
	echo "tools: $label is up to date" >&2
else
	if [ -e "$out" ]; then
		echo "tools: rebuilding $label (its module changed)..." >&2
	else
		echo "tools: building $label ($first)..." >&2
	fi
	start=$(date +%s)
	tmp=$(mktemp "$out.XXXXXX")
	trap 'rm -f "$tmp"' EXIT
	# GOWORK=off: the tool's module stands alone, whatever go.work is around.
	(cd "$dir" && GOWORK=off "$GO" build -ldflags "$ldflags" -o "$tmp" "$pkg")
	chmod +x "$tmp"
	mv -f "$tmp" "$out"
	trap - EXIT
	echo "tools: built $label in $(($(date +%s) - start))s" >&2
fi
echo "$out"
