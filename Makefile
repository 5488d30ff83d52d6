# Actorline: two commands. See README.md.
.PHONY: dev test build bench steady soak eval

dev:
	bash scripts/dev.sh

test:
	bash scripts/test.sh

build:
	bash -c 'source scripts/lib.sh && bootstrap && build_release'

# Search quality (nDCG@10, recall@10) on the generated judged corpus; see examples/search_eval.rs.
eval:
	bash -c 'source scripts/lib.sh && bootstrap && build_worker && cargo run --release --example search_eval && cargo run --release --example answer_eval'

# Load benchmarks against local workerd (not part of `make test`); writes docs/benchmarks.md.
# BENCH_ARGS=--quick for smaller sizes. `make steady` runs a steady load (SOAK_ARGS, default 10 min).
bench:
	bash -c 'source scripts/lib.sh && bootstrap && build_worker && build_analyzer && ensure_dev_vars && cargo run --release -p actorline-bench -- all --out docs/benchmarks.md $(BENCH_ARGS)'

steady:
	bash -c 'source scripts/lib.sh && bootstrap && build_worker && build_analyzer && ensure_dev_vars && cargo run --release -p actorline-bench -- soak $(SOAK_ARGS)'

# The reliability suite (tests/soak) at full size: SIGKILLs with resuming clients,
# 30% faults, the bad-input and auth sweeps. Writes its block into docs/benchmarks.md.
# SOAK_SEED=<n> replays a run; `make test` runs it at the small size.
soak:
	bash -c 'source scripts/lib.sh && bootstrap && build_worker && build_analyzer && ensure_dev_vars && SOAK_SCALE=full SOAK_REPORT=docs/benchmarks.md cargo test --test soak -- --nocapture --test-threads 1'
