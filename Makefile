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
