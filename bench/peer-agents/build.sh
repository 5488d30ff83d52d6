#!/usr/bin/env bash
# Builds the peer's inputs, idempotently (a second run does no work):
#   1. nlp-wasm/ (Actorline's own src/nlp) -> wasm32 with cargo, release profile
#   2. wasm-bindgen --target web           -> nlp-pkg/ (imported by src/index.ts)
#   3. npm ci                              -> node_modules/ (agents, pinned by package-lock.json)
# Needs cargo with the wasm32-unknown-unknown target, node/npm, and
# wasm-bindgen-cli 0.2.129 (reused from Actorline's tool cache, else installed there).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

WASM_BINDGEN_VERSION=0.2.129
TOOLS="${ACTORLINE_TOOLS:-$HOME/.cache/actorline/tools}"
BG="${WASM_BINDGEN_BIN:-$TOOLS/wasm-bindgen-cli-$WASM_BINDGEN_VERSION/bin/wasm-bindgen}"
if ! [ -x "$BG" ] || [ "$("$BG" --version)" != "wasm-bindgen $WASM_BINDGEN_VERSION" ]; then
  BG="$TOOLS/wasm-bindgen-cli-$WASM_BINDGEN_VERSION/bin/wasm-bindgen"
  if ! [ -x "$BG" ]; then
    echo "build.sh: installing wasm-bindgen-cli $WASM_BINDGEN_VERSION into $TOOLS" >&2
    cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --locked \
      --root "$TOOLS/wasm-bindgen-cli-$WASM_BINDGEN_VERSION" >&2
  fi
fi

# 1. cargo decides itself whether anything changed (it tracks ../../../src/nlp).
rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown \
  || rustup target add wasm32-unknown-unknown >&2
cargo build --quiet --release --locked --target wasm32-unknown-unknown \
  --manifest-path nlp-wasm/Cargo.toml --target-dir nlp-wasm/target
wasm="nlp-wasm/target/wasm32-unknown-unknown/release/actorline_nlp_wasm.wasm"

# 2. Only when the wasm is newer than the bindings.
out="nlp-pkg/actorline_nlp_bg.wasm"
if ! [ -f "$out" ] || ! [ -f nlp-pkg/actorline_nlp.js ] || [ "$wasm" -nt "$out" ]; then
  rm -rf nlp-pkg.tmp
  "$BG" --target web --out-dir nlp-pkg.tmp --out-name actorline_nlp "$wasm"
  rm -rf nlp-pkg && mv nlp-pkg.tmp nlp-pkg
  echo "build.sh: nlp-pkg/ rebuilt ($(wc -c <"$out") byte wasm)" >&2
fi

# 3. Only when the lockfile changed since the last install.
if ! [ -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error >&2
fi
