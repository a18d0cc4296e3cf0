from pathlib import Path

import pytest

from rnnbench.config import ConfigError
from rnnbench.sweep import expand

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str, name: str = "sweep.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_variants_times_grid_times_seeds(tmp_path):
    path = write(tmp_path, """
model: {cell: gru}
train: {seeds: [4, 5]}
sweep:
  variants:
    small: {model.units: 8}
    deep: {model.layers: 2, model.bidirectional: true}
  grid:
    model.embedding_dim: [16, 32]
""")
    configs = expand(path)
    assert [(c.name, c.train.seed) for c in configs] == [
        ("sweep-small-embedding_dim16", 4), ("sweep-small-embedding_dim16", 5),
        ("sweep-small-embedding_dim32", 4), ("sweep-small-embedding_dim32", 5),
        ("sweep-deep-embedding_dim16", 4), ("sweep-deep-embedding_dim16", 5),
        ("sweep-deep-embedding_dim32", 4), ("sweep-deep-embedding_dim32", 5),
    ]
    assert configs[0].model.units == 8 and configs[0].model.layers == 1
    assert configs[-1].model.layers == 2 and configs[-1].model.bidirectional and configs[-1].model.embedding_dim == 32
    assert all(config.train.seeds is None for config in configs)
    # Runs of one point differ only by seed.
    assert configs[0].group_fingerprint() == configs[1].group_fingerprint() != configs[2].group_fingerprint()
    assert configs[0].fingerprint() != configs[1].fingerprint()


def test_plain_config_with_seed_count_and_overrides(tmp_path):
    path = write(tmp_path, "model: {cell: lstm}\ntrain: {seed: 10}\n", "plain.yaml")
    configs = expand(path, ["model.units=7"], seed_count=3)
    assert [(c.name, c.train.seed, c.model.units) for c in configs] == [("plain", 10, 7), ("plain", 11, 7), ("plain", 12, 7)]
    assert [c.train.seed for c in expand(path)] == [10]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("sweep:\n  gird: {model.cell: [gru]}\n", "unknown key sweep.gird (allowed: grid, variants) (did you mean 'grid'?)"),
        ("sweep:\n  grid: {model.cel: [gru, lstm]}\n", "sweep.grid: unknown key model.cel (allowed: bidirectional, cell, dense_units, dropout, embedding_dim, embedding_trainable, layers, pretrained_embedding, units) (did you mean 'cell'?)"),
        ("sweep:\n  grid: {model.cell: gru}\n", "sweep.grid.model.cell must be a non-empty list of values, got 'gru'"),
        ("sweep:\n  grid: {model.cell: [gru, lstn]}\n", "sweep.grid: model.cell='lstn' is not one of ann, embedding, gru, lstm, simple_rnn (did you mean 'lstm'?)"),
        ("sweep:\n  variants: {deep: {model.layers: 0}}\n", "sweep.variants.deep: model.layers=0 is out of range (allowed: >= 1 and <= 8)"),
        ("sweep:\n  variants: {deep: 2}\n", "sweep.variants.deep must map dotted keys to values, got 2"),
        ("sweep: [1, 2]\n", "sweep must be a mapping with keys grid, variants"),
        ("train: {seeds: []}\n", "train.seeds=[] must hold at least 1 value"),
        ("train: {seeds: 3}\n", "train.seeds=3 is not a list"),
    ],
)
def test_sweep_errors(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        expand(path)
    assert str(caught.value) == f"{path}: {expected}"


def test_shipped_sweeps():
    counts = {path.stem: len(expand(path)) for path in (ROOT / "configs" / "sweeps").glob("*.yaml")}
    assert counts == {"lecture_table": 21, "embedding_dims": 15, "cells": 18, "chatbot": 18}
    table = expand(ROOT / "configs" / "sweeps" / "lecture_table.yaml")
    assert sorted({config.name for config in table}) == sorted(
        f"lecture_table-{row}" for row in ("ann", "pretrained", "embedding", "simple_rnn", "lstm", "gru", "gru2")
    )
    assert all(config.data.maxlen == 20 for config in table)
