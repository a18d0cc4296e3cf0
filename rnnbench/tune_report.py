"""The report of a tuning: per candidate its trials, best settings, optimization history and
parameter importances (Optuna's own pictures), then the winners' seeded comparison and verdict."""

from __future__ import annotations

import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rnnbench import report
from rnnbench.results import write_atomic
from rnnbench.tune import RUN_ID, STATUS, Candidate, Settings, best_trial, pruner_description, settings_text, value_text


def write_tune_report(
    candidates: list[Candidate], settings: Settings, finals: list[dict[str, Any]], runs_dir: Path, out_dir: Path, title: str, command: str,
) -> list[Path]:
    """Write tuning.md (pictures beside it), and the winners' standard report (report.md, report.html)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = report.write_report(finals, runs_dir, out_dir, f"{title}: the winners over seeds {', '.join(map(str, settings.seeds))}", command)
    markdown = [
        f"# {title}",
        "",
        f"- {len(candidates)} candidates, {settings.trials} trials each, the same search space, search settings and pruner"
        f" ({pruner_description(settings)}); seeded TPE sampler, {settings.random_trials} random trials first; trials train with seed {settings.trial_seed}",
        f"- search settings (trials only): {settings_text(settings.search) or 'none'}",
        f"- the winners were trained again over fresh seeds {', '.join(map(str, settings.seeds))} with the config's own data settings",
        f"- made with `{command}` on {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        "",
        "## Winners over fresh seeds",
        "",
        report.format_groups(finals, "markdown"),
        "",
        f"Pictures and every run: [report.md]({written[0].name}).",
        "",
    ]
    for candidate in candidates:
        markdown += _candidate_section(candidate, settings, out_dir, written)
    path = out_dir / "tuning.md"
    write_atomic(path, ("\n".join(markdown) + "\n").encode("utf-8"))
    return [path, *written]


def _candidate_section(candidate: Candidate, settings: Settings, out_dir: Path, written: list[Path]) -> list[str]:
    trials = candidate.study.get_trials(deepcopy=False)
    counted = [trial for trial in trials if trial.state.name in ("COMPLETE", "PRUNED")]
    best = best_trial(candidate)
    lines = [f"## {candidate.name}", ""]
    pruned = sum(1 for trial in counted if trial.state.name == "PRUNED")
    lines.append(f"{len(counted)} trials ({pruned} pruned). Best: " + (
        f"t{best.number:03d}, val_accuracy {best.value:.4f}, {settings_text(best.params)}" if best else "none completed"
    ))
    lines += ["", "| trial | outcome | best val acc | epochs | " + " | ".join(dimension.key for dimension in settings.space) + " | run |"]
    lines.append("|" + "---|" * (5 + len(settings.space)))
    for trial in counted:
        outcome = trial.user_attrs.get(STATUS, trial.state.name.lower())
        value = f"{trial.value:.4f}" if trial.state.name == "COMPLETE" and outcome == "completed" else (
            f"({max(trial.intermediate_values.values()):.4f})" if trial.intermediate_values else "-"
        )
        cells = [f"t{trial.number:03d}", outcome, value, str(len(trial.intermediate_values))]
        cells += [value_text(trial.params.get(dimension.key)) for dimension in settings.space]
        cells.append(str(trial.user_attrs.get(RUN_ID, "-")))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for caption, picture in _pictures(candidate, out_dir):
        lines += [f"![{caption}]({picture.name})", ""]
        written.append(picture)
    return lines


def _pictures(candidate: Candidate, out_dir: Path) -> list[tuple[str, Path]]:
    """Optuna's optimization history and parameter importances, each drawn only when it can be."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as optuna_plots

    safe = "".join(character if character.isalnum() or character in "-_." else "_" for character in candidate.name)
    drawn = []
    completed = [trial for trial in candidate.study.get_trials(deepcopy=False) if trial.state.name == "COMPLETE"]
    plots = [("Optimization history", "history", optuna_plots.plot_optimization_history)]
    # Importances need at least two completed trials that differ.
    if len({repr(sorted(trial.params.items())) for trial in completed}) >= 2:
        plots.append(("Parameter importances", "importances", optuna_plots.plot_param_importances))
    for caption, stem, draw in plots:
        path = out_dir / f"tune_{stem}_{safe}.png"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            axes = draw(candidate.study)
        figure = axes.figure if hasattr(axes, "figure") else axes.flatten()[0].figure
        figure.set_size_inches(7, 4)
        figure.suptitle(f"{caption}: {candidate.name}")
        figure.tight_layout()
        figure.savefig(path, dpi=100)
        plt.close(figure)
        drawn.append((f"{caption}: {candidate.name}", path))
    return drawn
