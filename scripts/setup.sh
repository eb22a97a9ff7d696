#!/usr/bin/env bash
# Installs the Debian 12 packages elm needs. Idempotent; run as root (or with sudo available).
# Usage: scripts/setup.sh [runtime|all]
#   runtime  what building and running elm and elm-serve needs (scripts/quickstart.sh)
#   all      runtime plus what the tests, benchmarks and training need (scripts/test.sh; default)
# Set ELM_SETUP_SKIP=1 to skip when packages are managed elsewhere.
set -euo pipefail
[ "${ELM_SETUP_SKIP:-0}" = 1 ] && exit 0
group="${1:-all}"

# Building and running the programs: the compiler and build tools, the header-only libraries,
# cpp-httplib (elm-serve), libcurl and OpenSSL (elm pull; docs/architecture.md), OpenBLAS (the
# CBLAS header at build time; `elm train` loads the library on first use), libedit (elm chat's
# line editing), zlib and libzstd (compressed training corpora: .json.gz, .jsonl.gz, .zst).
RUNTIME_PKGS=(
  build-essential cmake ninja-build pkg-config
  nlohmann-json3-dev libyaml-cpp-dev libcli11-dev libcpp-httplib-dev
  libcurl4-openssl-dev libssl-dev libopenblas-openmp-dev libedit-dev zlib1g-dev libzstd-dev
)
# Tests, benchmarks and their tools; MPI (data-parallel training, loaded under mpirun) for the
# training tests.
TEST_PKGS=(
  git libgtest-dev libgmock-dev libbenchmark-dev libbz2-dev
  libopenmpi-dev openmpi-bin
  g++-aarch64-linux-gnu qemu-user clang-format
  chromium nodejs tmux
)

case "$group" in
  runtime) PKGS=("${RUNTIME_PKGS[@]}") ;;
  all) PKGS=("${RUNTIME_PKGS[@]}" "${TEST_PKGS[@]}") ;;
  *)
    echo "setup: unknown group '$group' (expected runtime or all)" >&2
    exit 2
    ;;
esac

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PKGS[@]} $group packages present"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
