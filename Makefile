# Actorline: two commands. See README.md.
.PHONY: dev test build bench soak

dev:
	bash scripts/dev.sh

test:
	bash scripts/test.sh

build:
	bash -c 'source scripts/lib.sh && bootstrap && build_worker'
