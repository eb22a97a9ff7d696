#!/usr/bin/env bash
# Installs the Debian 12 packages elm needs to build and test. Idempotent; run as root
# (or with sudo available). Set ELM_SETUP_SKIP=1 to skip when packages are managed elsewhere.
set -euo pipefail
[ "${ELM_SETUP_SKIP:-0}" = 1 ] && exit 0

PKGS=(
  build-essential cmake ninja-build pkg-config git
  nlohmann-json3-dev libyaml-cpp-dev libcli11-dev libcpp-httplib-dev
  libgtest-dev libgmock-dev libbenchmark-dev libopenblas-openmp-dev libbz2-dev
  libopenmpi-dev openmpi-bin libedit-dev
  g++-aarch64-linux-gnu qemu-user clang-format
  chromium nodejs tmux
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PKGS[@]} packages present"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
