#!/usr/bin/env bash
# Shared by `make dev`, `make test` and `make bench`: an idempotent bootstrap
# that installs pinned tools from crates.io and npm, and the Worker build.
# `make test` also installs schemathesis from PyPI, pinned with everything it
# runs with, for the API conformance suite (install_schemathesis).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# Pinned tool versions. wasm-bindgen-cli must equal the wasm-bindgen in Cargo.lock.
WORKER_BUILD_VERSION="0.8.7"
WASM_BINDGEN_VERSION="$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/version = |"/,""); print; exit}' Cargo.lock)"
TOOLS="${ACTORLINE_TOOLS:-$HOME/.cache/actorline/tools}"

export WRANGLER_SEND_METRICS=false
export WRANGLER_SEND_ERROR_REPORTS=false
export CLOUDFLARE_CF_FETCH_ENABLED=false
export CARGO_TERM_COLOR=never

log() { printf '\033[1m[actorline]\033[0m %s\n' "$*" >&2; }

install_crate() { # name version -> prints bin dir
  local name="$1" version="$2" root="$TOOLS/$1-$2"
  if [ ! -x "$root/bin/$3" ]; then
    log "installing $name $version from crates.io into $root"
    cargo install "$name" --version "$version" --locked --root "$root" >&2
  fi
  echo "$root/bin"
}

bootstrap() {
  command -v cargo >/dev/null || { log "cargo is required (rustup)"; exit 1; }
  if ! rustup target list --installed 2>/dev/null | grep -q '^wasm32-unknown-unknown$'; then
    log "adding the wasm32-unknown-unknown target"
    rustup target add wasm32-unknown-unknown >&2
  fi
  local wb bg
  wb="$(install_crate worker-build "$WORKER_BUILD_VERSION" worker-build)"
  bg="$(install_crate wasm-bindgen-cli "$WASM_BINDGEN_VERSION" wasm-bindgen)"
  export PATH="$wb:$bg:$PATH"
  export WASM_BINDGEN_BIN="$bg/wasm-bindgen"
  local lock_sum
  lock_sum="$(sha256sum package-lock.json | cut -d' ' -f1)"
  if [ ! -x node_modules/.bin/wrangler ] || [ "$(cat node_modules/.actorline-lock 2>/dev/null)" != "$lock_sum" ]; then
    log "npm ci (pinned wrangler and test tools)"
    npm ci --no-audit --no-fund --loglevel=error >&2
    echo "$lock_sum" > node_modules/.actorline-lock
  fi
  # worker-build bundles with esbuild; use the one npm installed instead of a download.
  local esb="$ROOT/node_modules/@esbuild/linux-x64/bin/esbuild"
  [ -x "$esb" ] && export ESBUILD_BIN="$esb"
  export PATH="$ROOT/node_modules/.bin:$PATH"
}

# The Worker's wasm module as worker-build left it (empty if none).
wasm_module() {
  ls build/worker/*.wasm build/*.wasm 2>/dev/null | head -1 || true
}

build_worker() {
  log "building the Worker (worker-build --release)"
  worker-build --release >&2
  node scripts/actor_shim.mjs wrangler.toml build/worker/shim.mjs
  local wasm
  wasm="$(wasm_module)"
  [ -n "$wasm" ] && log "wasm bundle: $(stat -c %s "$wasm") bytes raw, $(gzip -9c "$wasm" | wc -c) bytes gzipped; as deployed (no name section): $(node scripts/wasm_names.mjs strip "$wasm" /dev/stdout | gzip -9c | wc -c) bytes gzipped"
}

# The build to deploy: build_worker's module without its name section (see
# scripts/wasm_names.mjs); `make build` runs it.
build_release() {
  build_worker
  local wasm
  wasm="$(wasm_module)"
  [ -n "$wasm" ] || { log "no wasm module under build/"; exit 1; }
  node scripts/wasm_names.mjs strip "$wasm"
  log "deploy build: $(stat -c %s "$wasm") bytes raw, $(gzip -9c "$wasm" | wc -c) bytes gzipped"
}

build_analyzer() {
  log "building the analyzer"
  cargo build --release -p analyzer >&2
}

# Creates .dev.vars with random secrets on first run; never overwrites it.
ensure_dev_vars() {
  if [ ! -f .dev.vars ]; then
    log "creating .dev.vars with a random ADMIN_TOKEN and SESSION_SECRET"
    umask 077
    {
      echo "ADMIN_TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
      echo "SESSION_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    } > .dev.vars
  fi
}

apply_migrations() { # state dir
  log "applying D1 migrations into $1"
  wrangler d1 migrations apply DB --local --persist-to "$1" >&2 </dev/null
}

# A command from Debian's packages, installed once when it is missing.
ensure_debian() { # command package why
  command -v "$1" >/dev/null 2>&1 || ensure_debian_package "$2" "$3"
}

ensure_debian_package() { # package why
  log "installing Debian $1 ($2)"
  (apt-get update -qq && apt-get install -y -qq "$1") >&2
}

# schemathesis in a venv of its own, exactly the versions the requirements
# file pins (--no-deps: nothing unpinned comes along). Sets SCHEMATHESIS.
install_schemathesis() {
  local req="$ROOT/tests/conformance/requirements.txt" version venv sum
  version="$(sed -n 's/^schemathesis==//p' "$req")"
  venv="$TOOLS/schemathesis-$version"
  sum="$(sha256sum "$req" | cut -d' ' -f1)"
  if [ ! -x "$venv/bin/schemathesis" ] || [ "$(cat "$venv/.actorline-lock" 2>/dev/null)" != "$sum" ]; then
    python3 -m venv --help >/dev/null 2>&1 || ensure_debian_package python3-venv "schemathesis's venv"
    log "installing schemathesis $version from PyPI into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps -r "$req" >&2
    echo "$sum" > "$venv/.actorline-lock"
  fi
  export SCHEMATHESIS="$venv/bin/schemathesis"
}

browser_tests() {
  ensure_debian chromium chromium "browser tests"
  log "browser tests (headless chromium)"
  node --test tests/browser/
}
