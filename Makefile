# rnnbench: `make run` sets up .venv/ and trains configs/gru2.yaml on IMDB; `make test` sets up and runs the tests.
# Point RNNBENCH_DATA_DIR at a folder holding imdb/train.tsv.gz (or aclImdb/) to use a local copy.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup run test bench clean

setup: $(BIN)/rnnbench

# Re-installs only when pyproject.toml changes, so `make setup` is safe to run again.
$(BIN)/rnnbench: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,ko,glove,word2vec,tune,jax,torch,mlflow,ray]'
	touch $@

run: setup
	$(BIN)/rnnbench run configs/gru2.yaml

test: setup
	$(BIN)/python -m pytest

# All five benchmarks, about 9 minutes on 2 CPU cores; figures and how to read them: docs/performance.md.
bench: setup
	$(BIN)/python scripts/bench_startup.py --runs-dir runs
	$(BIN)/python scripts/bench_tokenize.py
	$(BIN)/python scripts/bench_overhead.py --skip-rnnbench-tensorflow
	$(BIN)/python scripts/bench_backends.py --repeats 1
	$(BIN)/python scripts/bench_multi_hot.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
