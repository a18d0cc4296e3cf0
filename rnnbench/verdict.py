"""Grouping runs that differ only in their seed, their statistics, and which differences are real.

Which runs count: within a group (runs sharing a config apart from the seed, `group_key`), one
completed run per seed, the one that finished last. A run trained again for the same config and
seed (`run --force`, a seed listed twice, two runs started at once) replaces the earlier one in
every statistic, so n is the number of distinct seeds; the replaced run stays on disk and in
`compare --all`, with the status `replaced` (derived here, never stored). `counted_runs` is that
rule, and `group_runs`, the per-run table and the report all go through it.

A group's numbers are the mean and sample standard deviation of the best validation accuracy
over its seeds, with a 95% confidence interval from Student's t. The verdict compares every
group with the best one by Welch's two-sided t-test at the 5% level: a group whose difference
from the best could be noise is "tied within noise". Everything here is plain NumPy, so that
`compare` stays instant.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Optional

ALPHA = 0.05
# Not stored: how `mark_replaced` shows a completed run that a later run of its config and seed replaced.
REPLACED = "replaced"
TEST_NAME = "Welch's t-test on best validation accuracy over seeds, two-sided, 5% level"


@dataclass
class Group:
    name: str
    records: list[dict[str, Any]] = field(default_factory=list)

    def values(self, key: str) -> list[float]:
        return [float(record["result"][key]) for record in self.records if key in record.get("result", {})]

    @property
    def accuracies(self) -> list[float]:
        return self.values("best_val_accuracy")

    @property
    def n(self) -> int:
        return len(self.records)

    @property
    def dataset(self) -> str:
        return self.records[0].get("data", {}).get("dataset", "-")

    @property
    def mean(self) -> float:
        return statistics.fmean(self.accuracies)

    @property
    def std(self) -> float:
        return statistics.stdev(self.accuracies) if self.n > 1 else 0.0

    @property
    def interval(self) -> Optional[tuple[float, float]]:
        """The 95% confidence interval of the mean (None for a single run)."""
        if self.n < 2:
            return None
        half = t_quantile_975(self.n - 1) * self.std / math.sqrt(self.n)
        return self.mean - half, self.mean + half

    def mean_of(self, key: str) -> Optional[float]:
        values = self.values(key)
        return statistics.fmean(values) if values else None

    @property
    def seeds(self) -> list[int]:
        return sorted(record["config"]["train"]["seed"] for record in self.records)

    @property
    def val_test_gaps(self) -> list[float]:
        return [gap for gap in map(val_test_gap, self.records) if gap is not None]

    @property
    def collapsed(self) -> int:
        """How many of the runs predict a single class for every validation row."""
        return sum(1 for record in self.records if record.get("result", {}).get("collapsed") is True)

    @property
    def with_warnings(self) -> int:
        return sum(1 for record in self.records if record.get("warnings"))


def val_test_gap(record: dict[str, Any]) -> Optional[float]:
    """Best validation accuracy minus test accuracy: how much choosing on validation flatters the run."""
    result = record.get("result", {})
    if "best_val_accuracy" not in result or "test_accuracy" not in result:
        return None
    return float(result["best_val_accuracy"]) - float(result["test_accuracy"])


def group_key(record: dict[str, Any]) -> str:
    """The resolved config without its seed, as this version reads it: runs sharing it differ by
    chance alone. Computed again from the recorded config rather than taken from the record, so
    that a run recorded before a key was added groups with today's runs of the same settings, as
    it is reused by them."""
    from rnnbench.config import recorded_config  # pydantic, for the config only; the statistics stay NumPy

    try:
        return recorded_config(record["config"]).group_fingerprint()
    except (KeyError, TypeError, ValueError):
        pass  # A record this version can't read as a config.
    if "group" in record:
        return record["group"]
    # Records written before the key was stored: their config as recorded, minus the seed.
    config = json.loads(json.dumps(record["config"]))
    config["train"].pop("seed", None)
    config["train"].pop("seeds", None)
    return json.dumps(config, sort_keys=True)


def _completed(record: dict[str, Any]) -> bool:
    return record.get("status", "completed") == "completed" and "best_val_accuracy" in record.get("result", {})


def _finished(record: dict[str, Any]) -> tuple[int, str]:
    """When a run finished, for ordering: its last update in the index. A record not read back
    from the index (the runner's own, just returned) has just finished, so it sorts last."""
    return (0, record["updated"]) if "updated" in record else (1, "")


def counted_runs(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The completed runs that the statistics count, in the order given: in each group, one run
    per seed, the one that finished last (the later in `records` when they finished together)."""
    latest: dict[tuple[str, int], int] = {}
    for position, record in enumerate(records):
        if not _completed(record):
            continue
        key = (group_key(record), record["config"]["train"]["seed"])
        if key not in latest or _finished(record) >= _finished(records[latest[key]]):
            latest[key] = position
    counted = set(latest.values())
    return [record for position, record in enumerate(records) if position in counted]


def mark_replaced(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`records`, with every completed run that `counted_runs` leaves out shown as `replaced`."""
    counted = {id(record) for record in counted_runs(records)}
    return [
        {**record, "status": REPLACED} if _completed(record) and id(record) not in counted else record
        for record in records
    ]


def group_runs(records: list[dict[str, Any]]) -> list[Group]:
    """The counted runs (`counted_runs`) grouped by config apart from the seed, best mean validation accuracy first."""
    groups: dict[str, Group] = {}
    for record in counted_runs(records):
        groups.setdefault(group_key(record), Group(name=record["name"])).records.append(record)
    return sorted(groups.values(), key=lambda group: -group.mean)


def welch_test(first: list[float], second: list[float]) -> tuple[float, float, float]:
    """Welch's two-sided t-test: (t statistic, degrees of freedom, p-value); both samples need n >= 2."""
    mean_difference = statistics.fmean(first) - statistics.fmean(second)
    variance_first = statistics.variance(first) / len(first)
    variance_second = statistics.variance(second) / len(second)
    standard_error = math.sqrt(variance_first + variance_second)
    if standard_error == 0.0:
        # Both samples are constant: they are equal or certainly different.
        return (0.0, math.inf, 1.0) if mean_difference == 0 else (math.copysign(math.inf, mean_difference), math.inf, 0.0)
    statistic = mean_difference / standard_error
    degrees = (variance_first + variance_second) ** 2 / (
        variance_first**2 / (len(first) - 1) + variance_second**2 / (len(second) - 1)
    )
    return statistic, degrees, 2.0 * student_t_cdf(-abs(statistic), degrees)


def verdict(groups: list[Group], alpha: float = ALPHA) -> list[str]:
    """Sentences saying, per dataset, which groups can't be told apart from that dataset's best one."""
    datasets: dict[str, list[Group]] = {}
    for group in groups:
        datasets.setdefault(group.dataset, []).append(group)
    lines = [f"Verdict ({TEST_NAME}):"] if groups else []
    for dataset, members in datasets.items():
        lines += _dataset_verdict(dataset, sorted(members, key=lambda group: -group.mean), alpha, len(datasets) > 1)
    return lines


def _dataset_verdict(dataset: str, groups: list[Group], alpha: float, name_dataset: bool) -> list[str]:
    best = groups[0]
    where = f" on {dataset}" if name_dataset else ""
    lines = [f"- best{where}: {best.name} (mean {best.mean:.4f}, n={best.n})"]
    if len(groups) == 1:
        return lines
    if best.n < 2:
        lines.append(f"  {best.name} has a single run, so no difference{where} can be told from noise; rerun with --seeds 3 or more")
        return lines
    tied, worse, unknown = [], [], []
    for group in groups[1:]:
        if group.n < 2:
            unknown.append(group)
            continue
        _, _, p_value = welch_test(best.accuracies, group.accuracies)
        (tied if p_value >= alpha else worse).append((group, p_value))
    if tied:
        lines.append(f"  {', '.join(g.name for g, _ in tied)}: tied within noise with {best.name} ({_details(tied)})")
    if worse:
        lines.append(f"  {', '.join(g.name for g, _ in worse)}: below {best.name}, beyond noise ({_details(worse)})")
    if unknown:
        lines.append(f"  {', '.join(g.name for g in unknown)}: a single run each (n=1), too few to tell")
    return lines


def _details(pairs: list[tuple[Group, float]]) -> str:
    counts = {group.n for group, _ in pairs}
    sizes = f"n={counts.pop()} each" if len(counts) == 1 else "n=" + "/".join(str(group.n) for group, _ in pairs)
    values = ", ".join("p<0.001" if p < 0.001 else f"p={p:.3f}" for _, p in pairs)
    return f"{values}; {sizes}"


# Student's t 97.5% quantiles for 1-30 degrees of freedom; larger ones are interpolated below.
_T_975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
          2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def t_quantile_975(degrees: int) -> float:
    if degrees < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {degrees}")
    if degrees <= 30:
        return _T_975[degrees - 1]
    # Beyond 30 the quantile is linear in 1/df to three decimals: 2.042 at 30, 1.960 at infinity.
    return 1.960 + (2.042 - 1.960) * 30 / degrees


def student_t_cdf(t: float, degrees: float) -> float:
    """P(T <= t) for Student's t with real `degrees`, through the regularized incomplete beta function."""
    if math.isinf(degrees):
        return 0.5 * math.erfc(-t / math.sqrt(2))
    tail = 0.5 * _incomplete_beta(degrees / 2, 0.5, degrees / (degrees + t * t))
    return tail if t < 0 else 1.0 - tail


def _incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta I_x(a, b), by its continued fraction (modified Lentz)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x > (a + 1) / (a + b + 2):
        return 1.0 - _incomplete_beta(b, a, 1.0 - x)
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 300):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return math.exp(log_front) * result / a
