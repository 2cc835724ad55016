#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks to run weft and its tests, and nothing else.
# Idempotent: a second run finds everything in place and changes nothing.
#
#   scripts/setup.sh            runtime + tests: iproute2, libbpf1, bpftool, iptables, kubectl
#                               client, node modules, bpffs, cgroup2, build
#   scripts/setup.sh --bpf      also clang/llc, to rebuild bpf/dist (make bpf)
#   scripts/setup.sh --bench    also wrk, iptables and nginx for the benchmarks' peers
set -euo pipefail
cd "$(dirname "$0")/.."

want_bpf=0 want_bench=0
for arg in "$@"; do
  case "$arg" in
    --bpf) want_bpf=1 ;;
    --bench) want_bench=1 ;;
    *) echo "setup: unknown option $arg (known: --bpf, --bench)" >&2; exit 2 ;;
  esac
done

say() { printf 'setup: %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: must run as root (BPF, network namespaces and cgroups need CAP_SYS_ADMIN/CAP_NET_ADMIN); try: sudo $0 $*" >&2
  exit 1
fi

# --- Debian packages: install only the missing ones -------------------------------------
pkgs=(iproute2 libbpf1 bpftool iptables openssl util-linux curl)
command -v kubectl >/dev/null 2>&1 || pkgs+=(kubernetes-client)
[ "$want_bpf" = 1 ] && pkgs+=(clang-14 llvm-14 libbpf-dev linux-libc-dev)
[ "$want_bench" = 1 ] && pkgs+=(wrk nginx-light gcc libbpf-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- Node: version and modules ---------------------------------------------------------------
node_ok=$(node -e 'const [a,b]=process.versions.node.split(".").map(Number); console.log(a>20||(a===20&&b>=19)?1:0)' 2>/dev/null || echo 0)
if [ "$node_ok" != 1 ]; then
  echo "setup: weft needs Node.js 20.19 or newer (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi
stamp=node_modules/.weft-lock-stamp
lock_sum=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$lock_sum" ]; then
  say "npm ci"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$lock_sum" >"$stamp"
fi

# --- Kernel file systems -----------------------------------------------------------------------
if ! awk '$3=="bpf" && $2=="/sys/fs/bpf" {f=1} END {exit !f}' /proc/mounts; then
  say "mounting bpffs at /sys/fs/bpf"
  mkdir -p /sys/fs/bpf
  mount -t bpf bpf /sys/fs/bpf
fi
cg2=$(awk '$3=="cgroup2" {print $2; exit}' /proc/mounts)
if [ -z "$cg2" ]; then
  say "no cgroup2 mount found; mounting one at /run/weft/cgroup2"
  mkdir -p /run/weft/cgroup2
  mount -t cgroup2 none /run/weft/cgroup2
fi

# --- Build (only when sources are newer than the output) ---------------------------------------
if [ ! -f dist/src/cli/weft.js ] || [ -n "$(find src bench tsconfig.json tsconfig.build.json -newer dist/.build-stamp -print -quit 2>/dev/null || echo x)" ]; then
  say "building TypeScript"
  npx tsc -p tsconfig.build.json
  touch dist/.build-stamp
fi
say "ready (cgroup2 at ${cg2:-/run/weft/cgroup2}, bpffs at /sys/fs/bpf)"
