import time
from pathlib import Path

import pytest

from rnnbench import sweep
from rnnbench.config import ConfigError
from rnnbench.sweep import expand

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str, name: str = "sweep.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_variants_times_grid_times_seeds(tmp_path):
    path = write(
        tmp_path,
        """
model: {cell: gru}
train: {seeds: [4, 5]}
sweep:
  variants:
    small: {model.units: 8}
    deep: {model.layers: 2, model.bidirectional: true}
  grid:
    model.embedding_dim: [16, 32]
""",
    )
    configs = expand(path)
    assert [(c.name, c.train.seed) for c in configs] == [
        ("sweep-small-embedding_dim16", 4),
        ("sweep-small-embedding_dim16", 5),
        ("sweep-small-embedding_dim32", 4),
        ("sweep-small-embedding_dim32", 5),
        ("sweep-deep-embedding_dim16", 4),
        ("sweep-deep-embedding_dim16", 5),
        ("sweep-deep-embedding_dim32", 4),
        ("sweep-deep-embedding_dim32", 5),
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
    assert [(c.name, c.train.seed, c.model.units) for c in configs] == [
        ("plain", 10, 7),
        ("plain", 11, 7),
        ("plain", 12, 7),
    ]
    assert [c.train.seed for c in expand(path)] == [10]


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "sweep:\n  gird: {model.cell: [gru]}\n",
            "unknown key sweep.gird (allowed: grid, variants) (did you mean 'grid'?)",
        ),
        (
            "sweep:\n  grid: {model.cel: [gru, lstm]}\n",
            "sweep.grid: unknown key model.cel (allowed: bidirectional, cell, conv_filters, conv_widths, dense_units, dropout, embedding_dim, embedding_dropout, embedding_trainable, layers, lm_epochs, mask_padding, ngram_weighting, ngrams, pooling, pretrained_embedding, pretrained_encoder, recurrent_dropout, recurrent_input_dropout, units) (did you mean 'cell'?)",
        ),
        ("sweep:\n  grid: {model.cell: gru}\n", "sweep.grid.model.cell must be a non-empty list of values, got 'gru'"),
        (
            "sweep:\n  grid: {model.cell: [gru, lstn]}\n",
            "sweep.grid: model.cell='lstn' is not one of ann, cnn, embedding, gru, lstm, simple_rnn (did you mean 'lstm'?)",
        ),
        (
            "sweep:\n  variants: {deep: {model.layers: 0}}\n",
            "sweep.variants.deep: model.layers=0 is out of range (allowed: >= 1 and <= 8)",
        ),
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
    assert counts == {"lecture_table": 21, "embedding_dims": 15, "cells": 18, "chatbot": 24, "hold_out": 6}
    table = expand(ROOT / "configs" / "sweeps" / "lecture_table.yaml")
    assert sorted({config.name for config in table}) == sorted(
        f"lecture_table-{row}" for row in ("ann", "pretrained", "embedding", "simple_rnn", "lstm", "gru", "gru2")
    )
    assert all(config.data.maxlen == 20 for config in table)


def error_of(path: Path, *arguments, **options) -> str:
    with pytest.raises(ConfigError) as caught:
        expand(path, *arguments, **options)
    message = str(caught.value)
    assert "\n" not in message and len(message) < 300
    return message.replace(str(path), "sweep.yaml")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("name:\nmodel: {cell: gru}\n", "name=None is not a string"),
        ("name: 5\nsweep:\n  variants: {small: {model.units: 8}}\n", "name=5 is not a string"),
        ("name: [a, b]\n", "name=['a', 'b'] is not a string"),
    ],
)
def test_a_name_that_is_not_a_string_is_one_line(tmp_path, text, expected):
    assert error_of(write(tmp_path, text)) == f"sweep.yaml: {expected}"


def test_seeds_from_seed_count_are_validated_like_written_ones(tmp_path):
    near_the_end = write(tmp_path, "train: {seed: 2147483646}\n")
    assert error_of(near_the_end, seed_count=3) == (
        "--seeds 3 from train.seed=2147483646: train.seeds[2]=2147483648 is out of range (allowed: >= 0 and <= 2147483647)"
    )
    assert [config.train.seed for config in expand(near_the_end, seed_count=2)] == [2147483646, 2147483647]


@pytest.mark.parametrize(
    "text, overrides, expected",
    [
        (
            "sweep:\n  variants:\n    small: {name: probe, model.units: 8}\n    large: {name: probe, model.units: 64}\n",
            [],
            "variant 'small' and variant 'large' are both named 'probe' but differ in settings; each needs a name of its own",
        ),
        (
            "sweep:\n  variants:\n    small: {model.units: 8}\n    large: {model.units: 64}\n",
            ["name=probe"],
            "variant 'small' and variant 'large' are both named 'probe' but differ in settings; each needs a name of its own",
        ),
        (
            # Both file names become the name part 'a_b.txt'.
            "sweep:\n  grid:\n    model.pretrained_embedding: ['a b.txt', 'a_b.txt']\n",
            [],
            "grid point model.pretrained_embedding='a b.txt' and grid point model.pretrained_embedding='a_b.txt' are both named "
            "'sweep-a_b.txt' but differ in settings; each needs a name of its own",
        ),
        (
            "model: {cell: gru}\nsweep:\n  variants:\n    default: {}\n    gru: {model.cell: gru}\n",
            [],
            "variant 'default' and variant 'gru' describe the identical run (seed 1); remove one of them",
        ),
        (
            "sweep:\n  variants:\n    a: {train.seeds: [1, 2]}\n    b: {train.seeds: [2, 3]}\n",
            [],
            "variant 'a' and variant 'b' describe the identical run (seed 2); remove one of them",
        ),
        (
            "sweep:\n  grid:\n    train.learning_rate: [0.01, 1e-3, 0.001]\n",
            [],
            "grid point train.learning_rate=0.001 comes twice, as the identical run (seed 1); remove one of them",
        ),
    ],
)
def test_runs_that_would_be_confused_are_refused(tmp_path, text, overrides, expected):
    assert error_of(write(tmp_path, text), overrides) == f"sweep.yaml: {expected}"


def test_variants_with_the_same_settings_under_other_seeds_are_fine(tmp_path):
    path = write(tmp_path, "sweep:\n  variants:\n    a: {train.seeds: [1, 2]}\n    b: {train.seeds: [3]}\n")
    assert [(config.name, config.train.seed) for config in expand(path)] == [
        ("sweep-a", 1),
        ("sweep-a", 2),
        ("sweep-b", 3),
    ]


def numbers(count: int, start: int = 1) -> str:
    return "[" + ", ".join(str(number) for number in range(start, start + count)) + "]"


@pytest.mark.parametrize(
    "text, options, expected",
    [
        (
            f"train: {{seeds: {numbers(100)}}}\nsweep:\n  variants: {{a: {{}}, b: {{}}, c: {{}}, d: {{}}}}\n  grid:\n    model.units: {numbers(100)}\n",
            {},
            "the sweep expands to 40,000 runs (4 variants x 100 grid points x 100 seeds); the limit is 2,000 — split it into several configs",
        ),
        (
            f"sweep:\n  grid:\n    model.units: {numbers(30)}\n    model.embedding_dim: {numbers(30)}\n",
            {"seed_count": 3},
            "the sweep expands to 2,700 runs (1 variant x 900 grid points x 3 seeds); the limit is 2,000 — split it into several configs",
        ),
        (
            "sweep:\n  grid:\n" + "".join(f"    model.units{index}: {numbers(10)}\n" for index in range(40)),
            {},
            "the sweep expands to about 10^40 runs (1 variant x about 10^40 grid points x 1 seed); the limit is 2,000 — split it into several configs",
        ),
        (
            "sweep:\n  variants:\n    once: {train.seeds: [1]}\n"
            + "".join(f"    many{index}: {{train.seeds: {numbers(100)}}}\n" for index in range(20)),
            {},
            "the sweep expands to 2,001 runs (21 variants x 1 grid point, 1 to 100 seeds each); the limit is 2,000 — split it into several configs",
        ),
    ],
)
def test_a_sweep_of_too_many_runs_is_refused_before_any_is_built(tmp_path, monkeypatch, text, options, expected):
    path = write(tmp_path, text)

    def no_validation(*arguments, **keywords):
        raise AssertionError("a run was built before the sweep was counted")

    monkeypatch.setattr(sweep, "config_from_mapping", no_validation)
    started = time.perf_counter()
    assert error_of(path, **options) == f"sweep.yaml: {expected}"
    # The patch above proves nothing is built; the time only guards against a hang, loosely.
    assert time.perf_counter() - started < 5.0


def test_the_largest_sweep_allowed_expands(tmp_path):
    path = write(tmp_path, f"train: {{seeds: {numbers(20)}}}\nsweep:\n  grid:\n    model.units: {numbers(100)}\n")
    assert len(expand(path)) == 2_000
