"""The verdict's thorough mode: a multi-bootstrap over seeds and test rows (Sellam et al. 2022).

The t-tests of `verdict.py` see the spread over seeds only: every run is scored on the same test
rows, so the noise of having drawn those rows (±0.36 points on IMDB's 25,000, ±1.8 on a 1,821-row
test split) is invisible to them. The multi-bootstrap resamples both. Each replicate draws the
test rows with replacement (the same draw for every run, since every run scored the same rows)
and each config's seeds with replacement (the same draw for both configs of a pair when their
seeds are the same, as the paired t-test pairs them), and takes the difference of the two mean
accuracies. From the replicates:

- the intervals are their percentiles;
- the p-value of a zero difference is the share of replicates, centred on the observed
  difference, at least as far from it as the observed difference is from zero (two-sided);
- the equivalence p-value is the larger of the two one-sided shares beyond ±δ, centred likewise.

It reads each run's `test_predictions.npz` (runs recorded before those were saved can't take part),
so it is asked for (`compare --bootstrap N`), never on by default. The smallest p-value N
replicates can give is 1/(N + 1): a family of many tests needs N in the thousands.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from rnnbench.errors import RnnbenchError
from rnnbench.record import RunRecord
from rnnbench.verdict import Group, TDifference, t_difference

REPLICATES = 10_000
# Replicates are drawn in blocks of this many, to bound memory (a block of rows per replicate).
BLOCK = 250


class BootstrapError(RnnbenchError):
    """A multi-bootstrap that can't be made from the runs given, in one line."""


@dataclass(frozen=True)
class BootstrapDifference:
    """A difference of mean test accuracies with its multi-bootstrap replicates."""

    method: str
    estimate: float
    replicates: Any  # one difference per replicate
    n_first: int
    n_second: int
    paired: bool
    spread: float  # as the t-test's: what a rerun plans from

    def p_value(self) -> Optional[float]:
        if self.estimate == 0.0:
            return 1.0
        beyond = np.count_nonzero(np.abs(self.replicates - self.estimate) >= abs(self.estimate))
        return float((1 + beyond) / (1 + len(self.replicates)))

    def interval(self, level: float) -> tuple[float, float]:
        low, high = np.quantile(self.replicates, [0.5 - level / 2, 0.5 + level / 2])
        return float(low), float(high)

    def equivalence_p(self, delta: float) -> Optional[float]:
        centred = self.replicates - self.estimate
        below = np.count_nonzero(centred >= self.estimate + delta)  # null: the difference is -delta or less
        above = np.count_nonzero(centred <= self.estimate - delta)  # null: the difference is delta or more
        return float((1 + max(below, above)) / (1 + len(self.replicates)))


class MultiBootstrap:
    """Resampled test accuracies of every run of one test split, shared by all pairs of a family.

    `correct` maps a run id to its per-row correctness on the test split (`RunDirectory.read_test_correct`).
    """

    def __init__(self, correct: dict[str, Any], replicates: int = REPLICATES, seed: int = 0):
        if replicates < 1:
            raise BootstrapError(f"--bootstrap must be a number of replicates, 1 or more, got {replicates}")
        self.correct = correct
        self.replicates = replicates
        self.seed = seed
        self._accuracies: dict[int, tuple[list[str], Any]] = {}

    def difference(self, first: Group, second: Group, key: str) -> BootstrapDifference:
        """The pair's multi-bootstrap (a `verdict.DifferenceOf`); `key` must be the test accuracy."""
        t_test: TDifference = t_difference(first, second, key)
        if key != "test_accuracy":
            raise BootstrapError(
                "--bootstrap resamples test rows, so it needs the test outcome (drop --outcome validation)"
            )
        first_runs, second_runs = self._runs(first), self._runs(second)
        rows = {len(self.correct[run]) for run in first_runs + second_runs}
        if len(rows) != 1:
            raise BootstrapError(
                f"{first.name} and {second.name} were scored on test splits of different sizes ({', '.join(map(str, sorted(rows)))} rows): their rows can't be resampled together"
            )
        run_ids, accuracies = self._resampled(rows.pop())
        column = {run: index for index, run in enumerate(run_ids)}
        first_seeds = [record.seed for record in first.records]
        second_seeds = [record.seed for record in second.records]
        paired = t_test.paired
        generator = np.random.default_rng([self.seed, 1])
        if paired:
            # The same seeds, drawn together: position i of both lists is the same seed.
            order = sorted(range(len(first_seeds)), key=first_seeds.__getitem__)
            second_order = sorted(range(len(second_seeds)), key=second_seeds.__getitem__)
            first_runs = [first_runs[i] for i in order]
            second_runs = [second_runs[i] for i in second_order]
            draws = generator.integers(0, len(first_runs), size=(self.replicates, len(first_runs)))
            second_draws = draws
        else:
            draws = generator.integers(0, len(first_runs), size=(self.replicates, len(first_runs)))
            second_draws = generator.integers(0, len(second_runs), size=(self.replicates, len(second_runs)))
        first_matrix = accuracies[:, [column[run] for run in first_runs]]
        second_matrix = accuracies[:, [column[run] for run in second_runs]]
        rows_index = np.arange(self.replicates)[:, None]
        replicates = first_matrix[rows_index, draws].mean(axis=1) - second_matrix[rows_index, second_draws].mean(axis=1)
        estimate = statistics.fmean(float(self.correct[run].mean()) for run in first_runs) - statistics.fmean(
            float(self.correct[run].mean()) for run in second_runs
        )
        method = f"multi-bootstrap{' (paired seeds)' if paired else ''}, {self.replicates:,} replicates"
        return BootstrapDifference(
            method, estimate, replicates, len(first_runs), len(second_runs), paired, t_test.spread
        )

    def _runs(self, group: Group) -> list[str]:
        missing = [record.run_id for record in group.records if record.run_id not in self.correct]
        if missing:
            raise BootstrapError(
                f"{group.name}: run {missing[0]} has no saved test predictions (recorded before they were kept);"
                " train it again with --force, or compare without --bootstrap"
            )
        return [str(record.run_id) for record in group.records]

    def _resampled(self, rows: int) -> tuple[list[str], Any]:
        """Every run on a `rows`-row test split, its accuracy in each replicate (replicates x runs):
        the same resampled rows for every run, drawn once per split size."""
        if rows not in self._accuracies:
            run_ids = [run for run, correct in self.correct.items() if len(correct) == rows]
            matrix = np.stack([self.correct[run] for run in run_ids]).astype(np.float32)  # runs x rows
            generator = np.random.default_rng([self.seed, 0, rows])
            accuracies = np.empty((self.replicates, len(run_ids)))
            for start in range(0, self.replicates, BLOCK):
                count = min(BLOCK, self.replicates - start)
                weights = np.stack(
                    [np.bincount(generator.integers(0, rows, rows), minlength=rows) for _ in range(count)]
                ).astype(np.float32)
                accuracies[start : start + count] = (weights @ matrix.T) / rows
            self._accuracies[rows] = (run_ids, accuracies)
        return self._accuracies[rows]


def from_runs(records: list[RunRecord], runs_dir: Any, replicates: int = REPLICATES) -> MultiBootstrap:
    """A multi-bootstrap over `records`' saved test predictions, read from their run folders."""
    from pathlib import Path

    from rnnbench.results import run_directory

    correct = {}
    for record in records:
        run = run_directory(Path(runs_dir), record)
        found = run.read_test_correct()
        if found is not None:
            correct[run.run_id] = found
    return MultiBootstrap(correct, replicates)
