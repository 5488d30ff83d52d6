#!/usr/bin/env bash
# run.sh PORT STATE_DIR: builds if needed, applies the D1 migration into
# STATE_DIR, then execs `wrangler dev --local` on 127.0.0.1:PORT (PORT 0 picks
# a free port, printed in the "Ready on" line). Run it in its own process
# group and stop it by killing the group, e.g.
#   setsid bash bench/peer-agents/run.sh 8899 /tmp/peer-state & ... kill -- -$!
# ANALYZER_URL in the environment is passed to the Worker (analyze is skipped without it).
set -euo pipefail
if [ $# -ne 2 ]; then
  echo "usage: run.sh PORT STATE_DIR" >&2
  exit 2
fi
port="$1"
state="$(mkdir -p "$2" && cd "$2" && pwd)"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

bash ./build.sh

WRANGLER="${WRANGLER:-$here/../../node_modules/.bin/wrangler}"
if ! [ -x "$WRANGLER" ]; then
  echo "run.sh: $WRANGLER not found; run 'npm ci' in the repository root (wrangler 4.86.0)" >&2
  exit 1
fi
export WRANGLER_SEND_METRICS=false WRANGLER_SEND_ERROR_REPORTS=false CLOUDFLARE_CF_FETCH_ENABLED=false
# CI=1: no interactive confirmation from `d1 migrations apply`.
CI=1 "$WRANGLER" d1 migrations apply DB --local --persist-to "$state" >&2

vars=()
if [ -n "${ANALYZER_URL:-}" ]; then
  vars+=(--var "ANALYZER_URL:$ANALYZER_URL")
fi
exec "$WRANGLER" dev --local --ip 127.0.0.1 --port "$port" --inspector-port 0 \
  --show-interactive-dev-session=false --persist-to "$state" "${vars[@]}"
