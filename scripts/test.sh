#!/usr/bin/env bash
# The test command: what `make test` and CI run.
#
#  1. installs missing Debian packages (scripts/deps.sh);
#  2. checks that gofmt, go vet, golangci-lint, go mod tidy, clang-format and the committed
#     bpf2go output are clean, and that the pure packages vet on macOS too;
#  3. builds Jaeger, the collector, Helm and the gateway collector (tools/),
#     validates otel-collector.yaml and deploy/collector/sampler.yaml;
#  4. runs every Go test. As root, the privileged tests load the BPF
#     programs on this kernel, each scenario in its own network namespace,
#     and the end-to-end tests run the agent against a real Jaeger, directly
#     and through the collector. Without root they skip, saying so.
#     deploy/check tests the Kubernetes manifests, the Helm chart and the
#     gateway configs (its own module);
#  5. as root, the kernel matrix (scripts/test-kernels.sh): the bpf tests on
#     Debian's 5.10, 6.1 and 6.12 kernels under qemu, with a table of
#     results and capabilities per kernel. About 3 minutes a kernel once the
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

echo "== golangci-lint (.golangci.yml; the version pinned in tools/golangci-lint)"
lint=$(./scripts/tools.sh golangci-lint)
"$lint" run ./...

echo "== go mod tidy (the main module; tools/ are modules of their own)"
if ! go mod tidy -diff; then
	echo "go.mod or go.sum is not tidy: run 'go mod tidy' and commit the result" >&2
	exit 1
fi

echo "== the pure packages (tracker, span mapping, semconv) build and vet off Linux"
# The kernel side (bpf/loader.go and the other //go:build linux files) is
# Linux-only; the record types and their decoding are not, so conn and
# exporter build on macOS for development. amd64: the generated record types
# are those of the x86 BPF objects.
GOOS=darwin GOARCH=amd64 go vet ./conn/ ./semconv/ ./exporter/

echo "== BPF C sources follow .clang-format (make format)"
if command -v clang-format-16 >/dev/null; then
	clang-format-16 --dry-run --Werror bpf/*.c bpf/*.h
else
	echo "skipped: clang-format-16 not installed (sudo make deps)"
fi

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

echo "== Helm and the gateway Collector (deploy/; the first build takes minutes)"
./scripts/tools.sh helm >/dev/null
gateway=$(./scripts/tools.sh otelcol-gateway)
echo "== deploy/collector/sampler.yaml is valid (loadbalancer.yaml: in deploy/check)"
"$gateway" validate --config deploy/collector/sampler.yaml

echo "== go test"
# The kernel matrix runs even when a native test failed, so that CI always
# shows its table; the exit status is the worse of the two.
status=0
go test -count=1 -p 1 -timeout 20m ./... || status=1
# deploy/check is a module of its own (k8s.io/api stays out of the
# agent's go.mod): the Kubernetes manifests decoded strictly, least
# privilege against tcpspan -capabilities, the Helm chart against the
# manifests, the gateway Collector configs validated; tidy, vetted and
# linted like the main module.
echo "== go test (deploy/check)"
(cd deploy/check && GOWORK=off go mod tidy -diff && GOWORK=off go vet ./... && GOWORK=off "$lint" run --config ../../.golangci.yml ./... && GOWORK=off go test -count=1 -timeout 20m ./...) || status=1

# bench/ is a module of its own too (make bench's tool, its charts drawn
# with gonum.org/v1/plot, which stays out of the agent's go.mod): tidy,
# vetted and linted like the main module; it has no tests of its own.
echo "== go vet (bench)"
(cd bench && GOWORK=off go mod tidy -diff && GOWORK=off go vet ./... && GOWORK=off "$lint" run --config ../.golangci.yml ./...) || status=1

# Fuzzing: each fuzz target for a bounded number of inputs (about 15 s
# each here), on one worker; the committed corpora (testdata/fuzz/) already
# ran as seeds in go test. A count, not a duration: with -fuzztime 15s, Go
# before 1.27 may fail a target that found nothing with "context deadline
# exceeded" as the time runs out (go.dev/issue/75804).
echo "== fuzz (about 15 s per target)"
for target in ./cmd/tcpspan:FuzzParseConfig:60000 ./bpf:FuzzDecode:200000 ./conn:FuzzParseTraceparent:200000 ./container:FuzzFromPath:200000; do
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
