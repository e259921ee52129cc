# The commands README.md names. Everything runs from a virtual environment in .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test demo lint docs docs-check bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: install
	$(BIN)/python examples/demo.py demo-work

# Speed and memory against the reference tool; BENCH_ARGS e.g. "--runs 20 --points 100".
# The reference tool's venv is kept in bench-work/ between runs.
BENCH_ARGS ?=
bench: install
	$(BIN)/python benchmarks/compare.py --reference-venv bench-work/reference-venv $(BENCH_ARGS)

lint: install docs-check
	$(BIN)/ruff check mlflow_exim tests examples benchmarks

# docs/CLI.md is generated from the commands' --help; lint (and so CI) fails when it is stale.
docs: install
	$(BIN)/cog -r docs/CLI.md

docs-check: install
	$(BIN)/cog --check docs/CLI.md || (echo "docs/CLI.md is stale: run make docs" >&2; exit 1)

clean:
	rm -rf $(VENV) demo-work .pytest_cache
