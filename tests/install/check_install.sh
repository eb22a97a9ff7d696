#!/usr/bin/env bash
# `cmake --install` works (README, "Installing"): installs the build tree in $1 (with the cmake in
# $2) to a temporary prefix and, from another working directory, generates text with the shipped
# model there, finds elm-serve and the data, and checks that elm does not link MPI (it is loaded
# on first use, src/train/mpi_plugin.h).
set -euo pipefail
build="$1"
cmake="${2:-cmake}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
prefix="$work/prefix"
"$cmake" --install "$build" --prefix "$prefix" >"$work/install.log"

fail() {
  echo "FAIL: $*" >&2
  exit 1
}
for f in bin/elm bin/elm-serve share/elm/models/openelm-shakespeare/config.json \
  share/elm/eval/arc_easy.jsonl share/elm/tokenizer/llama2/LICENSE-NOTICE.md \
  share/doc/elm/README.md; do
  [ -e "$prefix/$f" ] || fail "$f is not installed"
done
if [ -e "$build/libelm_mpi.so" ]; then
  [ -e "$prefix/lib/elm/libelm_mpi.so" ] || fail "the MPI plugin is not installed in lib/elm"
fi
if readelf -d "$prefix/bin/elm" | grep NEEDED | grep -qi mpi; then
  fail "bin/elm links MPI: $(readelf -d "$prefix/bin/elm" | grep NEEDED | grep -i mpi)"
fi

mkdir "$work/elsewhere"
cd "$work/elsewhere"
out="$("$prefix/bin/elm" generate --model "$prefix/share/elm/models/openelm-shakespeare" \
  --prompt "ROMEO:" --max-new-tokens 8 --seed 1 2>"$work/err")" ||
  fail "elm generate: $(cat "$work/err")"
[ -n "$out" ] || fail "elm generate printed nothing"
# elm serve runs the elm-serve installed beside it.
"$prefix/bin/elm" serve --help >/dev/null 2>"$work/err" || fail "elm serve --help: $(cat "$work/err")"
# The eval sets are found under <prefix>/share/elm (src/base/data_dir.h), with the build tree gone
# from view: ELM_DATA_DIR unset.
env -u ELM_DATA_DIR -u ELM_EVAL_DATA_DIR "$prefix/bin/elm" eval --tasks arc_easy --limit 2 \
  --model "$prefix/share/elm/models/openelm-shakespeare" >"$work/eval" 2>"$work/err" ||
  fail "elm eval: $(cat "$work/err")"
grep -q arc_easy "$work/eval" || fail "elm eval printed no arc_easy row: $(cat "$work/eval")"
echo "install: OK ($prefix)"
echo "$out" | head -3
