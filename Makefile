# rnnbench: `make run` sets up .venv/ and trains configs/gru2.yaml on IMDB; `make test` sets up and runs the tests.
# Point RNNBENCH_DATA_DIR at a folder holding imdb/train.tsv.gz (or aclImdb/) to use a local copy.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXTRAS := test,ko,glove,word2vec,tune,jax,torch,mlflow,ray

.PHONY: setup run test test-fast lint format lock bench clean

setup: $(BIN)/rnnbench

# Re-installs only when pyproject.toml or constraints.txt changes, so `make setup` is safe to run
# again. constraints.txt pins every package to the version CI tested (refresh: `make lock`).
$(BIN)/rnnbench: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[$(EXTRAS)]'
	touch $@

run: setup
	$(BIN)/rnnbench run configs/gru2.yaml

# The full suite: what CI runs; about 12 minutes on 2 CPU cores.
test: setup
	$(BIN)/python -m pytest

# The tests not marked slow: under 90 s on 2 CPU cores; run these while changing code, `make test` before a commit lands.
test-fast: setup
	$(BIN)/python -m pytest -m "not slow" -q

# ruff, configured in pyproject.toml: CI fails on a lint finding or an unformatted file.
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Newest versions that pyproject.toml allows, installed into a scratch venv and written to
# constraints.txt; then run `make test` and commit the file if it passes.
lock:
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet --upgrade pip
	.venv-lock/bin/python -m pip install --quiet -e '.[$(EXTRAS)]'
	{ sed -n '1,/^[^#]/{/^#/p}' constraints.txt; .venv-lock/bin/python -m pip freeze --exclude-editable | grep -v '^rnnbench'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf .venv-lock

# All five benchmarks, about 9 minutes on 2 CPU cores; figures and how to read them: docs/performance.md.
bench: setup
	$(BIN)/python scripts/bench_startup.py --runs-dir runs
	$(BIN)/python scripts/bench_tokenize.py
	$(BIN)/python scripts/bench_overhead.py --skip-rnnbench-tensorflow
	$(BIN)/python scripts/bench_backends.py --repeats 1
	$(BIN)/python scripts/bench_multi_hot.py

clean:
	rm -rf $(VENV) .venv-lock *.egg-info .pytest_cache
