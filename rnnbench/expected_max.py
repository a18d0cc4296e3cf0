"""The expected best validation accuracy after k trials, from a sample of independent random
trials (Dodge et al. 2019, "Show Your Work: Improved Reporting of Experimental Results").

In: per candidate, the values (best validation accuracies) of N trials whose settings were drawn
at random from the search space, each independently of the others. Out: for k = 1..N, the
expected best of k trials drawn from those N with replacement,

    E[max of k] = sum over i of v_(i) * ((i/N)^k - ((i-1)/N)^k),    v_(1) <= ... <= v_(N),

a bootstrap band around it, and which candidate leads at each k. At k = 1 it is the mean of the
values, and it rises to their maximum as k grows. This module only computes: it reads no study
and draws no picture.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

# The band: the central 90% of the curves of bootstrap resamples of the N values.
BAND_LEVEL = 0.9
RESAMPLES = 2000


def _weights(count: int, most: int) -> np.ndarray:
    """(count, most): the probability that the i-th smallest of `count` values is the best of k draws."""
    draws = np.arange(1, most + 1)
    rank = np.arange(1, count + 1)[:, None]
    return (rank / count) ** draws - ((rank - 1) / count) ** draws


def expected_best(values: Sequence[float], most: int) -> np.ndarray:
    """E[max of k draws with replacement from `values`] for k = 1..`most`."""
    ordered = np.sort(np.asarray(values, dtype=float))
    if ordered.size == 0:
        raise ValueError("the expected best needs at least one trial's value")
    return ordered @ _weights(ordered.size, most)


def bootstrap_band(
    values: Sequence[float], most: int, level: float = BAND_LEVEL, resamples: int = RESAMPLES, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The central `level` of the curves of `resamples` resamples of `values` (with replacement):
    how far the curve could move had another N random trials been drawn. Seeded, so a report
    drawn twice is the same."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        raise ValueError("the band needs at least one trial's value")
    samples = np.sort(np.random.default_rng(seed).choice(values, size=(resamples, values.size), replace=True), axis=1)
    curves = samples @ _weights(values.size, most)
    tail = (1.0 - level) / 2.0
    return np.quantile(curves, tail, axis=0), np.quantile(curves, 1.0 - tail, axis=0)


@dataclass(frozen=True)
class Curve:
    """One candidate's curve: k = 1..len(values), each with its expected best and band."""

    name: str
    values: tuple[float, ...]
    expected: tuple[float, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]


def curve(name: str, values: Sequence[float]) -> Curve:
    """The curve of `name`'s random trials, up to k = their number."""
    most = len(values)
    low, high = bootstrap_band(values, most)
    return Curve(
        name,
        tuple(float(value) for value in values),
        tuple(expected_best(values, most).tolist()),
        tuple(low.tolist()),
        tuple(high.tolist()),
    )


def orders(curves: Sequence[Curve]) -> list[tuple[str, ...]]:
    """The candidates from the highest expected best down, at each k from 1 to the fewest values
    of any curve (beyond it a curve would only repeat its own trials); equal values by name."""
    shared = min(len(candidate.values) for candidate in curves)
    return [
        tuple(candidate.name for candidate in sorted(curves, key=lambda each: (-each.expected[k], each.name)))
        for k in range(shared)
    ]


def _runs(items: Sequence[object]) -> list[tuple[object, int, int]]:
    """(item, first k, last k) for each stretch of equal consecutive items, k counted from 1."""
    stretches: list[tuple[object, int, int]] = []
    for k, item in enumerate(items, start=1):
        if stretches and stretches[-1][0] == item:
            stretches[-1] = (item, stretches[-1][1], k)
        else:
            stretches.append((item, k, k))
    return stretches


def ranking_sentence(curves: Sequence[Curve]) -> str:
    """Which candidate leads at which budget k, and whether the rest of the order changes:
    "gru leads from k=1 on" or "lstm leads up to k=3, gru from k=4"."""
    if len(curves) < 2:
        return ""
    ranked = orders(curves)
    leaders = _runs([order[0] for order in ranked])
    if len(leaders) == 1:
        sentence = f"{leaders[0][0]} leads from k=1 on"
    else:
        parts = [f"{leaders[0][0]} leads up to k={leaders[0][2]}"]
        parts += [f"{name} from k={first} to k={last}" for name, first, last in leaders[1:-1]]
        parts.append(f"{leaders[-1][0]} from k={leaders[-1][1]}")
        sentence = ", ".join(parts)
    sentence += f" (compared up to k={len(ranked)}, the fewest trials in any candidate's curve)"
    if len(curves) > 2:
        stretches = _runs(ranked)
        if len(stretches) == 1:
            sentence += f"; the order {' > '.join(ranked[0])} holds at every k"
        else:
            sentence += "; the whole order " + ", ".join(
                f"{' > '.join(order)} {'at' if first == last else 'from'} k={first}{'' if first == last else f' to k={last}'}"
                for order, first, last in stretches
            )
    return sentence + "."
