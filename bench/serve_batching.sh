#!/usr/bin/env bash
# Continuous batching and the prefix cache in `elm serve`, measured side by side in one run (the
# numbers in docs/performance.md "Serving"):
#
#   bench/serve_batching.sh [WORKDIR] [THREADS]
#
# On a random-weight OpenELM-270M (`elm init`, BF16, in WORKDIR, default build/compare, shared
# with bench/compare_llamacpp.sh), for Q8_0 and BF16 weights:
#  - aggregate generation tokens/s of 1, 4 and 8 concurrent streams (tests/tools/server_load.mjs,
#    streamed completions of MAX_TOKENS tokens, ignore_eos), `--parallel` = streams, --threads
#    THREADS (default 2), batching on; and 8 streams with --no-batching (each slot on its own
#    thread, cores / parallel threads each: the server before batching) as the baseline;
#  - llama.cpp's llama-server with the same slots (-np N, continuous batching) when LLAMA_SERVER
#    names the binary, with a GGUF of the same weights;
#  - time to first token of a chat's 5th turn (bench/chat_turn_ttft.mjs) with the prefix cache
#    and with --no-cache-prompt.
# Environment: STREAMS (default "1 4 8"), TYPES ("q8_0 bf16"), SECONDS_PER_RUN (20), MAX_TOKENS
# (64), CHATS (3), REPLY_TOKENS (the chats' reply lengths, "32 128"), PORT, ELM, LLAMA_SERVER.
# Output: one JSON line per run in WORKDIR/serve_batching.jsonl and a summary on stdout. The
# machine may be shared: compare numbers of one run only (ratios), never across runs.
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-build/compare}"
threads="${2:-2}"
elm="${ELM:-build/release/elm}"
seconds="${SECONDS_PER_RUN:-20}"
max_tokens="${MAX_TOKENS:-64}"
port="${PORT:-18123}"
streams="${STREAMS:-1 4 8}"  # concurrent streams per run (e.g. STREAMS=1 for a smoke run)
most="${streams##* }"        # the no-batching baseline runs the last of them
mkdir -p "$work"
[ -f "$work/m270/config.json" ] ||
  "$elm" init --preset OpenELM-270M --seed 0 --dtype bf16 --output "$work/m270" >/dev/null
out="$work/serve_batching.jsonl"
: >"$out"
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"

server_pid=
stop_server() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
  fi
}
trap stop_server EXIT

wait_ready() {
  for _ in $(seq 600); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "server did not come up" >&2
  return 1
}

# run_load LABEL TYPE STREAMS SERVER-COMMAND...
run_load() {
  local label="$1" type="$2" n="$3" conn=()
  shift 3
  # llama-server closes a kept-alive connection after a streamed reply: a connection per request.
  [ "$label" = llama-server ] && conn=(--no-keep-alive)
  "$@" >/dev/null 2>&1 &
  server_pid=$!
  wait_ready
  # Warm-up: one request per slot.
  node tests/tools/server_load.mjs --url "http://127.0.0.1:$port" --clients "$n" \
    --requests "$n" --max-seconds 60 --max-tokens 8 --stream --json "${conn[@]}" >/dev/null
  local j
  j=$(node tests/tools/server_load.mjs --url "http://127.0.0.1:$port" --pid "$server_pid" \
    --clients "$n" --requests 100000 --max-seconds "$seconds" --max-tokens "$max_tokens" \
    --stream --json "${conn[@]}" | tr -d '\n')
  stop_server
  echo "{\"engine\":\"$label\",\"type\":\"$type\",\"streams\":$n,\"result\":$j}" >>"$out"
  echo "$label $type x$n: $(echo "$j" | node -e '
    const j = JSON.parse(require("fs").readFileSync(0, "utf8"));
    console.log(`${j.tokens_per_s?.toFixed?.(1) ?? j.tokens_per_s} tokens/s, errors ${j.errors}`);')"
}

for type in ${TYPES:-q8_0 bf16}; do
  weights=()
  [ "$type" = bf16 ] || weights=(--weights "$type")
  serve=("$elm" serve --model "$work/m270" "${weights[@]}" --port "$port" --context 1024)
  for n in $streams; do
    run_load elm "$type" "$n" "${serve[@]}" --parallel "$n" --threads "$threads"
  done
  run_load elm-no-batching "$type" "$most" "${serve[@]}" --parallel "$most" --no-batching
  if [ -n "${LLAMA_SERVER:-}" ]; then
    gguf="$work/m270-$type.gguf"
    [ -f "$gguf" ] || "$elm" convert --model "$work/m270" --to gguf --type "$type" --output "$gguf" >/dev/null
    for n in $streams; do
      run_load llama-server "$type" "$n" "$LLAMA_SERVER" -m "$gguf" --port "$port" -c $((1024 * n)) \
        -np "$n" -t "$threads" -cb
    done
  fi
done

# The 5th turn of a chat, with and without the prefix cache (Q8_0, one slot), for each reply
# length in REPLY_TOKENS (the history a turn reuses grows with the replies).
for reply in ${REPLY_TOKENS:-32 128}; do
  for cache in on off; do
    flags=()
    [ "$cache" = off ] && flags=(--no-cache-prompt)
    "$elm" serve --model "$work/m270" --weights q8_0 --port "$port" --context 2048 \
      --threads "$threads" "${flags[@]}" >/dev/null 2>&1 &
    server_pid=$!
    wait_ready
    j=$(node bench/chat_turn_ttft.mjs --url "http://127.0.0.1:$port" --chats "${CHATS:-3}" \
      --max-tokens "$reply")
    stop_server
    echo "{\"engine\":\"elm\",\"prefix_cache\":\"$cache\",\"reply_tokens\":$reply,\"result\":$j}" >>"$out"
    echo "chat ttft, replies of $reply tokens, prefix cache $cache: $j" | cut -c1-220
  done
done
