"""Expanding a config into the runs it asks for: sweep variants x grid x seeds.

A config may hold a `sweep:` section next to the usual ones:

    sweep:
      variants:                      # named rows, each a set of dotted keys (optional)
        lstm: {model.cell: lstm}
        gru2: {model.cell: gru, model.layers: 2}
      grid:                          # every combination of these values (optional)
        model.embedding_dim: [16, 32, 50]
    train:
      seeds: [1, 2, 3]               # one run per seed

Every expanded run goes through the same validation as a config file, so a sweep over an
unknown key or an impossible value fails before anything trains. Each run must have a name of
its own and settings of its own, and a sweep of more than MOST_RUNS runs is refused before any
is built.
"""

from __future__ import annotations

import difflib
import itertools
import math
import re
from pathlib import Path
from typing import Any, Optional, Sequence

from rnnbench.config import Config, ConfigError, config_from_mapping, parse_override, read_mapping

SWEEP_KEYS = ("grid", "variants")

# A sweep is validated run by run before anything trains, and a few thousand runs would take
# days: more than this is most likely a grid written with a value too many, so it is refused
# before the first run is built.
MOST_RUNS = 2_000


def expand(path: str | Path, overrides: Sequence[str] = (), seed_count: Optional[int] = None) -> list[Config]:
    """Every run that the config at `path` describes, in order: variants, then grid, then seeds."""
    raw = read_mapping(path)
    if "tune" in raw:
        raise ConfigError(f"{path}: has a tune section; tune it with: rnnbench tune {path}")
    return expand_mapping(raw, str(path), overrides, seed_count)


def expand_mapping(
    raw: dict[str, Any], source: str, overrides: Sequence[str] = (), seed_count: Optional[int] = None
) -> list[Config]:
    """`expand` for a config already read (with its `sweep:` section, if any) from `source`."""
    raw = dict(raw)
    sweep = raw.pop("sweep", None)
    variants, grid = _parse_sweep(sweep, source)
    _refuse_too_many_runs(raw, variants, grid, overrides, seed_count, source)
    base_name = raw["name"]
    if not isinstance(base_name, str):
        # The name alone goes through the validator, which refuses it as load_config would
        # (name=None is not a string), before it is joined with variant names below.
        config_from_mapping({"name": base_name}, source=source)
    configs: list[Config] = []
    clashes = _Clashes(source)
    for (variant, variant_values), grid_values in itertools.product(variants, _grid_points(grid)):
        typed = [(key, value, f"{source}: sweep.variants.{variant}") for key, value in variant_values.items()]
        typed += [(key, value, f"{source}: sweep.grid") for key, value in grid_values.items()]
        name_parts = (
            [base_name]
            + ([variant] if variant else [])
            + [_name_part(key, value) for key, value in grid_values.items()]
        )
        config = config_from_mapping(
            {**raw, "name": "-".join(name_parts)}, source=source, overrides=[*typed, *overrides]
        )
        if seed_count is not None:
            config = _with_seed_count(config, seed_count)
        runs = per_seed(config)
        clashes.check(config, runs, _point_label(variant, grid_values))
        configs.extend(runs)
        if len(configs) > MOST_RUNS:
            # Variants or the grid that set train.seeds in another way than the count above reads.
            raise ConfigError(
                f"{source}: the sweep expands to more than {MOST_RUNS:,} runs; the limit is {MOST_RUNS:,} — split it into several configs"
            )
    return configs


def _refuse_too_many_runs(
    raw: dict[str, Any],
    variants: list[tuple[str, dict[str, Any]]],
    grid: dict[str, list[Any]],
    overrides: Sequence[str],
    seed_count: Optional[int],
    source: str,
) -> None:
    """Count the runs from the sweep's sizes alone, as variants x grid points x seeds, and refuse too many.

    A run's seeds come from the last of: the config's train.seeds, its variant's, its grid
    point's, a `--set train.seeds=...`, `--seeds N`, as config_from_mapping applies them.
    """
    points = math.prod(len(values) for values in grid.values())
    train = raw.get("train")
    written = train.get("seeds") if isinstance(train, dict) else None
    seeds_set = seed_count is not None
    for override in overrides:
        key, value = parse_override(override)
        if key == "train.seeds":
            written, seeds_set = value, True
    seed_counts: list[int]
    if seeds_set:
        seed_counts = [seed_count if seed_count is not None else _seed_count(written)]
        runs = len(variants) * points * seed_counts[0]
    elif "train.seeds" in grid:
        seed_counts = [_seed_count(seeds) for seeds in grid["train.seeds"]]
        runs = len(variants) * points // len(seed_counts) * sum(seed_counts)
    else:
        seed_counts = [_seed_count(values.get("train.seeds", written)) for _, values in variants]
        runs = points * sum(seed_counts)
    if runs <= MOST_RUNS:
        return
    sizes = f"{_count(len(variants), 'variant')} x {_count(points, 'grid point')}"
    if min(seed_counts) == max(seed_counts):
        sizes += f" x {_count(seed_counts[0], 'seed')}"
    else:
        sizes += f", {min(seed_counts)} to {max(seed_counts)} seeds each"
    raise ConfigError(
        f"{source}: the sweep expands to {_number(runs)} runs ({sizes}); the limit is {MOST_RUNS:,} — split it into several configs"
    )


def _seed_count(seeds: Any) -> int:
    # Anything but a non-empty list is one seed here, and refused or read as such by validation.
    return len(seeds) if isinstance(seeds, list) and seeds else 1


def _count(number: int, noun: str) -> str:
    return f"{_number(number)} {noun}{'' if number == 1 else 's'}"


def _number(number: int) -> str:
    # A grid of many keys multiplies to numbers whose digits alone would fill the error's line.
    return f"{number:,}" if number < 10**15 else f"about 10^{math.floor(math.log10(number))}"


def _parse_sweep(sweep: Any, source: str) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, list[Any]]]:
    if sweep is None:
        return [("", {})], {}
    if not isinstance(sweep, dict):
        raise ConfigError(f"{source}: sweep must be a mapping with keys {', '.join(SWEEP_KEYS)}")
    for key in sweep:
        if key not in SWEEP_KEYS:
            match = difflib.get_close_matches(str(key), SWEEP_KEYS, n=1)
            hint = f" (did you mean '{match[0]}'?)" if match else ""
            raise ConfigError(f"{source}: unknown key sweep.{key} (allowed: {', '.join(SWEEP_KEYS)}){hint}")
    grid = sweep.get("grid") or {}
    if not isinstance(grid, dict):
        raise ConfigError(f"{source}: sweep.grid must map dotted keys to lists of values, e.g. model.cell: [lstm, gru]")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{source}: sweep.grid.{key} must be a non-empty list of values, got {values!r}")
    variants = sweep.get("variants")
    if variants is None:
        return [("", {})], grid
    if not isinstance(variants, dict) or not variants:
        raise ConfigError(
            f"{source}: sweep.variants must map names to sets of keys, e.g. gru2: {{model.cell: gru, model.layers: 2}}"
        )
    parsed = []
    for name, values in variants.items():
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]*", str(name)):
            raise ConfigError(
                f"{source}: sweep.variants.{name}: a variant name may only hold letters, digits, '_', '-' and '.'"
            )
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: sweep.variants.{name} must map dotted keys to values, got {values!r}")
        parsed.append((str(name), values))
    return parsed, grid


def _grid_points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[key] for key in keys))]


def _name_part(key: str, value: Any) -> str:
    leaf = key.split(".")[-1]
    text = re.sub(r"[^A-Za-z0-9_.\-]", "_", str(value))
    # Strings speak for themselves (gru); numbers and booleans need their key (layers2).
    return text if isinstance(value, str) else f"{leaf}{text}"


def _with_seed_count(config: Config, seed_count: int) -> Config:
    """The config with `--seeds N`'s seeds, train.seed .. train.seed + N - 1, validated as if written in train.seeds."""
    seed = config.train.seed
    seeds = [seed + offset for offset in range(seed_count)]
    label = f"--seeds {seed_count} from train.seed={seed}"
    return config_from_mapping(config.to_dict(), overrides=[("train.seeds", seeds, label)]).keeping_backend_choice(
        config
    )


def per_seed(config: Config) -> list[Config]:
    train = config.train
    seeds = train.seeds or [train.seed]
    return [
        config.model_copy(update={"train": train.model_copy(update={"seed": seed, "seeds": None})}) for seed in seeds
    ]


def _point_label(variant: str, grid_values: dict[str, Any]) -> str:
    """Where a sweep point comes from, for an error: variant 'gru' at model.layers=2."""
    setting = ", ".join(f"{key}={value!r}" for key, value in grid_values.items())
    if variant and setting:
        return f"variant {variant!r} at {setting}"
    return f"variant {variant!r}" if variant else f"grid point {setting}"


class _Clashes:
    """Refuses runs of a sweep that would be confused with one another.

    Results are compared by name, so two points with one name but different settings would be
    averaged together as if they were one; and two points that resolve to the same settings
    would train the same runs twice under two names.
    """

    def __init__(self, source: str):
        self.source = source
        self.points = 0
        # Name -> (settings apart from the seeds, the point that had it first).
        self.settings_by_name: dict[str, tuple[str, str]] = {}
        # One run's settings apart from its name -> (point number, point).
        self.points_by_run: dict[str, tuple[int, str]] = {}

    def check(self, config: Config, runs: list[Config], point: str) -> None:
        """Refuse the point `config` (whose seeds gave `runs`) if it clashes with one before it."""
        self.points += 1
        settings = _nameless(config).group_fingerprint()
        settings_before, point_before = self.settings_by_name.setdefault(config.name, (settings, point))
        if settings_before != settings:
            raise ConfigError(
                f"{self.source}: {point_before} and {point} are both named {config.name!r} but differ in settings; "
                "each needs a name of its own"
            )
        for run in runs:
            number_before, point_before = self.points_by_run.setdefault(
                _nameless(run).fingerprint(), (self.points, point)
            )
            if number_before == self.points:
                continue
            if point_before == point:
                raise ConfigError(
                    f"{self.source}: {point} comes twice, as the identical run (seed {run.train.seed}); remove one of them"
                )
            raise ConfigError(
                f"{self.source}: {point_before} and {point} describe the identical run (seed {run.train.seed}); remove one of them"
            )


def _nameless(config: Config) -> Config:
    return config.model_copy(update={"name": ""})
