# tcpspan: see README.md. Targets document themselves: `make help`.

GO ?= go
# The BPF object is built with a pinned Debian clang, so that `make generate`
# is reproducible and CI can check the committed output is current.
CLANG ?= clang-16
BPF_CFLAGS := -O2 -g -Wall -Werror -Wpadded -mcpu=v3 -D__TARGET_ARCH_x86

.PHONY: help
help: ## list targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

.PHONY: deps
deps: ## install the Debian packages builds and tests need (root)
	./scripts/deps.sh

.PHONY: generate
generate: ## rebuild the committed bpf2go .go and .o files with $(CLANG)
	cd bpf && BPF_CLANG=$(CLANG) BPF_CFLAGS="$(BPF_CFLAGS)" $(GO) generate ./...

.PHONY: vmlinux
vmlinux: ## regenerate bpf/include/vmlinux.h from this machine's kernel BTF
	bpftool btf dump file /sys/kernel/btf/vmlinux format c > bpf/include/vmlinux.h

# The version tcpspan -version prints and its spans' scope carries: the
# nearest tag, or the commit, and -dirty for uncommitted changes.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null)

.PHONY: build
build: ## build the tcpspan binary into ./bin, stamped with VERSION (from git describe)
	$(GO) build -ldflags "-X github.com/tcpspan/tcpspan/internal/version.version=$(VERSION)" -o bin/tcpspan ./cmd/tcpspan

.PHONY: image
image: ## build the container image localhost/tcpspan:dev with podman (Containerfile)
	./scripts/image.sh

.PHONY: test
test: ## all tests: unit, privileged BPF (root) and end-to-end
	./scripts/test.sh

.PHONY: test-kernels
test-kernels: ## the bpf tests on Debian's 5.10, 6.1 and 6.12 kernels under qemu, one table (kernels cached)
	./scripts/test-kernels.sh

.PHONY: demo
demo: ## the seed incident (rinetd, backlog 5, wrk -c1000) explained by tcpspan (root)
	./scripts/demo.sh

.PHONY: bench
bench: ## what tcpspan costs: connection/reset storms, keep-alive, getpid tax, with and without (root; knobs: docs/performance.md)
	./scripts/bench.sh

.PHONY: bench-idle
bench-idle: build ## 100k open idle connections: agent and kernel memory, eviction, close burst (root)
	cd bench && $(GO) run ./idle -agent $(CURDIR)/bin/tcpspan -n $${N:-100000} -- $${AGENT_FLAGS:-}

.PHONY: jaeger
jaeger: ## run Jaeger v2 on loopback (OTLP 127.0.0.1:14317/14318, query API http://127.0.0.1:16686)
	JAEGER_LISTEN_HOST=127.0.0.1 "$$(./scripts/tools.sh jaeger)" --config=tools/jaeger/jaeger.yaml

.PHONY: collector
collector: ## run the OpenTelemetry Collector with otel-collector.yaml (forwards to make jaeger)
	"$$(./scripts/tools.sh otelcol)" --config=otel-collector.yaml

.PHONY: run
run: build ## run the agent on this host with its terminal view (root)
	./bin/tcpspan

.PHONY: format
format: ## clang-format the BPF C sources
	clang-format-16 -i bpf/*.c bpf/*.h
