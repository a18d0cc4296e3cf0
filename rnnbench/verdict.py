"""Grouping runs that differ only in their seed, and which differences between the groups are real.

Which runs count: within a group (runs sharing a config apart from the seed, `group_key`), one
completed run per seed, the one that finished last. A run trained again for the same config and
seed (`run --force`, a seed listed twice, two runs started at once) replaces the earlier one in
every statistic, so n is the number of distinct seeds; the replaced run stays on disk and in
`compare --all`, with the status `replaced` (derived here, never stored). `counted_runs` is that
rule, and `group_runs`, the per-run table and the report all go through it.

What is tested (the outcome): each run's test accuracy at its best-validation epoch, the weights
validation chose scored once on the test split. Validation only chooses epochs and trials, so
the tested number was never selected on. `--outcome validation` tests the best validation
accuracy instead (a maximum over epochs, so optimistic), and a dataset some of whose runs have
no test accuracy falls back to it and says so.

The family: within a dataset, every pair of configs with two or more seeds each. Two configs
trained with the same seeds share their validation split and data order, so they are compared
by their per-seed differences (a paired t-test); otherwise by Welch's t-test. Each pair carries
two tests: a difference (two-sided; null: equal means) and an equivalence (two one-sided tests;
null: the difference is δ or more in size). At most one of a pair's two nulls can be true, and
Holm's step-down adjusts all the family's tests together (two per pair), so the chance of any
false claim in a dataset, "better" or "equivalent", is at most α = 5%.

Three answers per pair, never "tied": *better* (the difference test rejects), *equivalent within
±δ* (the equivalence test rejects: the difference's (1 − 2α) interval, 90%, lies inside ±δ), or
*undecided*, with how many seeds per config would find a δ difference with 80% power given the
observed spread, at the family's strictest Holm level α / tests (a Bonferroni bound, so the figure
errs on the safe side). Runs whose accuracies don't vary at all give no noise to weigh a
difference against: equal values are equivalent, unequal ones undecided (`--bootstrap`, which
also resamples the test rows, can decide them).

The t distribution comes from SciPy (`scipy.special`, imported when a verdict is made, so that
`rnnbench --help` stays instant); the multi-bootstrap over seeds and test rows is `bootstrap.py`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional, Protocol, Sequence

from rnnbench.record import RunRecord

ALPHA = 0.05
# The equivalence margin: differences smaller than half an accuracy point are taken as no difference.
DELTA = 0.005
# The power that the seeds-needed figure plans for.
POWER = 0.8
# Beyond this many seeds per config, the figure is given as "more than".
MAX_SEEDS = 1000
VALIDATION_KEY = "best_val_accuracy"
TEST_KEY = "test_accuracy"
# The outcome a verdict tests: the record key it reads, and how it is named.
OUTCOMES = {"test": TEST_KEY, "validation": VALIDATION_KEY}
OUTCOME_NAMES = {
    TEST_KEY: "test accuracy at each run's best-validation epoch",
    VALIDATION_KEY: "best validation accuracy",
}
BETTER, EQUIVALENT, UNDECIDED = "better", "equivalent", "undecided"
# Not stored: how `mark_replaced` shows a completed run that a later run of its config and seed replaced.
REPLACED = "replaced"


@dataclass
class Group:
    """The counted runs of one config over its seeds; `mean`, `std` and `interval` are of `key`."""

    name: str
    records: list[RunRecord] = field(default_factory=list)
    key: str = VALIDATION_KEY

    def values(self, key: str) -> list[float]:
        return [float(record.metric(key)) for record in self.records if record.metric(key) is not None]

    def by_seed(self, key: str) -> dict[int, float]:
        return {record.seed: float(record.metric(key)) for record in self.records if record.metric(key) is not None}

    @property
    def accuracies(self) -> list[float]:
        return self.values(self.key)

    @property
    def label(self) -> str:
        return OUTCOME_NAMES.get(self.key, self.key)

    @property
    def n(self) -> int:
        return len(self.records)

    @property
    def dataset(self) -> str:
        return self.records[0].dataset or "-"

    @property
    def mean(self) -> float:
        return statistics.fmean(self.accuracies)

    @property
    def std(self) -> float:
        return math.sqrt(_variance(self.accuracies)) if len(self.accuracies) > 1 else 0.0

    @property
    def interval(self) -> Optional[tuple[float, float]]:
        """The 95% confidence interval of the mean (None for a single run)."""
        if len(self.accuracies) < 2:
            return None
        half = t_quantile(0.975, self.n - 1) * self.std / math.sqrt(self.n)
        return self.mean - half, self.mean + half

    def mean_of(self, key: str) -> Optional[float]:
        values = self.values(key)
        return statistics.fmean(values) if values else None

    @property
    def seeds(self) -> list[int]:
        return sorted(record.seed for record in self.records)

    @property
    def test_rows(self) -> Optional[int]:
        """How many rows the test split has (from the recorded test confusion matrix)."""
        for record in self.records:
            confusion = record.metric("test_confusion")
            if confusion:
                return int(sum(map(sum, confusion)))
        return None

    @property
    def val_test_gaps(self) -> list[float]:
        return [gap for gap in map(val_test_gap, self.records) if gap is not None]

    @property
    def collapsed(self) -> int:
        """How many of the runs predict a single class for every validation row."""
        return sum(1 for record in self.records if record.result is not None and record.result.collapsed is True)

    @property
    def with_warnings(self) -> int:
        return sum(1 for record in self.records if record.warnings)


def val_test_gap(record: RunRecord) -> Optional[float]:
    """Best validation accuracy minus test accuracy: how much choosing on validation flatters the run."""
    result = record.result
    if result is None or result.best_val_accuracy is None or result.test_accuracy is None:
        return None
    return float(result.best_val_accuracy) - float(result.test_accuracy)


def rows_half_width(accuracy: float, rows: int) -> float:
    """Half the 95% interval of an accuracy measured on `rows` test rows, from their sampling alone
    (the normal approximation to the binomial): ±0.0037 at 0.9 on 25,000 rows."""
    return 1.959963984540054 * math.sqrt(max(accuracy * (1.0 - accuracy), 0.0) / rows)


def group_key(record: RunRecord) -> str:
    """The resolved config without its seed, as this version reads it: runs sharing it differ by
    chance alone. Computed again from the recorded config rather than taken from the record, so
    that a run recorded before a key was added groups with today's runs of the same settings, as
    it is reused by them."""
    try:
        # The seed is not part of the group, so runs of one config over many seeds validate it once.
        config = {**record.config, "train": {**record.config["train"], "seed": 1}}
        return _group_fingerprint(json.dumps(config, sort_keys=True))
    except (KeyError, TypeError, ValueError):
        pass  # A record this version can't read as a config.
    if record.group is not None:
        return record.group
    # Records written before the key was stored: their config as recorded, minus the seed.
    config = json.loads(json.dumps(record.config))
    config["train"].pop("seed", None)
    config["train"].pop("seeds", None)
    return json.dumps(config, sort_keys=True)


@functools.lru_cache(maxsize=4096)
def _group_fingerprint(config_json: str) -> str:
    """The group fingerprint of a recorded config (given as JSON), validated once per distinct config:
    a table of 500 runs reads each config more than once, and validation is the slow part."""
    from rnnbench.config import recorded_config  # pydantic, for the config only; the statistics stay NumPy

    return recorded_config(json.loads(config_json)).group_fingerprint()


def _completed(record: RunRecord) -> bool:
    return (record.status or "completed") == "completed" and record.metric(VALIDATION_KEY) is not None


def _finished(record: RunRecord) -> tuple[int, str]:
    """When a run finished, for ordering: its last update in the index. A record not read back
    from the index (the runner's own, just returned) has just finished, so it sorts last."""
    return (0, record.updated) if record.updated is not None else (1, "")


def counted_runs(records: Iterable[RunRecord]) -> list[RunRecord]:
    """The completed runs that the statistics count, in the order given: in each group, one run
    per seed, the one that finished last (the later in `records` when they finished together)."""
    records = list(records)
    latest: dict[tuple[str, int], int] = {}
    for position, record in enumerate(records):
        if not _completed(record):
            continue
        key = (group_key(record), record.seed)
        if key not in latest or _finished(record) >= _finished(records[latest[key]]):
            latest[key] = position
    counted = set(latest.values())
    return [record for position, record in enumerate(records) if position in counted]


def mark_replaced(records: list[RunRecord]) -> list[RunRecord]:
    """`records`, with every completed run that `counted_runs` leaves out shown as `replaced`."""
    counted = {id(record) for record in counted_runs(records)}
    return [
        dataclasses.replace(record, status=REPLACED) if _completed(record) and id(record) not in counted else record
        for record in records
    ]


def group_runs(records: Iterable[RunRecord], key: str = VALIDATION_KEY) -> list[Group]:
    """The counted runs (`counted_runs`) grouped by config apart from the seed, highest mean `key`
    first (a group some of whose runs lack `key` sorts by what it has, or last)."""
    groups: dict[str, Group] = {}
    for record in counted_runs(records):
        groups.setdefault(group_key(record), Group(name=record.name, key=key)).records.append(record)
    return sorted(groups.values(), key=lambda group: -group.mean if group.accuracies else math.inf)


# The t distribution, from SciPy's special functions (a fast import, unlike scipy.stats).


def t_quantile(probability: float, degrees: float) -> float:
    from scipy.special import stdtrit

    return float(stdtrit(degrees, probability))


def t_cdf(t: float, degrees: float) -> float:
    from scipy.special import stdtr

    return float(stdtr(degrees, t))


class Difference(Protocol):
    """A difference of two configs' mean outcomes (first minus second) and its tests."""

    method: str
    estimate: float
    n_first: int
    n_second: int
    paired: bool
    # The per-seed standard deviation a rerun would face: of the per-seed differences when paired,
    # else the two configs' pooled one. What the seeds-needed figure is planned from.
    spread: float

    def p_value(self) -> Optional[float]: ...

    def interval(self, level: float) -> tuple[float, float]: ...

    def equivalence_p(self, delta: float) -> Optional[float]: ...


@dataclass(frozen=True)
class TDifference:
    """A difference tested by Student's t: paired over shared seeds, or Welch's."""

    method: str
    estimate: float
    standard_error: float
    degrees: float
    n_first: int
    n_second: int
    paired: bool
    spread: float

    def p_value(self) -> Optional[float]:
        """Two-sided, for a zero difference; None when the runs show no spread and differ (untestable)."""
        if self.standard_error == 0.0:
            return 1.0 if self.estimate == 0.0 else None
        return 2.0 * t_cdf(-abs(self.estimate) / self.standard_error, self.degrees)

    def interval(self, level: float) -> tuple[float, float]:
        if self.standard_error == 0.0:
            return self.estimate, self.estimate
        half = t_quantile(0.5 + level / 2, self.degrees) * self.standard_error
        return self.estimate - half, self.estimate + half

    def equivalence_p(self, delta: float) -> Optional[float]:
        """Two one-sided tests (TOST) of |difference| >= delta: the larger of their p-values."""
        if self.standard_error == 0.0:
            return 0.0 if self.estimate == 0.0 else None
        below = t_cdf(-(self.estimate + delta) / self.standard_error, self.degrees)
        above = t_cdf(-(delta - self.estimate) / self.standard_error, self.degrees)
        return max(below, above)


def _variance(values: Sequence[float]) -> float:
    """The sample variance in floating point (statistics.variance's exact fractions are slow)."""
    mean = math.fsum(values) / len(values)
    return math.fsum((value - mean) ** 2 for value in values) / (len(values) - 1)


def paired_difference(first: dict[int, float], second: dict[int, float]) -> TDifference:
    """The paired t-test over the seeds both configs have (each needs the same seeds, two or more)."""
    differences = [first[seed] - second[seed] for seed in sorted(first)]
    n = len(differences)
    spread = math.sqrt(_variance(differences))
    return TDifference("paired t", math.fsum(differences) / n, spread / math.sqrt(n), n - 1, n, n, True, spread)


def welch_difference(first: Sequence[float], second: Sequence[float]) -> TDifference:
    """Welch's t-test of two independent samples (each n >= 2)."""
    variance_first, variance_second = _variance(first), _variance(second)
    error_first, error_second = variance_first / len(first), variance_second / len(second)
    standard_error = math.sqrt(error_first + error_second)
    if standard_error == 0.0:
        degrees = math.inf
    else:
        degrees = (error_first + error_second) ** 2 / (
            error_first**2 / (len(first) - 1) + error_second**2 / (len(second) - 1)
        )
    estimate = statistics.fmean(first) - statistics.fmean(second)
    spread = math.sqrt((variance_first + variance_second) / 2)
    return TDifference("Welch t", estimate, standard_error, degrees, len(first), len(second), False, spread)


def t_difference(first: Group, second: Group, key: str) -> TDifference:
    """Paired where the design is paired (the same seeds, two or more), else Welch's."""
    first_values, second_values = first.by_seed(key), second.by_seed(key)
    if set(first_values) == set(second_values):
        return paired_difference(first_values, second_values)
    return welch_difference(list(first_values.values()), list(second_values.values()))


def holm(p_values: Sequence[Optional[float]]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given; an untestable one (None) counts as 1."""
    values = [1.0 if p is None else p for p in p_values]
    order = sorted(range(len(values)), key=values.__getitem__)
    adjusted, running = [0.0] * len(values), 0.0
    for rank, position in enumerate(order):
        running = max(running, min(1.0, (len(values) - rank) * values[position]))
        adjusted[position] = running
    return adjusted


def _standard_error(seeds: Any, spread: Any, paired: Any) -> tuple[Any, Any]:
    """Degrees of freedom and standard error of a difference over `seeds` per config: paired
    (n − 1), or two equal independent samples (2n − 2); every argument may be an array."""
    import numpy as np

    seeds = np.asarray(seeds, dtype=float)
    degrees = np.where(paired, seeds - 1, 2 * seeds - 2)
    standard_error = np.where(paired, spread / np.sqrt(seeds), spread * np.sqrt(2 / seeds))
    return degrees, standard_error


def power(seeds: Any, difference: float, spread: Any, level: float, paired: Any) -> Any:
    """The chance that a two-sided t-test at `level` finds a true `difference` with `seeds` per
    config and per-seed standard deviation `spread` (numbers or arrays): the noncentral t."""
    import numpy as np
    from scipy.special import nctdtr, stdtrit

    degrees, standard_error = _standard_error(seeds, spread, paired)
    noncentrality = difference / standard_error
    critical = stdtrit(degrees, 1 - level / 2)
    # SciPy's noncentral t gives NaN for a tail too small to compute (far below the noncentrality): it is 0.
    below = np.nan_to_num(nctdtr(degrees, noncentrality, -critical), nan=0.0)
    above = np.nan_to_num(nctdtr(degrees, noncentrality, critical), nan=0.0)
    return below + 1 - above


def equivalence_power(seeds: Any, delta: float, spread: Any, level: float, paired: Any) -> Any:
    """The chance that two one-sided tests at `level` show equivalence within ±delta when the true
    difference is zero (approximated with the standard error taken as known)."""
    import numpy as np
    from scipy.special import stdtr, stdtrit

    degrees, standard_error = _standard_error(seeds, spread, paired)
    reach = delta / standard_error - stdtrit(degrees, 1 - level)
    return np.clip(2 * stdtr(degrees, reach) - 1, 0.0, 1.0)


def seeds_needed(
    delta: float, spread: float, level: float, paired: bool, planned: float = POWER, equivalence: bool = False
) -> Optional[int]:
    """The fewest seeds per config that find a `delta` difference (or with `equivalence`, show a
    zero one equivalent) with probability `planned`; None when there is no spread to plan from,
    MAX_SEEDS + 1 when even MAX_SEEDS would not do."""
    return seeds_needed_each(delta, [spread], level, [paired], planned, equivalence)[0]


def seeds_needed_each(
    delta: Any,
    spreads: Sequence[float],
    level: float,
    paired: Sequence[bool],
    planned: float = POWER,
    equivalence: bool = False,
) -> list[Optional[int]]:
    """`seeds_needed` for many comparisons at once. The chance grows with the seeds. The normal
    approximation, n = f (z + z_power)² spread² / delta² (f = 1 paired, 2 not), starts a bracket
    that the exact chance then widens until it holds the answer and halves until it is one seed
    wide; each step evaluates only the comparisons still searching, all in one array."""
    import numpy as np
    from scipy.special import ndtri

    spread = np.asarray(spreads, dtype=float)
    delta = np.broadcast_to(np.asarray(delta, dtype=float), spread.shape)  # one margin for all, or one each
    paired_each = np.asarray(paired, dtype=bool)
    usable = spread > 0
    spread = np.where(usable, spread, 1.0)  # Placeholders for those without spread, dropped below.
    chance = equivalence_power if equivalence else power
    tail = level if equivalence else level / 2
    extra = 1 - (1 - planned) / 2 if equivalence else planned
    normal = np.where(paired_each, 1.0, 2.0) * ((ndtri(1 - tail) + ndtri(extra)) * spread / delta) ** 2
    guess = np.clip(np.floor(normal), 1, MAX_SEEDS).astype(int)

    def enough(seeds: Any, which: Any) -> Any:
        return chance(seeds[which], delta[which], spread[which], level, paired_each[which]) >= planned

    # `low` is not enough, `high` is (or is MAX_SEEDS and not, then the answer is "more than").
    low, high = np.maximum(guess - 1, 1), np.minimum(guess + 1, MAX_SEEDS)
    everyone = np.arange(len(spread))
    too_high = enough(low, everyone) & (low > 1)
    low[too_high] = 1  # The approximation overshot (rare): search from the start.
    found = np.zeros(len(spread), dtype=bool)
    searching = everyone
    while len(searching):
        holds = enough(high, searching)
        found[searching[holds]] = True
        growing = searching[~holds & (high[searching] < MAX_SEEDS)]
        low[growing], high[growing] = high[growing], np.minimum(2 * high[growing], MAX_SEEDS)
        searching = growing
    searching = everyone[found & (high - low > 1)]
    while len(searching):
        middle = (low + high) // 2
        holds = enough(middle, searching)
        high[searching[holds]] = middle[searching[holds]]
        low[searching[~holds]] = middle[searching[~holds]]
        searching = searching[high[searching] - low[searching] > 1]
    return [
        None if not ok else int(seeds) if reached else MAX_SEEDS + 1 for ok, seeds, reached in zip(usable, high, found)
    ]


@dataclass(frozen=True)
class Comparison:
    """One pair of a family: `first` has the higher mean outcome."""

    first: Group
    second: Group
    difference: Difference
    p_adjusted: float
    equivalence_p_adjusted: float
    answer: str
    # Seeds per config, in all, to find a delta difference with 80% power, and to show a zero
    # difference equivalent (None: no spread to plan from); computed for undecided pairs only.
    seeds_needed: Optional[int] = None
    seeds_for_equivalence: Optional[int] = None
    # Seeds per config to find a difference of the size seen, when that is larger than delta.
    seeds_for_size_seen: Optional[int] = None

    @property
    def more_seeds(self) -> Optional[int]:
        if self.seeds_needed is None:
            return None
        return max(0, self.seeds_needed - min(self.difference.n_first, self.difference.n_second))


@dataclass(frozen=True)
class Family:
    """The comparisons within one dataset, judged together."""

    dataset: str
    key: str
    fell_back: bool  # the test outcome was asked for but some runs have none, so validation was tested
    groups: list[Group]  # two or more seeds each, highest mean first
    single: list[Group]  # fewer than two seeds: not tested
    comparisons: list[Comparison]
    alpha: float
    delta: float
    test_rows: Optional[int]

    @property
    def tests(self) -> int:
        return 2 * len(self.comparisons)

    @property
    def strictest_level(self) -> float:
        return self.alpha / max(self.tests, 1)


# What a multi-bootstrap gives instead of the t-tests: a function from (first, second, key) to a Difference.
DifferenceOf = Any


def judge(
    groups: list[Group],
    outcome: str = "test",
    alpha: float = ALPHA,
    delta: float = DELTA,
    difference_of: DifferenceOf = None,
) -> list[Family]:
    """Every dataset's family of pairwise comparisons (see the module's docstring)."""
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}, got {outcome!r}")
    datasets: dict[str, list[Group]] = {}
    for group in groups:
        datasets.setdefault(group.dataset, []).append(group)
    return [
        _family(dataset, members, OUTCOMES[outcome], alpha, delta, difference_of or t_difference)
        for dataset, members in datasets.items()
    ]


def _family(
    dataset: str, groups: list[Group], key: str, alpha: float, delta: float, difference_of: DifferenceOf
) -> Family:
    fell_back = key == TEST_KEY and any(record.metric(TEST_KEY) is None for group in groups for record in group.records)
    if fell_back:
        key = VALIDATION_KEY
    ordered = sorted(groups, key=lambda group: -statistics.fmean(group.values(key)))
    tested = [group for group in ordered if group.n >= 2]
    pairs = [(first, second) for index, first in enumerate(tested) for second in tested[index + 1 :]]
    differences = [difference_of(first, second, key) for first, second in pairs]
    adjusted = holm(
        [difference.p_value() for difference in differences]
        + [difference.equivalence_p(delta) for difference in differences]
    )
    level = alpha / max(2 * len(pairs), 1)
    comparisons = []
    for index, ((first, second), difference) in enumerate(zip(pairs, differences)):
        p_adjusted, equivalence_adjusted = adjusted[index], adjusted[len(pairs) + index]
        answer = BETTER if p_adjusted < alpha else EQUIVALENT if equivalence_adjusted < alpha else UNDECIDED
        comparisons.append(Comparison(first, second, difference, p_adjusted, equivalence_adjusted, answer))
    # What to run next, for the undecided pairs: all of a family's figures in one array search.
    undecided = [index for index, comparison in enumerate(comparisons) if comparison.answer == UNDECIDED]
    spreads = [comparisons[index].difference.spread for index in undecided]
    pairing = [comparisons[index].difference.paired for index in undecided]
    if undecided:
        needed = seeds_needed_each(delta, spreads, level, pairing)
        for_equivalence = seeds_needed_each(delta, spreads, level, pairing, equivalence=True)
        sizes = [max(abs(comparisons[index].difference.estimate), delta) for index in undecided]
        for_size = seeds_needed_each(sizes, spreads, level, pairing)
        for index, seeds, equivalent_seeds, size_seeds, size in zip(
            undecided, needed, for_equivalence, for_size, sizes
        ):
            comparisons[index] = dataclasses.replace(
                comparisons[index],
                seeds_needed=seeds,
                seeds_for_equivalence=equivalent_seeds,
                seeds_for_size_seen=size_seeds if size > delta else None,
            )
    rows = next((group.test_rows for group in ordered if group.test_rows), None)
    return Family(
        dataset, key, fell_back, tested, [group for group in ordered if group.n < 2], comparisons, alpha, delta, rows
    )


def verdict(
    groups: list[Group],
    outcome: str = "test",
    alpha: float = ALPHA,
    delta: float = DELTA,
    difference_of: DifferenceOf = None,
) -> list[str]:
    """The verdict as lines: a header, then per dataset its family and one line per pair."""
    return verdict_lines(judge(groups, outcome, alpha, delta, difference_of)) if groups else []


def _points(value: float, sign: bool = True) -> str:
    return f"{100 * value:+.2f}" if sign else f"{100 * value:.2f}"


def _p(value: Optional[float]) -> str:
    if value is None:
        return "untestable"
    return "p<0.001" if value < 0.001 else f"p={value:.3f}"


def verdict_lines(families: list[Family]) -> list[str]:
    if not families:
        return []
    first = families[0]
    methods = sorted({comparison.difference.method for family in families for comparison in family.comparisons})
    lines = [
        f"Verdict on {OUTCOME_NAMES[first.key if not first.fell_back else TEST_KEY]}, every pair of configs"
        f" ({' or '.join(methods) if methods else 'paired t where two configs share their seeds, else Welch t'}),"
        f" a difference and an equivalence test (±{_points(first.delta, False)} points) per pair,"
        f" Holm over each dataset's tests at {first.alpha:.0%}:"
    ]
    for family in families:
        lines += _family_lines(family)
    return lines


def _family_lines(family: Family) -> list[str]:
    pairs = len(family.comparisons)
    configs = len(family.groups)
    facts = [
        f"{configs} config{'s' if configs != 1 else ''} with 2 or more seeds, {pairs} pair{'s' if pairs != 1 else ''}, {family.tests} tests, Holm"
    ]
    if family.fell_back:
        facts.append(f"some runs have no test accuracy, so {OUTCOME_NAMES[VALIDATION_KEY]} is tested")
    best = (family.groups or family.single)[0]
    values = best.values(family.key)
    facts.append(f"highest mean: {best.name} {statistics.fmean(values):.4f} (n={best.n})")
    if family.test_rows and family.key == TEST_KEY:
        half = rows_half_width(statistics.fmean(values), family.test_rows)
        facts.append(
            f"the {family.test_rows:,} test rows alone make one accuracy uncertain by ±{_points(half, False)} points (95%), a noise seeds don't show"
        )
    lines = [f"- {family.dataset}: " + "; ".join(facts)]
    for answer in (BETTER, EQUIVALENT, UNDECIDED):
        lines += [
            f"  {_comparison_line(family, comparison)}"
            for comparison in family.comparisons
            if comparison.answer == answer
        ]
    if family.single:
        names = ", ".join(f"{group.name} (n={group.n})" for group in family.single)
        lines.append(f"  too few seeds to test: {names}; rerun with --seeds 3 or more")
    return lines


def _comparison_line(family: Family, comparison: Comparison) -> str:
    difference = comparison.difference
    first, second = comparison.first.name, comparison.second.name
    low, high = difference.interval(0.95)
    method = difference.method
    if comparison.answer == BETTER:
        return (
            f"better: {first} over {second} by {_points(difference.estimate)} points (raw 95% CI {_points(low)} to {_points(high)};"
            f" {method}, {_p(difference.p_value())}, Holm {_p(comparison.p_adjusted)})"
        )
    if comparison.answer == EQUIVALENT:
        low, high = difference.interval(1 - 2 * family.alpha)
        return (
            f"equivalent within ±{_points(family.delta, False)} points: {first} and {second}, {_points(difference.estimate)} points"
            f" (raw 90% CI {_points(low)} to {_points(high)}; {method}, equivalence Holm {_p(comparison.equivalence_p_adjusted)})"
        )
    tested = "untestable" if difference.p_value() is None else f"Holm {_p(comparison.p_adjusted)}"
    line = f"undecided: {first} vs {second}, {_points(difference.estimate)} points (raw 95% CI {_points(low)} to {_points(high)}; {method}, {tested})"
    return line + ": " + _what_next(family, comparison)


def _what_next(family: Family, comparison: Comparison) -> str:
    """The most useful sentence: what to run to decide the pair. A difference seen larger than
    delta is planned for at its own size too (a rough guide: the size seen is itself noisy)."""
    if comparison.seeds_needed is None:
        return "no spread over seeds to weigh the difference against; compare --bootstrap also resamples the test rows"
    has = min(comparison.difference.n_first, comparison.difference.n_second)

    def more(seeds: int, what: str) -> str:
        if seeds > MAX_SEEDS:
            return f"even {MAX_SEEDS} seeds each would not {what}"
        extra = max(0, seeds - has)
        return (
            f"the {has} seeds run already {what}"
            if extra == 0
            else f"about {extra} more seed{'s' if extra != 1 else ''} each would {what}"
        )

    margin = f"{_points(family.delta, False)}-point"
    if comparison.seeds_for_size_seen is not None:
        return (
            more(comparison.seeds_for_size_seen, "confirm a difference of the size seen with 80% power")
            + f" ({comparison.seeds_needed - has if comparison.seeds_needed <= MAX_SEEDS else f'over {MAX_SEEDS}'} more to find any {margin} one)"
        )
    line = more(comparison.seeds_needed, f"find a {margin} difference with 80% power")
    equivalence = comparison.seeds_for_equivalence
    if equivalence is not None and equivalence <= MAX_SEEDS:
        line += f"; about {max(0, equivalence - has)} more to show equivalence if there is none"
    return line


def verdict_json(families: list[Family]) -> list[dict[str, Any]]:
    """The verdict as data: per dataset its family, per pair the test, raw and adjusted p-values,
    the difference with its intervals, the answer and the seeds needed."""
    return [
        {
            "dataset": family.dataset,
            "outcome": family.key,
            "fell_back_to_validation": family.fell_back,
            "configs": [group.name for group in family.groups],
            "too_few_seeds": [group.name for group in family.single],
            "pairs": len(family.comparisons),
            "tests": family.tests,
            "correction": "Holm",
            "alpha": family.alpha,
            "delta": family.delta,
            "test_rows": family.test_rows,
            "comparisons": [_comparison_dict(family, comparison) for comparison in family.comparisons],
        }
        for family in families
    ]


def _comparison_dict(family: Family, comparison: Comparison) -> dict[str, Any]:
    difference = comparison.difference
    return {
        "first": comparison.first.name,
        "second": comparison.second.name,
        "test": difference.method,
        "paired": difference.paired,
        "n": [difference.n_first, difference.n_second],
        "difference": difference.estimate,
        "ci95": list(difference.interval(0.95)),
        "ci90": list(difference.interval(1 - 2 * family.alpha)),
        "p": difference.p_value(),
        "p_holm": comparison.p_adjusted,
        "equivalence_p": difference.equivalence_p(family.delta),
        "equivalence_p_holm": comparison.equivalence_p_adjusted,
        "answer": comparison.answer,
        "seeds_needed": comparison.seeds_needed,
        "more_seeds": comparison.more_seeds if comparison.answer == UNDECIDED else None,
        "seeds_for_equivalence": comparison.seeds_for_equivalence,
        "seeds_for_size_seen": comparison.seeds_for_size_seen,
    }
