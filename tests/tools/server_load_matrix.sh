#!/usr/bin/env bash
# The load-test matrix of docs/server.md ("Load test"): for --parallel 1 and 2, starts
# `elm serve` on the tiny model, warms it up, then runs tests/tools/server_load.mjs with 1, 2 and 8
# clients (/v1/completions, 16 tokens), streaming chat with 8 clients, and the 8-client run again
# to compare the server's RSS. Each run stops at REQUESTS requests or MAX_SECONDS seconds.
#
#   tests/tools/server_load_matrix.sh [build/release/elm] > load.jsonl
#
# Prints one JSON line per run (the --json report plus "parallel" and "run").
set -euo pipefail
cd "$(dirname "$0")/../.."
ELM=${1:-build/release/elm}
MODEL=${MODEL:-models/tiny-random-32k}
REQUESTS=${REQUESTS:-4000}
MAX_SECONDS=${MAX_SECONDS:-40}
PORT=${PORT:-18090}

server=""
stop_server() {
  if [ -n "$server" ]; then
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    server=""
  fi
}
trap stop_server EXIT

for parallel in 1 2; do
  "$ELM" serve --model "$MODEL" --parallel "$parallel" --port "$PORT" 2>/dev/null &
  server=$!
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break
    sleep 0.1
  done
  load() {
    local run=$1
    shift
    node tests/tools/server_load.mjs --url "http://127.0.0.1:$PORT" --pid "$server" --json \
      --requests "$REQUESTS" --max-seconds "$MAX_SECONDS" "$@" |
      sed "s/^{/{\"parallel\":$parallel,\"run\":\"$run\",/"
  }
  # Warm-up: every slot and HTTP thread used once (not reported).
  node tests/tools/server_load.mjs --url "http://127.0.0.1:$PORT" --clients 8 --requests 200 \
    --json >/dev/null
  load c1 --clients 1
  load c2 --clients 2
  load c8 --clients 8
  load chat8 --clients 8 --chat --stream
  load c8-again --clients 8
  stop_server
done
