"""Formatting recorded runs as a comparison table (plain text, Markdown or CSV)."""

from __future__ import annotations

import csv
import io
from typing import Any, Callable

from tabulate import tabulate

FORMATS = ("table", "markdown", "csv")
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
    if output_format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {output_format!r}")
    # Macro-F1 is shown only when some run has it (runs recorded before it existed don't).
    has_f1 = any("val_macro_f1" in record.get("result", {}) for record in records)
    columns = [column for column in COLUMNS if has_f1 or column[0] != "val macro-F1"]
    if show_status:
        columns += [("status", lambda record: record["status"]), ("run", lambda record: record["run_id"])]
    headers = [header for header, _ in columns]
    rows = [[read(record) for _, read in columns] for record in sort_runs(records)]
    if output_format == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(headers)
        writer.writerows(rows)
        return buffer.getvalue().rstrip("\n")
    style = "github" if output_format == "markdown" else "simple"
    return tabulate(rows, headers=headers, tablefmt=style, disable_numparse=True, colalign=_alignment(headers))


def _alignment(headers: list[str]) -> tuple[str, ...]:
    numeric = {"layers", "embedding dim", "units", "params", "best val acc", "best epoch", "val macro-F1", "test acc", "s/epoch"}
    return tuple("right" if header in numeric else "left" for header in headers)
