"""The verdict's multi-bootstrap over seeds and test rows (compare --bootstrap)."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from rnnbench import results
from rnnbench.bootstrap import BootstrapError, MultiBootstrap
from rnnbench.cli import main
from rnnbench.record import RunRecord
from rnnbench.verdict import TEST_KEY, group_runs, judge


def index_runs(runs_dir, name: str, correct_by_seed: dict[int, np.ndarray]) -> None:
    """Completed runs of config `name`, one per seed, with saved test predictions giving `correct`."""
    for seed, correct in correct_by_seed.items():
        run = results.create_run(runs_dir, name, f"{name}-{seed}")
        labels = np.arange(len(correct)) % 2
        predicted = np.where(correct, labels, 1 - labels)
        run.write_test_predictions(predicted.astype(np.float32), predicted, labels)
        record = {
            "name": name,
            "parameters": 1,
            "backend": "jax",
            "device": "CPU: test",
            "data": {"dataset": "imdb"},
            "config": {"name": name, "model": {"cell": name}, "train": {"seed": seed, "seeds": None}},
            "result": {
                "best_val_accuracy": float(correct.mean()),
                "test_accuracy": float(correct.mean()),
                "best_epoch": 1,
                "test_confusion": [[len(correct) // 2, 0], [0, len(correct) - len(correct) // 2]],
            },
        }
        results.index_run(runs_dir, run.run_id, name, "completed", record)


def test_identical_predictions_under_three_names_are_equivalent(tmp_path):
    generator = np.random.default_rng(1)
    by_seed = {seed: generator.random(4000) < 0.85 for seed in (1, 2, 3)}
    for name in ("a", "b", "c"):
        index_runs(tmp_path, name, by_seed)
    outcome = CliRunner().invoke(
        main, ["compare", "--runs-dir", str(tmp_path), "--bootstrap", "2000", "--format", "json"]
    )
    assert outcome.exit_code == 0, outcome.output
    [family] = json.loads(outcome.output)["verdict"]
    assert [pair["answer"] for pair in family["comparisons"]] == ["equivalent"] * 3
    assert {pair["test"] for pair in family["comparisons"]} == {"multi-bootstrap (paired seeds), 2,000 replicates"}
    assert all(pair["difference"] == 0.0 and pair["p"] == 1.0 for pair in family["comparisons"])


def test_the_bootstrap_sees_test_row_noise_that_seeds_do_not():
    """Two configs whose every seed scores the same rows alike, one 1.5 points better on 1,800 rows:
    the t-test sees no spread at all (untestable); the bootstrap weighs the difference against the
    test rows' own noise (about ±1.1 points on a difference of two accuracies there)."""
    generator = np.random.default_rng(5)
    rows = 1800
    base = generator.random(rows) < 0.80
    better = base.copy()
    better[np.flatnonzero(~base)[:27]] = True  # 27 more rows right: +1.5 points
    records, correct = [], {}
    for name, values in (("better", better), ("base", base)):
        for seed in (1, 2, 3):
            run_id = f"{name}-{seed}"
            correct[run_id] = values
            records.append(
                RunRecord.from_json(
                    {
                        "name": name,
                        "run_id": run_id,
                        "data": {"dataset": "d"},
                        "config": {"name": name, "model": {"cell": "gru"}, "train": {"seed": seed}},
                        "result": {TEST_KEY: float(values.mean()), "best_val_accuracy": 0.5},
                    }
                )
            )
    groups = group_runs(records, TEST_KEY)
    [t_comparison] = judge(groups)[0].comparisons
    assert t_comparison.difference.p_value() is None and t_comparison.answer == "undecided"
    bootstrap = MultiBootstrap(correct, replicates=4000)
    [comparison] = judge(groups, difference_of=bootstrap.difference)[0].comparisons
    difference = comparison.difference
    assert difference.estimate == pytest.approx(27 / rows)
    low, high = difference.interval(0.95)
    # Only the discordant rows move a paired difference: its interval is about ±2 x sqrt(27)/1800.
    assert low > 0 and high - low == pytest.approx(2 * 1.96 * np.sqrt(27) / rows, rel=0.15)
    assert comparison.answer == "better" and difference.p_value() < 0.001


def test_runs_without_saved_predictions_are_one_line(tmp_path):
    generator = np.random.default_rng(2)
    index_runs(tmp_path, "a", {seed: generator.random(100) < 0.8 for seed in (1, 2)})
    index_runs(tmp_path, "b", {seed: generator.random(100) < 0.8 for seed in (1, 2)})
    (tmp_path / "b-2" / "test_predictions.npz").unlink()
    outcome = CliRunner().invoke(main, ["compare", "--runs-dir", str(tmp_path), "--bootstrap", "100"])
    assert outcome.exit_code == 1
    assert outcome.output == (
        "Error: b: run b-2 has no saved test predictions (recorded before they were kept); train it again with --force,"
        " or compare without --bootstrap\n"
    )
    validation = CliRunner().invoke(
        main, ["compare", "--runs-dir", str(tmp_path), "--bootstrap", "100", "--outcome", "validation"]
    )
    assert (
        validation.exit_code == 2
        and validation.output.splitlines()[-1] == "Error: --bootstrap resamples test rows, so it needs --outcome test"
    )
    with pytest.raises(BootstrapError, match="number of replicates"):
        MultiBootstrap({}, replicates=0)
