"""Formatting recorded runs: comparison tables (plain text, Markdown, CSV, JSON) and reports.

Every table and report counts the runs that `verdict.counted_runs` counts: one completed run per
config and seed, the one that finished last.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import platform
import statistics
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import Any, Callable, Sequence

from tabulate import tabulate

from rnnbench.record import RunRecord
from rnnbench.results import write_atomic
from rnnbench.verdict import (
    DELTA,
    OUTCOMES,
    TEST_KEY,
    VALIDATION_KEY,
    Group,
    counted_runs,
    group_runs,
    judge,
    mark_replaced,
    rows_half_width,
    val_test_gap,
    verdict_json,
    verdict_lines,
)

FORMATS = ("table", "markdown", "csv", "json")
_BASELINES = ("ann", "embedding", "cnn")


def _cell(record: RunRecord) -> str:
    return f"bi-{record.cell}" if record.bidirectional and record.cell not in _BASELINES else record.cell


def _recurrent_only(read: Callable[[RunRecord], Any]) -> Callable[[RunRecord], Any]:
    def value(record: RunRecord) -> Any:
        found = read(record)
        return "-" if record.cell in _BASELINES or found is None else found

    return value


def _result(key: str, digits: int) -> Callable[[RunRecord], Any]:
    def value(record: RunRecord) -> Any:
        number = record.metric(key)
        return "-" if number is None else f"{number:.{digits}f}"

    return value


def _gap(record: RunRecord) -> str:
    gap = val_test_gap(record)
    return "-" if gap is None else f"{gap:+.4f}"


def _collapsed(record: RunRecord) -> bool:
    return record.result is not None and record.result.collapsed is True


def _warnings(record: RunRecord) -> str:
    warnings: Sequence[str] = record.warnings
    if _collapsed(record) and not warnings:
        # The runner words a collapse as one of the warnings; a record without them still shows it.
        warnings = ["collapsed: one class predicted for every validation row"]
    return "; ".join(warnings)


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


def _or_dash(value: Any) -> Any:
    return _or(value, "-")


# (header, how to read it from a run's record); a run that did not complete may lack parameters,
# backend and device (see record.RECORD_FIELDS).
COLUMNS: list[tuple[str, Callable[[RunRecord], Any]]] = [
    ("name", lambda record: record.name),
    ("dataset", lambda record: _or_dash(record.dataset)),
    ("cell", _cell),
    ("layers", _recurrent_only(lambda record: record.layers)),
    ("embedding dim", lambda record: "-" if record.cell == "ann" else _or_dash(record.embedding_dim)),
    ("units", _recurrent_only(lambda record: record.units)),
    ("params", lambda record: "-" if record.parameters is None else f"{record.parameters:,}"),
    ("best val acc", _result("best_val_accuracy", 4)),
    ("best epoch", lambda record: _or_dash(record.metric("best_epoch"))),
    ("val macro-F1", _result("val_macro_f1", 4)),
    ("test acc", _result("test_accuracy", 4)),
    # Best validation accuracy minus test accuracy: large when choosing on validation flatters.
    ("val−test", _gap),
    ("s/epoch", _result("mean_epoch_seconds", 1)),
    ("backend", lambda record: _or_dash(record.backend)),
    ("device", lambda record: _or_dash(record.device)),
    # Shown only when some run has one: a collapsed model (one class for every validation row) or a runner's warning.
    ("warnings", _warnings),
]


def sort_runs(records: list[RunRecord]) -> list[RunRecord]:
    """Best validation accuracy first; runs without one (not completed) last."""
    return sorted(records, key=lambda record: -_or(record.metric("best_val_accuracy"), -1.0))


def format_runs(records: list[RunRecord], output_format: str = "table", show_status: bool = False) -> str:
    """One row per run, best validation accuracy first: the counted runs (`verdict.counted_runs`),
    or with `show_status` every run, a completed one that a later run replaced shown as `replaced`."""
    records = mark_replaced(records) if show_status else counted_runs(records)
    # Macro-F1 is shown only when some run has it (runs recorded before it existed don't).
    has_f1 = any(record.metric("val_macro_f1") is not None for record in records)
    has_warnings = any(_warnings(record) for record in records)
    columns = [
        column
        for column in COLUMNS
        if (has_f1 or column[0] != "val macro-F1") and (has_warnings or column[0] != "warnings")
    ]
    if show_status:
        columns += [("status", lambda record: record.status), ("run", lambda record: record.run_id)]
    ordered = sort_runs(records)
    if output_format == "json":
        return json.dumps([{**record.to_json(), "val_test_gap": val_test_gap(record)} for record in ordered], indent=2)
    return _render(
        [header for header, _ in columns], [[read(record) for _, read in columns] for record in ordered], output_format
    )


def _mean(key: str, digits: int) -> Callable[[Group], str]:
    def value(group: Group) -> str:
        number = group.mean_of(key)
        return "-" if number is None else f"{number:.{digits}f}"

    return value


def _spread(key: str) -> Callable[[Group], str]:
    """Mean ± standard deviation over the group's seeds."""

    def value(group: Group) -> str:
        values = group.values(key)
        if not values:
            return "-"
        mean = statistics.fmean(values)
        return f"{mean:.4f} ± {statistics.stdev(values):.4f}" if len(values) > 1 else f"{mean:.4f}"

    return value


def _interval(group: Group) -> str:
    interval = group.interval
    return "-" if interval is None else f"[{interval[0]:.4f}, {interval[1]:.4f}]"


def _test_rows_noise(group: Group) -> str:
    """Half the 95% interval that the test split's size alone puts on one accuracy, in points."""
    accuracy, rows = group.mean_of(TEST_KEY), group.test_rows
    return "-" if accuracy is None or not rows else f"±{100 * rows_half_width(accuracy, rows):.2f}"


def _mean_gap(group: Group) -> str:
    gaps = group.val_test_gaps
    return "-" if not gaps else f"{statistics.fmean(gaps):+.4f}"


def _group_warnings(group: Group) -> str:
    runs = "run" if group.n == 1 else "runs"
    parts = [f"collapsed in {group.collapsed} of {group.n} {runs}"] if group.collapsed else []
    parts += [f"warnings in {group.with_warnings} of {group.n} {runs}"] if group.with_warnings else []
    return "; ".join(parts)


def _first(read: Callable[[RunRecord], Any]) -> Callable[[Group], Any]:
    return lambda group: read(group.records[0])


def group_columns(key: str) -> list[tuple[str, Callable[[Group], Any]]]:
    """The per-config table's columns, the outcome the verdict tests (`key`) first with its 95% CI."""
    outcome = [("test acc", _spread(TEST_KEY)), ("best val acc", _spread(VALIDATION_KEY))]
    if key == VALIDATION_KEY:
        outcome.reverse()
    return [
        *((header, _first(read)) for header, read in COLUMNS[:7]),
        ("n", lambda group: group.n),
        outcome[0],
        ("95% CI", _interval),
        # What the test split's size alone does to one accuracy (95%, in points): noise seeds don't show.
        ("± test rows", _test_rows_noise),
        outcome[1],
        ("val macro-F1", _mean("val_macro_f1", 4)),
        ("val−test", _mean_gap),
        ("s/epoch", _mean("mean_epoch_seconds", 1)),
        ("backend", _first(lambda record: record.backend)),
        ("device", _first(lambda record: record.device)),
        ("warnings", _group_warnings),
    ]


def format_groups(
    records: list[RunRecord],
    output_format: str = "table",
    with_verdict: bool = True,
    outcome: str = "test",
    delta: float = DELTA,
    difference_of: Any = None,
) -> str:
    """One row per config (its runs over seeds summarised), highest mean outcome first, then the
    verdict (`verdict.py`): on `outcome` ("test": test accuracy at the best-validation epoch, or
    "validation"), equivalence margin `delta`, and with `difference_of` a multi-bootstrap."""
    key = OUTCOMES[outcome]
    groups = group_runs(records, key)
    if output_format == "json":
        families = judge(groups, outcome, delta=delta, difference_of=difference_of) if groups else []
        return json.dumps(
            {
                "groups": [_group_dict(group) for group in groups],
                "verdict": verdict_json(families),
                "verdict_lines": verdict_lines(families),
            },
            indent=2,
        )
    has_f1 = any(group.mean_of("val_macro_f1") is not None for group in groups)
    has_warnings = any(_group_warnings(group) for group in groups)
    has_rows = any(group.test_rows for group in groups)
    columns = [
        column
        for column in group_columns(key)
        if (has_f1 or column[0] != "val macro-F1")
        and (has_warnings or column[0] != "warnings")
        and (has_rows or column[0] != "± test rows")
    ]
    table = _render(
        [header for header, _ in columns], [[read(group) for _, read in columns] for group in groups], output_format
    )
    if output_format == "csv" or not with_verdict:
        return table
    lines = verdict_lines(judge(groups, outcome, delta=delta, difference_of=difference_of)) if groups else []
    if output_format == "markdown":
        lines = _markdown_verdict(lines)
    return table + "\n\n" + "\n".join(lines)


def _markdown_verdict(lines: list[str]) -> list[str]:
    """The verdict as a Markdown list: every statement its own item."""
    return lines[:1] + [""] + [f"- {line.strip().removeprefix('- ')}" for line in lines[1:]] if lines else []


def _group_dict(group: Group) -> dict[str, Any]:
    first = group.records[0]
    validation, test = group.values(VALIDATION_KEY), group.values(TEST_KEY)
    return {
        "name": group.name,
        "config": first.config,
        "n": group.n,
        "seeds": group.seeds,
        "outcome": group.key,
        "ci95": group.interval,
        "best_val_accuracy_mean": statistics.fmean(validation),
        "best_val_accuracy_std": statistics.stdev(validation) if len(validation) > 1 else 0.0,
        "val_macro_f1_mean": group.mean_of("val_macro_f1"),
        "test_accuracy_mean": statistics.fmean(test) if test else None,
        "test_accuracy_std": (statistics.stdev(test) if len(test) > 1 else 0.0) if test else None,
        "test_rows": group.test_rows,
        "test_rows_half_width": rows_half_width(statistics.fmean(test), group.test_rows)
        if test and group.test_rows
        else None,
        "val_test_gap_mean": statistics.fmean(group.val_test_gaps) if group.val_test_gaps else None,
        "mean_epoch_seconds": group.mean_of("mean_epoch_seconds"),
        "parameters": first.parameters,
        "backend": first.backend,
        "device": first.device,
        "runs": [record.run_id for record in group.records],
        "collapsed_runs": [record.run_id for record in group.records if _collapsed(record)],
        "warnings": {record.run_id: list(record.warnings) for record in group.records if record.warnings},
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
    numeric = {
        "layers",
        "embedding dim",
        "units",
        "params",
        "n",
        "best val acc",
        "95% CI",
        "± test rows",
        "best epoch",
        "val macro-F1",
        "test acc",
        "val−test",
        "s/epoch",
    }
    return tuple("right" if header in numeric else "left" for header in headers)


def write_report(
    records: list[RunRecord],
    runs_dir: Path,
    out_dir: Path,
    title: str,
    command: str,
    outcome: str = "test",
    delta: float = DELTA,
    difference_of: Any = None,
) -> list[Path]:
    """Write report.md (pictures beside it) and a self-contained report.html into `out_dir`; the
    verdict as `format_groups` makes it."""
    from rnnbench import plots

    out_dir.mkdir(parents=True, exist_ok=True)
    groups = group_runs(records, OUTCOMES[outcome])
    completed = [record for group in groups for record in group.records]
    label = groups[0].label if groups else OUTCOMES[outcome]
    pictures: list[tuple[str, Path]] = [
        (f"{label[0].upper()}{label[1:]} per config", plots.comparison_chart(groups, out_dir / "comparison.png")),
        (
            "Accuracy against parameter count",
            plots.accuracy_against(groups, "parameters", "parameters", out_dir / "accuracy_vs_parameters.png"),
        ),
        (
            "Accuracy against seconds per epoch",
            plots.accuracy_against(
                groups, "mean_epoch_seconds", "seconds per epoch", out_dir / "accuracy_vs_seconds.png"
            ),
        ),
    ]
    for index, group in enumerate(groups, start=1):
        path = out_dir / f"curves_{index:02d}_{_file_safe(group.name)}.png"
        pictures.append((f"Learning curves: {group.name}", plots.learning_curves(group, runs_dir, path)))

    wall = sum(_seconds_spent(record) for record in completed)
    # Completed runs that a later run of the same config and seed replaced (verdict.counted_runs).
    replaced = sum(1 for record in records if record.metric("best_val_accuracy") is not None) - len(completed)
    facts = [
        f"{len(completed)} completed runs in {len(groups)} configs, from `{runs_dir}`"
        + (f" ({replaced} more replaced by a later run of the same config and seed)" if replaced else ""),
        f"time spent in these runs, added up: {wall / 60:.1f} min",
        f"made with `{command}` on {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
    ]
    environment = _environment(completed)
    grouped = format_groups(completed, "markdown", with_verdict=False, outcome=outcome)
    per_run = format_runs(completed, "markdown")
    lines = verdict_lines(judge(groups, outcome, delta=delta, difference_of=difference_of)) if groups else []

    markdown = [f"# {title}", ""] + [f"- {fact}" for fact in facts] + ["", "## Comparison", "", grouped, ""]
    markdown += ["## Verdict", ""] + _markdown_verdict(lines)
    markdown += ["", "## Pictures", ""]
    for caption, path in pictures:
        markdown += [f"### {caption}", "", f"![{caption}]({path.name})", ""]
    markdown += ["## Runs", "", per_run, "", "## Environment", ""] + [
        f"- {key}: {value}" for key, value in environment.items()
    ]
    markdown_path = out_dir / "report.md"
    write_atomic(markdown_path, ("\n".join(markdown) + "\n").encode("utf-8"))

    html = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>",
        _STYLE,
        "</head><body>",
        f"<h1>{escape(title)}</h1><ul>" + "".join(f"<li>{_inline(fact)}</li>" for fact in facts) + "</ul>",
        "<h2>Comparison</h2>",
        _html_table(format_groups(completed, "csv", outcome=outcome)),
        "<h2>Verdict</h2><p>" + "<br>".join(escape(line) for line in lines) + "</p>",
        "<h2>Pictures</h2>",
    ]
    for caption, path in pictures:
        encoded = base64.b64encode(path.read_bytes()).decode("ascii")
        html.append(f"<h3>{escape(caption)}</h3><img alt='{escape(caption)}' src='data:image/png;base64,{encoded}'>")
    html += ["<h2>Runs</h2>", _html_table(format_runs(completed, "csv")), "<h2>Environment</h2><ul>"]
    html += [f"<li>{escape(key)}: {escape(str(value))}</li>" for key, value in environment.items()] + [
        "</ul></body></html>"
    ]
    html_path = out_dir / "report.html"
    write_atomic(html_path, "\n".join(html).encode("utf-8"))
    return [markdown_path, html_path] + [path for _, path in pictures]


_STYLE = (
    "<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
    "table{border-collapse:collapse;font-size:0.85em}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
    "img{max-width:100%}</style>"
)


def _seconds_spent(record: RunRecord) -> float:
    """The run's whole time in its last process (its training alone in records from before that was kept)."""
    result = record.result
    assert result is not None  # A counted run completed.
    return _or(result.wall_seconds, _or(result.train_seconds, 0.0))


def _environment(records: list[RunRecord]) -> dict[str, str]:
    versions: dict[str, set[str]] = {}
    for record in records:
        for package, version in (record.versions or {}).items():
            versions.setdefault(package, set()).add(version)
    environment = {
        "backend": ", ".join(sorted({str(record.backend) for record in records})),
        "device": ", ".join(sorted({str(record.device) for record in records})),
        "report written on": platform.platform(),
    }
    environment.update({package: ", ".join(sorted(found)) for package, found in sorted(versions.items())})
    return environment


def _html_table(csv_text: str) -> str:
    rows = list(csv.reader(io.StringIO(csv_text)))
    return tabulate(rows[1:], headers=rows[0], tablefmt="html", disable_numparse=True)


def _inline(text: str) -> str:
    parts = escape(text).split("`")
    return "".join(f"<code>{part}</code>" if index % 2 else part for index, part in enumerate(parts))


def _file_safe(name: str) -> str:
    return "".join(character if character.isalnum() or character in "-_." else "_" for character in name)
