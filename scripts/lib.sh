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

# Each line carries the time since the script started ($SECONDS), so a slow
# phase of `make test` shows in CI's log.
log() { printf '\033[1m[actorline %dm%02ds]\033[0m %s\n' $((SECONDS / 60)) $((SECONDS % 60)) "$*" >&2; }

# Installs a pinned crate's binary once. Not inside `$( )`: `set -e` does not
# reach a command substitution, and a failed install must stop here, not let
# worker-build fall back to a download of its own.
install_crate() { # name version binary
  local name="$1" version="$2" root="$TOOLS/$1-$2"
  if [ ! -x "$root/bin/$3" ]; then
    log "installing $name $version from crates.io into $root"
    cargo install "$name" --version "$version" --locked --root "$root" >&2
  fi
  [ -x "$root/bin/$3" ] || { log "$name $version did not install $root/bin/$3"; exit 1; }
  export PATH="$root/bin:$PATH"
}

bootstrap() {
  command -v cargo >/dev/null || { log "cargo is required (rustup)"; exit 1; }
  command -v node >/dev/null && command -v npm >/dev/null || { log "node and npm are required (Node.js 20.3 or later)"; exit 1; }
  # wrangler 4.86 needs Node 20.3 or later; older ones fail later, obscurely.
  node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 3) ? 0 : 1)' \
    || { log "Node.js $(node --version) is too old: wrangler needs 20.3 or later"; exit 1; }
  # A Cargo.lock that no longer matches the manifests fails here, rather than
  # being re-resolved from crates.io by the first build.
  cargo fetch --locked -q >&2 || { log "Cargo.lock is out of date with the manifests (cargo fetch --locked)"; exit 1; }
  if ! rustup target list --installed 2>/dev/null | grep -q '^wasm32-unknown-unknown$'; then
    log "adding the wasm32-unknown-unknown target"
    rustup target add wasm32-unknown-unknown >&2
  fi
  install_crate worker-build "$WORKER_BUILD_VERSION" worker-build
  install_crate wasm-bindgen-cli "$WASM_BINDGEN_VERSION" wasm-bindgen
  export WASM_BINDGEN_BIN="$TOOLS/wasm-bindgen-cli-$WASM_BINDGEN_VERSION/bin/wasm-bindgen"
  # worker-build downloads a wasm-bindgen of its own when this one is not
  # the version the lock names: refuse that instead.
  [ "$("$WASM_BINDGEN_BIN" --version)" = "wasm-bindgen $WASM_BINDGEN_VERSION" ] \
    || { log "$WASM_BINDGEN_BIN is not wasm-bindgen $WASM_BINDGEN_VERSION"; exit 1; }
  local lock_sum
  lock_sum="$(sha256sum package-lock.json | cut -d' ' -f1)"
  if [ ! -x node_modules/.bin/wrangler ] || [ "$(cat node_modules/.actorline-lock 2>/dev/null)" != "$lock_sum" ]; then
    log "npm ci (pinned wrangler and test tools)"
    npm ci --no-audit --no-fund --loglevel=error >&2
    echo "$lock_sum" > node_modules/.actorline-lock
  fi
  # worker-build bundles with esbuild; use the one package-lock.json pins (its
  # platform package) instead of a download of another version.
  local esb
  esb="$(node -p 'require.resolve(`@esbuild/${process.platform}-${process.arch}/bin/esbuild`)' 2>/dev/null)" \
    && [ -x "$esb" ] || { log "no esbuild binary for $(node -p 'process.platform + "-" + process.arch') in node_modules"; exit 1; }
  export ESBUILD_BIN="$esb"
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

# Gives .dev.vars a random ADMIN_TOKEN and SESSION_SECRET where it has none
# (first run), keeping whatever else it holds and never replacing a secret.
# Written whole and moved into place (a run killed meanwhile leaves the old
# file, not half a new one), in a subshell so its umask stays there.
ensure_dev_vars() {
  local missing=()
  grep -q '^ADMIN_TOKEN=.' .dev.vars 2>/dev/null || missing+=("ADMIN_TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')")
  grep -q '^SESSION_SECRET=.' .dev.vars 2>/dev/null || missing+=("SESSION_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')")
  [ "${#missing[@]}" -eq 0 ] && return 0
  log "writing ${missing[*]%%=*} into .dev.vars (random)"
  (
    umask 077
    { [ -f .dev.vars ] && grep -v -e '^ADMIN_TOKEN=$' -e '^SESSION_SECRET=$' .dev.vars; printf '%s\n' "${missing[@]}"; } > .dev.vars.tmp
    mv .dev.vars.tmp .dev.vars
  )
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
  # An install cut off earlier leaves dpkg wanting its configure step first.
  (export DEBIAN_FRONTEND=noninteractive; dpkg --configure -a && apt-get update -qq && apt-get install -y -qq "$1") >&2
}

# schemathesis in a venv of its own, exactly the versions the requirements
# file pins (--no-deps: nothing unpinned comes along). Sets SCHEMATHESIS.
install_schemathesis() {
  local req="$ROOT/tests/conformance/requirements.txt" version venv sum
  version="$(sed -n 's/^schemathesis==//p' "$req")"
  venv="$TOOLS/schemathesis-$version"
  sum="$(sha256sum "$req" | cut -d' ' -f1)"
  if [ ! -x "$venv/bin/schemathesis" ] || [ "$(cat "$venv/.actorline-lock" 2>/dev/null)" != "$sum" ]; then
    # `venv --help` answers without ensurepip, which Debian's python3-venv adds.
    python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || ensure_debian_package python3-venv "schemathesis's venv"
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
  # The files, not the directory: Node 21 and later read a directory
  # argument as a module path.
  node --test tests/browser/*.test.mjs
}
