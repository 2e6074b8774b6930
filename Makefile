# Two commands, each doing its own set-up (idempotent: a second call installs nothing).
#   make run     install the main job's environment (.venv) and run `prb run` on the embedded default
#   make test    install everything the full suite needs and run it, exactly as CI does (.ci/run)
# ARGS passes options through, e.g. `make run ARGS="--methods length,embed-logreg"`, `make test ARGS="-m 'not slow'"`.
.PHONY: run test setup setup-test

run: setup
	.venv/bin/prb run $(ARGS)

test: setup-test
	scripts/test $(ARGS)

setup:
	scripts/setup

setup-test:
	scripts/setup test
