#!/usr/bin/env bash
# `make test`: bootstrap, build, then every test: native unit tests, the
# end-to-end suite against real workerd, the reliability suite at its small
# size, the browser tests, the deploy dry-runs and the deploy-path checks.
source "$(dirname "$0")/lib.sh"

bootstrap
build_worker
build_analyzer
ensure_dev_vars

log "native tests"
cargo test --workspace --lib --bins
cargo test -p analyzer --tests
cargo test --test web_protocol
# The benchmark peer compiles Actorline's src/nlp on its own (bench/peer-agents/nlp-wasm), so
# src/nlp must stay free of the rest of the crate; a dependency slipping in breaks `make bench`.
cargo check --quiet --locked --target wasm32-unknown-unknown \
  --manifest-path bench/peer-agents/nlp-wasm/Cargo.toml --target-dir bench/peer-agents/nlp-wasm/target

log "deploy dry-runs (default and production)"
wrangler deploy --dry-run --outdir target/dry-run >&2
wrangler deploy --dry-run --env production --outdir target/dry-run-production >&2

log "deploy path: the analyzer image builds from its Dockerfile's context; README, wrangler.toml and code agree"
bash scripts/check_image.sh
cargo test --test deploy

log "end-to-end tests against wrangler dev"
ACTORLINE_ROOT="$ROOT" cargo test --test e2e -- --test-threads 4

log "production-mode tests against emulated Cloudflare bindings (tests/prod)"
ACTORLINE_ROOT="$ROOT" cargo test --test prod -- --test-threads 2

log "API conformance: schemathesis, every check, against the served OpenAPI document"
install_schemathesis
ACTORLINE_ROOT="$ROOT" cargo test --test conformance -- --nocapture

log "reliability suite, small size (make soak runs it full)"
ACTORLINE_ROOT="$ROOT" cargo test --test soak -- --nocapture
browser_tests
log "make test: every suite passed"
