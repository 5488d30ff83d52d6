# Actorline: two commands. See README.md.
.PHONY: dev test build bench soak eval

dev:
	bash scripts/dev.sh

test:
	bash scripts/test.sh

build:
	bash -c 'source scripts/lib.sh && bootstrap && build_worker'

# Search quality (nDCG@10, recall@10) on the generated judged corpus; see examples/search_eval.rs.
eval:
	bash -c 'source scripts/lib.sh && bootstrap && build_worker && cargo run --release --example search_eval'

# Load benchmarks against local workerd (not part of `make test`); writes docs/benchmarks.md.
# BENCH_ARGS=--quick for smaller sizes. `make soak` runs a steady load (SOAK_ARGS, default 10 min).
bench:
	bash -c 'source scripts/lib.sh && bootstrap && build_worker && build_analyzer && ensure_dev_vars && cargo run --release -p actorline-bench -- all --out docs/benchmarks.md $(BENCH_ARGS)'

soak:
	bash -c 'source scripts/lib.sh && bootstrap && build_worker && build_analyzer && ensure_dev_vars && cargo run --release -p actorline-bench -- soak $(SOAK_ARGS)'
