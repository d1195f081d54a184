# paymux: two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

NODE_SDK := tests/sdk/node
# pytest-xdist: test files run in this many processes, each file whole in one of them (its
# module fixtures, servers and databases are its own). 2: this machine has two cores.
TEST_PROCESSES ?= 2

.PHONY: run test lint typecheck install sdk-node docs bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The official stripe-node SDK that tests/e2e/test_stripe_node.py drives, at the version
# package-lock.json pins (npm ci: from the npm registry, at install time only). Without npm
# that test is skipped, or fails in CI.
$(NODE_SDK)/node_modules/.package-lock.json: $(NODE_SDK)/package-lock.json $(NODE_SDK)/package.json
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --prefix $(NODE_SDK) --no-audit --no-fund --loglevel=error; \
	else \
		echo "npm not found: tests/e2e/test_stripe_node.py will be skipped (and fail in CI)"; \
	fi

sdk-node: $(NODE_SDK)/node_modules/.package-lock.json

run: $(STAMP)
	$(BIN)/paymux migrate
	$(BIN)/paymux serve

# pytest with bytecode caching on even where the environment sets PYTHONDONTWRITEBYTECODE:
# otherwise each xdist process rewrites every test module's asserts (~13 s of CPU each) and
# every `paymux serve`/CLI subprocess compiles src/ again (~0.5 s each, hundreds of them).
# The caches are __pycache__/ directories (git-ignored), checked against each source's mtime.
test: $(STAMP) sdk-node
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/pytest -q -n $(TEST_PROCESSES) --dist loadfile --no-loadscope-reorder --durations=40 $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

docs: $(STAMP)
	$(BIN)/python -m paymux.gateways.errors_doc > docs/errors.md

bench: $(STAMP)
	$(BIN)/python bench/payments.py

clean:
	rm -rf $(VENV) $(NODE_SDK)/node_modules paymux.db paymux.db-* paymux-sandbox.db*
