"""Shared fixtures: a tiny IMDB-shaped data folder, the real data folder, and the backend."""

import gzip
import json
import os
import random
from pathlib import Path

import pytest

# Keras reads the backend once, at its first import; the tests use TensorFlow, the default.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

POSITIVE_WORDS = ["great", "wonderful", "excellent", "moving", "brilliant", "loved"]
NEGATIVE_WORDS = ["awful", "boring", "terrible", "dull", "waste", "hated"]
NEUTRAL_WORDS = ["the", "film", "a", "movie", "plot", "actor", "scene", "and", "it", "was", "story"]


def synthetic_reviews(count: int, seed: int) -> list[tuple[str, int]]:
    """Reviews whose label is readable from their words, so a model can learn them in an epoch or two."""
    generator = random.Random(seed)
    rows = []
    for index in range(count):
        label = index % 2
        cues = POSITIVE_WORDS if label else NEGATIVE_WORDS
        words = [generator.choice(NEUTRAL_WORDS) for _ in range(generator.randint(5, 30))]
        for _ in range(3):
            words.insert(generator.randrange(len(words) + 1), generator.choice(cues))
        rows.append((" ".join(words) + ". <br /><br />The end!", label))
    generator.shuffle(rows)
    return rows


def write_tsv(path: Path, rows: list[tuple[str, int]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8", newline="\n") as handle:
        handle.write("text\tlabel\n")
        for text, label in rows:
            handle.write(f"{text}\t{label}\n")


@pytest.fixture
def tiny_data_dir(tmp_path: Path) -> Path:
    """A data folder in the shared TSV layout: imdb/train.tsv.gz (400 rows) and imdb/test.tsv.gz (200 rows)."""
    root = tmp_path / "data"
    write_tsv(root / "imdb" / "train.tsv.gz", synthetic_reviews(400, seed=1))
    write_tsv(root / "imdb" / "test.tsv.gz", synthetic_reviews(200, seed=2))
    return root


@pytest.fixture
def slow_data_dir(tmp_path: Path) -> Path:
    """1,200 training rows: with small batches an epoch lasts long enough to be killed in the middle of."""
    root = tmp_path / "slow_data"
    write_tsv(root / "imdb" / "train.tsv.gz", synthetic_reviews(1200, seed=1))
    write_tsv(root / "imdb" / "test.tsv.gz", synthetic_reviews(100, seed=2))
    return root


@pytest.fixture
def real_data_dir() -> Path:
    """The real data folder (RNNBENCH_DATA_DIR, which CI sets to ../shared/data)."""
    location = os.environ.get("RNNBENCH_DATA_DIR")
    if not location or not (Path(location) / "imdb" / "train.tsv.gz").exists():
        pytest.skip("real IMDB data not available: set RNNBENCH_DATA_DIR to a folder holding imdb/train.tsv.gz")
    return Path(location)


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # No test may write to the user's runs/ or Keras cache, or depend on where it is started.
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setenv("RNNBENCH_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("RNNBENCH_CACHE_DIR", str(tmp_path / "cache"))
    # Nor log to an MLflow server that the user's shell names (tests/test_mlflow.py starts its own).
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("RNNBENCH_MLFLOW_PARENT_RUN_ID", raising=False)


# What differs between two runs of the same config that train identically: how long each epoch took.
TIMING_KEYS = ("seconds", "started_at", "ended_at")


def untimed(lines: list[str]) -> list[dict]:
    """History lines (JSON) without their timing keys, to compare two runs' epochs."""
    return [{key: value for key, value in json.loads(line).items() if key not in TIMING_KEYS} for line in lines]


def untimed_history(run_dir: Path) -> list[dict]:
    """A run folder's history.jsonl without its timing keys."""
    return untimed((Path(run_dir) / "history.jsonl").read_text().splitlines())
