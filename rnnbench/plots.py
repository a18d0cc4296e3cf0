"""Pictures of recorded runs, drawn headless to PNG files with matplotlib."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # No display: draw straight to files.

import matplotlib.pyplot as plt  # noqa: E402  (must follow the backend choice)
import matplotlib.ticker  # noqa: E402

from rnnbench.record import RunRecord  # noqa: E402
from rnnbench.results import run_directory  # noqa: E402
from rnnbench.verdict import Group  # noqa: E402

COLORS = plt.rcParams["axes.prop_cycle"].by_key()["color"]


# What a learning curve reads from each epoch of a run's history.jsonl.
HISTORY_KEYS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy")


def read_history(runs_dir: Path, record: RunRecord) -> list[dict[str, Any]]:
    """The run's epochs ([] without a history file); a damaged file is a one-line ResultsError."""
    return run_directory(runs_dir, record).read_history(required=HISTORY_KEYS)


def learning_curves(group: Group, runs_dir: Path, path: Path) -> Path:
    """Training (dashed) and validation (solid) accuracy and loss per epoch for each run of a group; dots mark best epochs."""
    figure, (accuracy_axis, loss_axis) = plt.subplots(1, 2, figsize=(10, 3.8))
    without_history = []
    for index, record in enumerate(sorted(group.records, key=lambda record: record.seed)):
        history = read_history(runs_dir, record)
        if not history:
            without_history.append(record.seed)
            continue
        color = COLORS[index % len(COLORS)]
        epochs = [entry["epoch"] for entry in history]
        seed = record.seed
        for axis, key in ((accuracy_axis, "accuracy"), (loss_axis, "loss")):
            axis.plot(
                epochs, [entry[key] for entry in history], "--", color=color, alpha=0.6, label=f"train, seed {seed}"
            )
            axis.plot(
                epochs, [entry[f"val_{key}"] for entry in history], "-", color=color, label=f"validation, seed {seed}"
            )
        best = next((entry for entry in history if entry["epoch"] == record.metric("best_epoch")), None)
        if best is not None:
            accuracy_axis.plot([best["epoch"]], [best["val_accuracy"]], "o", color=color, markersize=8)
            loss_axis.plot([best["epoch"]], [best["val_loss"]], "o", color=color, markersize=8)
    for axis, label in ((accuracy_axis, "accuracy"), (loss_axis, "loss")):
        axis.set_xlabel("epoch")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
        axis.xaxis.get_major_locator().set_params(integer=True)
    if accuracy_axis.get_legend_handles_labels()[0]:  # Runs without a history file draw nothing.
        accuracy_axis.legend(fontsize=7, loc="best")
    title = f"{group.name}: learning curves (dots: best epoch by validation accuracy)"
    if without_history:
        # The command warns of each such run too; the picture says it to whoever reads the report.
        seeds = ", ".join(str(seed) for seed in without_history)
        title += f"\nnot drawn, {'their' if len(without_history) > 1 else 'its'} history.jsonl gone: seed {seeds}"
    figure.suptitle(title)
    return _save(figure, path)


def short_names(groups: list[Group]) -> tuple[dict[str, str], str]:
    """Labels without the prefix all names share (a sweep's name), and that prefix for the title."""
    names = [group.name for group in groups]
    if len(names) < 2:
        return {name: name for name in names}, ""
    shared = os.path.commonprefix(names)
    shared = shared[: shared.rfind("-") + 1]
    return {name: name[len(shared) :] or name for name in names}, shared.rstrip("-")


def comparison_chart(groups: list[Group], path: Path) -> Path:
    """Mean outcome per config (the groups' `label`), error bars one standard deviation, dots the single runs."""
    labels, shared = short_names(groups)
    ordered = list(reversed(groups))
    figure, axis = plt.subplots(figsize=(8, max(3.0, 0.45 * len(ordered) + 1.5)))
    positions = range(len(ordered))
    axis.barh(
        list(positions),
        [group.mean for group in ordered],
        xerr=[group.std for group in ordered],
        color=COLORS[0],
        alpha=0.35,
        capsize=4,
        label="mean ± std",
    )
    for position, group in zip(positions, ordered):
        axis.plot(group.accuracies, [position] * group.n, "o", color=COLORS[0], markersize=4)
    axis.set_yticks(list(positions), [f"{labels[group.name]} (n={group.n})" for group in ordered])
    low = min(min(group.accuracies) for group in groups)
    high = max(max(group.accuracies) for group in groups)
    margin = max(0.01, (high - low) * 0.15)
    axis.set_xlim(low - margin, high + margin)
    axis.set_xlabel(groups[0].label)
    axis.grid(axis="x", alpha=0.3)
    axis.set_title(f"{shared + ': ' if shared else ''}mean per config ± std (dots: single runs)")
    return _save(figure, path)


def accuracy_against(groups: list[Group], key: str, label: str, path: Path) -> Path:
    """Mean outcome (the groups' `label`, ± std) against a per-run quantity such as parameters or seconds per epoch."""
    labels, shared = short_names(groups)
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for index, group in enumerate(groups):
        x = _mean_of(group, key)
        color = COLORS[index % len(COLORS)]
        axis.errorbar([x], [group.mean], yerr=[group.std], fmt="o", color=color, capsize=4, label=labels[group.name])
    axis.legend(fontsize=8, loc="best")
    axis.xaxis.set_major_formatter(
        matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:,.0f}" if value >= 1000 else f"{value:g}")
    )
    axis.set_xlabel(label)
    axis.set_ylabel(groups[0].label)
    axis.grid(alpha=0.3)
    axis.set_title(f"{shared + ': ' if shared else ''}accuracy against {label}")
    return _save(figure, path)


def _mean_of(group: Group, key: str) -> float:
    if key == "parameters":
        return float(group.records[0].parameters or 0)
    value = group.mean_of(key)
    return float("nan") if value is None else value


def _save(figure: Any, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
