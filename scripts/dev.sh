#!/usr/bin/env bash
# `make dev`: bootstrap, build, then run the analyzer and wrangler dev in the
# foreground until interrupted. Both are stopped by process group on exit.
source "$(dirname "$0")/lib.sh"

PORT="${PORT:-8787}"
STATE_DIR="${STATE_DIR:-.wrangler/state}"
ANALYZER_PORT="${ANALYZER_PORT:-8788}"
INSPECTOR_PORT="${INSPECTOR_PORT:-9229}"

bootstrap
build_worker
build_analyzer
ensure_dev_vars
mkdir -p "$STATE_DIR"
apply_migrations "$STATE_DIR"

pids=()
# TERM each group this script started, then KILL what is left after 5 s, so
# an interrupted `make dev` leaves nothing holding its ports.
cleanup() {
  trap - EXIT INT TERM
  local p i
  for p in "${pids[@]}"; do kill -TERM -- "-$p" 2>/dev/null || true; done
  for i in $(seq 50); do
    alive=0
    for p in "${pids[@]}"; do kill -0 -- "-$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for p in "${pids[@]}"; do kill -KILL -- "-$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

setsid target/release/analyzer --host 127.0.0.1 --port "$ANALYZER_PORT" --data-dir "$STATE_DIR/analyzer" &
pids+=($!)
log "analyzer on http://127.0.0.1:$ANALYZER_PORT"
log "Actorline on http://127.0.0.1:$PORT (admin token in .dev.vars)"
setsid wrangler dev --local --ip 127.0.0.1 --port "$PORT" --inspector-port "$INSPECTOR_PORT" \
  --show-interactive-dev-session=false --persist-to "$STATE_DIR" --test-scheduled \
  --var "ANALYZER_URL:http://127.0.0.1:$ANALYZER_PORT" &
pids+=($!)
wrangler_pid=$!
# Network tracing off; a local tenant and its API key, created on first run and printed each time.
admin_token="$(sed -n 's/^ADMIN_TOKEN=//p' .dev.vars)"
node scripts/dev_ready.mjs "http://127.0.0.1:$PORT" "$STATE_DIR" "$admin_token" "$INSPECTOR_PORT" "$wrangler_pid" \
  || log "could not finish the dev setup (see above)"
wait "$wrangler_pid"
