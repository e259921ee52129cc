# The commands README.md names. Everything runs from a virtual environment in .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# MLflow 2 in its own venv (it needs SQLAlchemy < 2.1): the 2.x server of tests/test_mlflow2.py.
MLFLOW2_VENV := .venv-mlflow2
MLFLOW2_STAMP := $(MLFLOW2_VENV)/.installed

# Azurite, the Azure Blob Storage emulator of tests/test_stores.py, from npm (3.35 is the
# last that runs on Debian 12's Node.js 18). Kept outside the clone, so that later clones on
# this machine reuse it; the stamp names the version.
AZURITE_DIR ?= $(HOME)/.cache/mlflow-exim/azurite
AZURITE_VERSION := 3.35.0
AZURITE_STAMP := $(AZURITE_DIR)/.installed-$(AZURITE_VERSION)

.PHONY: install mlflow2 azurite test test-fast demo lint docs docs-check bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

mlflow2: $(MLFLOW2_STAMP)

$(MLFLOW2_STAMP): tests/mlflow2-requirements.txt
	$(PYTHON) -m venv $(MLFLOW2_VENV)
	$(MLFLOW2_VENV)/bin/pip install --quiet --upgrade pip
	$(MLFLOW2_VENV)/bin/pip install --quiet -r tests/mlflow2-requirements.txt
	touch $(MLFLOW2_STAMP)

azurite: $(AZURITE_STAMP)

$(AZURITE_STAMP):
	mkdir -p $(AZURITE_DIR)
	npm install --prefix $(AZURITE_DIR) --no-audit --no-fund --loglevel=error \
		azurite@$(AZURITE_VERSION)
	touch $(AZURITE_STAMP)

# Two test processes (pytest-xdist), a test file each at a time: each starts its own
# servers, and while one waits on a server (a restart, a lease, a backoff) the other runs.
TEST_WORKERS ?= 2

test: install mlflow2 azurite
	AZURITE_DIR=$(AZURITE_DIR) $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile \
		$(PYTEST_ARGS)

# The unit tests alone (tests/unit: no server, no store), for the inner loop.
test-fast: install
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

demo: install
	$(BIN)/python examples/demo.py demo-work

# Speed and memory against the reference tool and the servers' CPU (benchmarks/suite.py);
# BENCH_ARGS=--quick for a run of a few minutes. The reference tool's venv is kept in
# bench-work/ between runs.
BENCH_ARGS ?=
bench: install
	$(BIN)/python benchmarks/suite.py --reference-venv bench-work/reference-venv $(BENCH_ARGS)

lint: install docs-check
	$(BIN)/ruff check mlflow_exim tests examples benchmarks
	$(BIN)/lint-imports

# docs/CLI.md is generated from the commands' --help; lint (and so CI) fails when it is stale.
docs: install
	$(BIN)/cog -r docs/CLI.md

docs-check: install
	$(BIN)/cog --check docs/CLI.md || (echo "docs/CLI.md is stale: run make docs" >&2; exit 1)

clean:
	rm -rf $(VENV) $(MLFLOW2_VENV) demo-work .pytest_cache
