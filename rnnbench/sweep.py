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
unknown key or an impossible value fails before anything trains.
"""

from __future__ import annotations

import difflib
import itertools
import re
from pathlib import Path
from typing import Any, Optional, Sequence

from rnnbench.config import Config, ConfigError, config_from_mapping, read_mapping

SWEEP_KEYS = ("grid", "variants")


def expand(path: str | Path, overrides: Sequence[str] = (), seed_count: Optional[int] = None) -> list[Config]:
    """Every run that the config at `path` describes, in order: variants, then grid, then seeds."""
    source = str(path)
    raw = read_mapping(path)
    sweep = raw.pop("sweep", None)
    variants, grid = _parse_sweep(sweep, source)
    base_name = raw["name"]
    configs = []
    for (variant, variant_values), grid_values in itertools.product(variants, _grid_points(grid)):
        typed = [(key, value, f"{source}: sweep.variants.{variant}") for key, value in variant_values.items()]
        typed += [(key, value, f"{source}: sweep.grid") for key, value in grid_values.items()]
        name_parts = [base_name] + ([variant] if variant else []) + [_name_part(key, value) for key, value in grid_values.items()]
        config = config_from_mapping({**raw, "name": "-".join(name_parts)}, source=source, overrides=[*typed, *overrides])
        configs.extend(_per_seed(config, seed_count))
    return configs


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
        raise ConfigError(f"{source}: sweep.variants must map names to sets of keys, e.g. gru2: {{model.cell: gru, model.layers: 2}}")
    parsed = []
    for name, values in variants.items():
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]*", str(name)):
            raise ConfigError(f"{source}: sweep.variants.{name}: a variant name may only hold letters, digits, '_', '-' and '.'")
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


def _per_seed(config: Config, seed_count: Optional[int]) -> list[Config]:
    train = config.train
    if seed_count is not None:
        seeds = [train.seed + offset for offset in range(seed_count)]
    else:
        seeds = train.seeds or [train.seed]
    return [config.model_copy(update={"train": train.model_copy(update={"seed": seed, "seeds": None})}) for seed in seeds]
