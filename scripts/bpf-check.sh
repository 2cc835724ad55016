#!/usr/bin/env bash
# CI guard: the committed bpf/dist/*.bpf.o must be exactly what `make bpf` builds from bpf/.
set -euo pipefail
cd "$(dirname "$0")/.."
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
stale=0
for src in bpf/*.bpf.c; do
  [ -e "$src" ] || continue
  name=$(basename "$src" .c)
  make -s --no-print-directory "$scratch/$name.o" -f - <<MK >/dev/null
include Makefile
$scratch/$name.o: $src \$(BPF_HDRS)
	\$(CLANG) \$(BPF_CFLAGS) -c \$< -o \$@
MK
  if ! cmp -s "$scratch/$name.o" "bpf/dist/$name.o"; then
    echo "bpf-check: bpf/dist/$name.o is stale or missing; run 'make bpf' and commit bpf/dist/" >&2
    stale=1
  fi
done
[ "$stale" = 0 ] && echo "bpf-check: bpf/dist is up to date"
exit "$stale"
