#!/usr/bin/env bash
# CI guard: the committed bpf/dist/*.bpf.o must be exactly what `make bpf` builds from bpf/.
#
# Objects are byte-for-byte reproducible from any checkout path (sources are compiled by
# repository-relative names and -fdebug-prefix-map rewrites the compile directory), given the
# same Debian clang-14, libbpf-dev and linux-libc-dev; bpf/dist/TOOLCHAIN records the versions
# that built the committed objects, and a mismatch report shows both, so that "stale" and
# "built by another toolchain" are told apart.
set -euo pipefail
cd "$(dirname "$0")/.."
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

toolchain() {
  dpkg-query -W -f='${Package} ${Version}\n' clang-14 libbpf-dev linux-libc-dev 2>/dev/null || true
}

stale=0
for src in bpf/*.bpf.c; do
  [ -e "$src" ] || continue
  name=$(basename "$src" .c)
  # Build with the Makefile's own flags and rule, into the scratch dir.
  make -s --no-print-directory "$scratch/$name.o" -f - <<MK >/dev/null
include Makefile
$scratch/$name.o: $src \$(BPF_HDRS)
	\$(CLANG) \$(BPF_CFLAGS) -c \$< -o \$@
MK
  if [ ! -e "bpf/dist/$name.o" ]; then
    echo "bpf-check: bpf/dist/$name.o is missing; run 'make bpf' and commit bpf/dist/" >&2
    stale=1
  elif ! cmp -s "$scratch/$name.o" "bpf/dist/$name.o"; then
    echo "bpf-check: bpf/dist/$name.o differs from what $src builds; run 'make bpf' and commit bpf/dist/" >&2
    stale=1
  fi
done
for obj in bpf/dist/*.bpf.o; do
  [ -e "$obj" ] || continue
  src="bpf/$(basename "$obj" .o).c"
  if [ ! -e "$src" ]; then
    echo "bpf-check: $obj has no source $src; remove it" >&2
    stale=1
  fi
done

if [ "$stale" = 0 ]; then
  echo "bpf-check: bpf/dist is up to date"
  exit 0
fi
if [ -f bpf/dist/TOOLCHAIN ] && ! diff -q <(toolchain) bpf/dist/TOOLCHAIN >/dev/null; then
  {
    echo "bpf-check: this machine's toolchain differs from the one that built bpf/dist:"
    diff <(toolchain) bpf/dist/TOOLCHAIN | sed 's/^/  /' || true
    echo "  (< here, > committed) objects are reproducible only with the same versions"
  } >&2
fi
exit 1
