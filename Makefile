# Trailkeep: `make run` serves the demo on SQLite; `make test` installs what the tests need and runs them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test stress lint typecheck test-unit test-integration bench bench-smoke lock system-deps clean

install: $(STAMP)

# Bytecode is written at install: with PYTHONDONTWRITEBYTECODE set (as on these machines)
# every process would otherwise compile FastAPI, SQLAlchemy and pydantic from source,
# about a second per CLI call and per server the tests start.
$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==0.13.8
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	$(BIN)/python -m compileall -q src
	touch $(STAMP)

run: install
	$(BIN)/trailkeep serve --demo --host 127.0.0.1 --port 8000 --data-dir ./data

system-deps:
	bash scripts/install-system-deps.sh

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy

# Two pytest-xdist workers (TEST_WORKERS=n to change): most of the suite's time is servers and
# processes starting, which two cores run side by side. --dist loadgroup keeps each module that
# starts servers of its own on one worker, so they start once (tests/conftest.py).
TEST_WORKERS ?= 2

test: install system-deps lint typecheck
	$(BIN)/python -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadgroup

# The fault suite's long variants (tests/faults/, docs/security.md "Fault suite"): more rounds of
# kill -9, disk full and PostgreSQL restarts, more load per round, and far more schemathesis
# examples. One worker: the faults are the load, and two at once would measure the machine.
stress: install system-deps
	TRAILKEEP_STRESS=1 $(BIN)/python -m pytest -q -p no:cacheprovider tests/faults

bench: install system-deps
	command -v wrk >/dev/null || WITH_BENCH=1 bash scripts/install-system-deps.sh
	$(BIN)/python -m bench

bench-smoke: install
	$(BIN)/python -m bench --smoke

lock:
	$(BIN)/uv pip compile pyproject.toml --extra server --extra dev --generate-hashes --python-version 3.11 -o requirements.lock

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
