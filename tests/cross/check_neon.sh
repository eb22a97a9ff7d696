#!/usr/bin/env bash
# Cross-compiles the kernels for AArch64 and checks the NEON tier against the scalar twins under
# qemu-aarch64. Needs g++-aarch64-linux-gnu and qemu-user; skips (exit 0) without them.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v aarch64-linux-gnu-g++ >/dev/null || ! command -v qemu-aarch64 >/dev/null; then
  echo "check_neon: skipped (install g++-aarch64-linux-gnu and qemu-user to run it)"
  exit 0
fi
out=$(mktemp -d)
srcs="src/base/dtype.cc src/base/quant.cc src/base/kquant.cc src/base/kquant_write.cc
      src/kernels/cpu_kernels_scalar.cc
      src/kernels/kquant_kernels_scalar.cc src/kernels/arm/kernels_neon.cc
      src/kernels/arm/kquant_neon.cc src/kernels/x86/kernels_avx2.cc
      src/kernels/x86/kernels_avx512.cc src/kernels/x86/kquant_avx2.cc
      src/kernels/x86/kquant_avx512.cc tests/cross/neon_check.cc"
for arch in armv8-a armv8.2-a+dotprod; do
  aarch64-linux-gnu-g++ -std=c++20 -O2 -march=$arch -Wall -Wextra -Werror -Isrc $srcs \
    -static -o "$out/neon_check"
  echo -n "[$arch] "
  qemu-aarch64 "$out/neon_check"
done
rm -rf "$out"
