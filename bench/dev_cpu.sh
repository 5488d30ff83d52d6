#!/usr/bin/env bash
# CPU that `make dev`'s server spends on a fixed workload, with DevTools
# network tracing of internal calls off (the default) or on.
#   usage: bash bench/dev_cpu.sh <trace 0|1> <port> [runs]
# Starts scripts/dev.sh on <port> (analyzer on port+1, inspector on port+2) over
# a fresh state dir, submits [runs] (default 40) small documents one at a time
# with the printed local key, waits for each run to end (polling its view),
# and prints the CPU ticks (1/100 s) of wrangler's process group (node, both
# workerd processes, esbuild) over the workload. Stops what it started by
# process group.
set -u
cd "$(dirname "$0")/.."
TRACE=$1 PORT=$2 RUNS=${3:-40}
ST=$(mktemp -d)
DEV_TRACE_NETWORK=$TRACE PORT=$PORT ANALYZER_PORT=$((PORT+1)) INSPECTOR_PORT=$((PORT+2)) STATE_DIR=$ST/state \
  setsid bash scripts/dev.sh > "$ST/dev.log" 2>&1 &
DEV=$!
stop() { kill -TERM -- "-$DEV" 2>/dev/null; [ -n "${PG:-}" ] && kill -TERM -- "-$PG" 2>/dev/null; sleep 3; kill -KILL -- "-$DEV" 2>/dev/null; [ -n "${PG:-}" ] && kill -KILL -- "-$PG" 2>/dev/null; }
trap stop EXIT
for _ in $(seq 1 600); do grep -q "DevTools" "$ST/dev.log" 2>/dev/null && break; sleep 1; done
grep "DevTools" "$ST/dev.log"
KEY=$(cat "$ST/state/dev-api-key")
PG=""
while [ -z "$PG" ]; do
  for p in /proc/[0-9]*; do
    case "$(tr '\0' ' ' < "$p/cmdline" 2>/dev/null)" in *"wrangler dev"*"--port $PORT "*) PG=$(awk '{print $5}' "$p/stat"); break;; esac
  done
done
ticks() { local t=0; for p in /proc/[0-9]*; do
  read -r pg u s < <(awk '{print $5, $14, $15}' "$p/stat" 2>/dev/null) || continue
  [ "$pg" = "$PG" ] && t=$((t + u + s)); done; echo $t; }
before=$(ticks)
for i in $(seq 1 "$RUNS"); do
  run=$(curl -s -H "Authorization: Bearer $KEY" -H 'content-type: application/json' \
    -d "{\"title\":\"doc $i\",\"body\":\"The harbor engine study $i shows clear results about tides and energy storage.\"}" \
    "http://127.0.0.1:$PORT/api/content" | python3 -c 'import json,sys; print(json.load(sys.stdin)["run_id"])')
  for _ in $(seq 1 200); do
    s=$(curl -s -H "Authorization: Bearer $KEY" "http://127.0.0.1:$PORT/api/runs/$run" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("status",""))' 2>/dev/null)
    case "$s" in completed|failed|cancelled) break;; esac
    sleep 0.1
  done
done
echo "trace=$TRACE: $(( $(ticks) - before )) CPU ticks (1/100 s) in wrangler's process group for $RUNS runs"
