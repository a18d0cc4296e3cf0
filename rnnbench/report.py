"""Formatting recorded runs: comparison tables (plain text, Markdown, CSV, JSON) and reports."""

from __future__ import annotations

import csv
import io
import json
from typing import Any, Callable

from tabulate import tabulate

from rnnbench.verdict import Group, group_runs, verdict

FORMATS = ("table", "markdown", "csv", "json")
_BASELINES = ("ann", "embedding")


def _cell(record: dict[str, Any]) -> str:
    model = record["config"]["model"]
    return f"bi-{model['cell']}" if model["bidirectional"] and model["cell"] not in _BASELINES else model["cell"]


def _recurrent_only(key: str) -> Callable[[dict[str, Any]], Any]:
    def value(record: dict[str, Any]) -> Any:
        model = record["config"]["model"]
        return "-" if model["cell"] in _BASELINES else model[key]

    return value


def _result(key: str, digits: int) -> Callable[[dict[str, Any]], Any]:
    def value(record: dict[str, Any]) -> Any:
        number = record.get("result", {}).get(key)
        return "-" if number is None else f"{number:.{digits}f}"

    return value


# (header, how to read it from a run's record)
COLUMNS: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
    ("name", lambda record: record["name"]),
    ("dataset", lambda record: record.get("data", {}).get("dataset", "-")),
    ("cell", _cell),
    ("layers", _recurrent_only("layers")),
    ("embedding dim", lambda record: "-" if record["config"]["model"]["cell"] == "ann" else record["config"]["model"]["embedding_dim"]),
    ("units", _recurrent_only("units")),
    ("params", lambda record: f"{record['parameters']:,}"),
    ("best val acc", _result("best_val_accuracy", 4)),
    ("best epoch", lambda record: record.get("result", {}).get("best_epoch", "-")),
    ("val macro-F1", _result("val_macro_f1", 4)),
    ("test acc", _result("test_accuracy", 4)),
    ("s/epoch", _result("mean_epoch_seconds", 1)),
    ("backend", lambda record: record["backend"]),
    ("device", lambda record: record["device"]),
]


def sort_runs(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Best validation accuracy first; runs without one (not completed) last."""
    return sorted(records, key=lambda record: -record.get("result", {}).get("best_val_accuracy", -1.0))


def format_runs(records: list[dict[str, Any]], output_format: str = "table", show_status: bool = False) -> str:
    """One row per run, best validation accuracy first."""
    # Macro-F1 is shown only when some run has it (runs recorded before it existed don't).
    has_f1 = any("val_macro_f1" in record.get("result", {}) for record in records)
    columns = [column for column in COLUMNS if has_f1 or column[0] != "val macro-F1"]
    if show_status:
        columns += [("status", lambda record: record["status"]), ("run", lambda record: record["run_id"])]
    ordered = sort_runs(records)
    if output_format == "json":
        return json.dumps(ordered, indent=2)
    return _render([header for header, _ in columns], [[read(record) for _, read in columns] for record in ordered], output_format)


def _mean(key: str, digits: int) -> Callable[[Group], str]:
    def value(group: Group) -> str:
        number = group.mean_of(key)
        return "-" if number is None else f"{number:.{digits}f}"

    return value


def _interval(group: Group) -> str:
    interval = group.interval
    return "-" if interval is None else f"[{interval[0]:.4f}, {interval[1]:.4f}]"


def _first(read: Callable[[dict[str, Any]], Any]) -> Callable[[Group], Any]:
    return lambda group: read(group.records[0])


GROUP_COLUMNS: list[tuple[str, Callable[[Group], Any]]] = [
    *((header, _first(read)) for header, read in COLUMNS[:7]),
    ("n", lambda group: group.n),
    ("best val acc", lambda group: f"{group.mean:.4f} ± {group.std:.4f}" if group.n > 1 else f"{group.mean:.4f}"),
    ("95% CI", _interval),
    ("val macro-F1", _mean("val_macro_f1", 4)),
    ("test acc", _mean("test_accuracy", 4)),
    ("s/epoch", _mean("mean_epoch_seconds", 1)),
    *((header, _first(read)) for header, read in COLUMNS[-2:]),
]


def format_groups(records: list[dict[str, Any]], output_format: str = "table", with_verdict: bool = True) -> str:
    """One row per config (its runs over seeds summarised), best mean first, then the verdict."""
    groups = group_runs(records)
    if output_format == "json":
        return json.dumps({"groups": [_group_dict(group) for group in groups], "verdict": verdict(groups)}, indent=2)
    has_f1 = any(group.mean_of("val_macro_f1") is not None for group in groups)
    columns = [column for column in GROUP_COLUMNS if has_f1 or column[0] != "val macro-F1"]
    table = _render([header for header, _ in columns], [[read(group) for _, read in columns] for group in groups], output_format)
    if output_format == "csv" or not with_verdict:
        return table
    lines = verdict(groups)
    if output_format == "markdown":
        lines = [lines[0], ""] + lines[1:]
    return table + "\n\n" + "\n".join(lines)


def _group_dict(group: Group) -> dict[str, Any]:
    first = group.records[0]
    return {
        "name": group.name,
        "config": first["config"],
        "n": group.n,
        "seeds": group.seeds,
        "best_val_accuracy_mean": group.mean,
        "best_val_accuracy_std": group.std,
        "best_val_accuracy_ci95": group.interval,
        "val_macro_f1_mean": group.mean_of("val_macro_f1"),
        "test_accuracy_mean": group.mean_of("test_accuracy"),
        "mean_epoch_seconds": group.mean_of("mean_epoch_seconds"),
        "parameters": first["parameters"],
        "backend": first["backend"],
        "device": first["device"],
        "runs": [record["run_id"] for record in group.records],
    }


def _render(headers: list[str], rows: list[list[Any]], output_format: str) -> str:
    if output_format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {output_format!r}")
    if output_format == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(headers)
        writer.writerows(rows)
        return buffer.getvalue().rstrip("\n")
    style = "github" if output_format == "markdown" else "simple"
    return tabulate(rows, headers=headers, tablefmt=style, disable_numparse=True, colalign=_alignment(headers))


def _alignment(headers: list[str]) -> tuple[str, ...]:
    numeric = {"layers", "embedding dim", "units", "params", "n", "best val acc", "95% CI", "best epoch", "val macro-F1", "test acc", "s/epoch"}
    return tuple("right" if header in numeric else "left" for header in headers)
