#!/usr/bin/env bash
# The test command: what `make test` and CI run.
#
#  1. installs missing Debian packages (scripts/deps.sh);
#  2. checks that gofmt, go vet and the committed bpf2go output are clean;
#  3. builds Jaeger and the collector (tools/), validates otel-collector.yaml;
#  4. runs every Go test. As root, the privileged tests load the BPF
#     programs on this kernel, each scenario in its own network namespace,
#     and the end-to-end tests run the agent against a real Jaeger, directly
#     and through the collector. Without root they skip, saying so;
#  5. as root, the kernel matrix (scripts/test-kernels.sh): the bpf tests on
#     Debian's 5.10, 6.1 and 6.12 kernels under qemu, with a table of
#     results and capabilities per kernel. About 2-3 minutes once the
#     kernels are cached (~/.cache/tcpspan/kernels).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin

if [ "$(id -u)" -eq 0 ]; then
	./scripts/deps.sh
	# As root, privileged tests must run: a skip is a failure.
	export TCPSPAN_BPF_TESTS_REQUIRED=1
else
	echo "test: not root: privileged BPF tests will skip (run as root: make test, or sudo make test)" >&2
fi

echo "== gofmt, go vet"
unformatted=$(gofmt -l $(git ls-files '*.go' | grep -v '_bpfel\.go$') 2>/dev/null || true)
if [ -n "$unformatted" ]; then
	echo "gofmt needed: $unformatted" >&2
	exit 1
fi
go vet ./...

echo "== generated BPF objects are current"
if command -v clang-16 >/dev/null; then
	make -s generate >/dev/null
	if ! git diff --quiet -- bpf/; then
		git diff --stat -- bpf/ >&2
		echo "generated files are stale: run 'make generate' and commit the result" >&2
		exit 1
	fi
else
	echo "skipped: clang-16 not installed (as root: make deps)"
fi

echo "== real backends: Jaeger and the OpenTelemetry Collector (the first build takes minutes)"
./scripts/tools.sh jaeger >/dev/null
otelcol=$(./scripts/tools.sh otelcol)
echo "== otel-collector.yaml is valid"
"$otelcol" validate --config otel-collector.yaml

echo "== go test"
# The kernel matrix runs even when a native test failed, so that CI always
# shows its table; the exit status is the worse of the two.
status=0
go test -count=1 -p 1 -timeout 20m ./... || status=1

# Fuzzing: each fuzz target for a bounded number of inputs (about 15 s
# each here), on one worker; the committed corpora (testdata/fuzz/) already
# ran as seeds in go test. A count, not a duration: with -fuzztime 15s, Go
# before 1.27 may fail a target that found nothing with "context deadline
# exceeded" as the time runs out (go.dev/issue/75804).
echo "== fuzz (about 15 s per target)"
for target in ./cmd/tcpspan:FuzzParseConfig:60000 ./bpf:FuzzDecode:200000 ./conn:FuzzParseTraceparent:200000; do
	pkg=${target%%:*} rest=${target#*:}
	go test -run '^$' -fuzz "^${rest%%:*}\$" -fuzztime "${rest#*:}x" -parallel 1 "$pkg"
done

echo "== kernel matrix: bpf tests on older kernels under qemu"
if [ "$(id -u)" -eq 0 ]; then
	./scripts/test-kernels.sh || status=1
else
	echo "skipped: not root (run as root: make test, or make test-kernels)"
fi
exit $status
