# The README's entry points. Every target that needs root or packages runs setup first;
# setup is idempotent, so `make test` and `make demo` work on a fresh Debian machine.
SHELL := /bin/bash
CLANG ?= clang-14
BPF_CFLAGS := -O2 -g -target bpf -D__TARGET_ARCH_x86 -Wall -Werror \
	-fdebug-prefix-map=$(CURDIR)=. -Ibpf/include -I/usr/include/$(shell $(CLANG) -print-multiarch 2>/dev/null)
BPF_SRCS := $(wildcard bpf/*.bpf.c)
BPF_OBJS := $(patsubst bpf/%.bpf.c,bpf/dist/%.bpf.o,$(BPF_SRCS))
BPF_HDRS := $(shell find bpf/include -name '*.h' 2>/dev/null | LC_ALL=C sort)

.PHONY: fmt setup build lint test test-unit test-kernel test-e2e demo bench bpf bpf-check clean

setup:
	@scripts/setup.sh

build: setup

lint: setup
	npx biome check src test bench
	npx tsc -p tsconfig.json

# All tests: unit (no root), kernel (real BPF in the real kernel), e2e (devcluster).
test: setup lint bpf-check
	npx vitest run --project unit
	npx vitest run --project kernel
	npx vitest run --project e2e

test-unit: setup
	npx vitest run --project unit
test-kernel: setup
	npx vitest run --project kernel
test-e2e: setup
	npx vitest run --project e2e

demo: setup
	node dist/src/cli/weft.js demo

bench: setup
	@scripts/setup.sh --bench
	scripts/bench.sh

# Rebuild the committed eBPF objects (needs clang: scripts/setup.sh --bpf).
bpf: $(BPF_OBJS) bpf/dist/TOOLCHAIN
# Which compiler and headers built the committed objects (bpf-check shows it on a mismatch).
bpf/dist/TOOLCHAIN: $(BPF_OBJS)
	dpkg-query -W -f='$${Package} $${Version}\n' clang-14 libbpf-dev linux-libc-dev >$@
bpf/dist/%.bpf.o: bpf/%.bpf.c $(BPF_HDRS)
	@command -v $(CLANG) >/dev/null || { echo "make bpf: $(CLANG) not found; run scripts/setup.sh --bpf" >&2; exit 1; }
	$(CLANG) $(BPF_CFLAGS) -c $< -o $@

# Fails when bpf/dist/ does not match its sources: rebuilds into a scratch dir and compares.
bpf-check:
	@scripts/setup.sh --bpf >/dev/null
	@scripts/bpf-check.sh

clean:
	rm -rf dist

fmt:
	npx biome check --write src test bench
