"""The report of a tuning: per candidate its trials, the epochs they spent, the best settings,
optimization history and parameter importances (Optuna's own pictures); the expected best
validation accuracy against the number of random trials, every candidate on one picture; then
the winners' seeded comparison and verdict."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from rnnbench import expected_max, report
from rnnbench.record import RunRecord
from rnnbench.results import write_atomic
from rnnbench.tune import (
    ALLOTTED,
    RUN_ID,
    SAMPLED,
    SPENT,
    STATUS,
    Candidate,
    Settings,
    best_trial,
    pruner_description,
    sampler_description,
    settings_text,
    spending,
    value_text,
)

EXPECTED_MAX_PICTURE = "tune_expected_max.png"


def write_tune_report(
    candidates: list[Candidate],
    settings: Settings,
    finals: list[RunRecord],
    runs_dir: Path,
    out_dir: Path,
    title: str,
    command: str,
) -> list[Path]:
    """Write tuning.md (pictures beside it), and the winners' standard report (report.md, report.html)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = report.write_report(
        finals, runs_dir, out_dir, f"{title}: the winners over seeds {', '.join(map(str, settings.seeds))}", command
    )
    markdown = [
        f"# {title}",
        "",
        f"- {len(candidates)} candidates, each a budget of {settings.budget} epochs ({settings.trials} trials of {settings.trial_epochs}"
        " epochs; the epochs a pruned trial leaves fund further trials, and the last trial trains what is left), the same search"
        f" space, search settings and pruner ({pruner_description(settings)}); sampler: {sampler_description(settings)};"
        f" trials train with seed {settings.trial_seed}",
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
    markdown += _expected_max_section(candidates, settings, out_dir, written)
    for candidate in candidates:
        markdown += _candidate_section(candidate, settings, out_dir, written)
    path = out_dir / "tuning.md"
    write_atomic(path, ("\n".join(markdown) + "\n").encode("utf-8"))
    return [path, *written]


@dataclass(frozen=True)
class RandomTrials:
    """A candidate's trials drawn at random, and those of them that enter its expected-best curve."""

    values: tuple[float, ...]  # the curve's: random trials that trained all of a full trial's epochs
    drawn: int  # random trials ended (completed, diverged, pruned)
    pruned: int
    shortened: int  # the budget's last trial, trained on fewer epochs


def random_trials(candidate: Candidate, settings: Settings) -> RandomTrials:
    """Only completed random trials given a full trial's epochs enter the curve (a diverged one
    with its value 0, as the study ranks it): a pruned trial's value is a part-trained one, and
    so is that of the budget's shortened last trial (docs/tuning.md says what this costs)."""
    drawn = [
        trial
        for trial in candidate.study.get_trials(deepcopy=False)
        if trial.state.name in ("COMPLETE", "PRUNED") and trial.user_attrs.get(SAMPLED) == "random"
    ]
    completed = [trial for trial in drawn if trial.state.name == "COMPLETE"]
    full = [
        trial for trial in completed if trial.user_attrs.get(ALLOTTED, settings.trial_epochs) >= settings.trial_epochs
    ]
    return RandomTrials(
        tuple(float(trial.value) for trial in full), len(drawn), len(drawn) - len(completed), len(completed) - len(full)
    )


def _expected_max_section(
    candidates: list[Candidate], settings: Settings, out_dir: Path, written: list[Path]
) -> list[str]:
    lines = [
        "## Expected best validation accuracy after k random trials",
        "",
        "Each curve is the expected best of k trials drawn from the candidate's random trials (Dodge et al. 2019,"
        ' "Show your work"): E[max of k] = Σ_i v_(i) [(i/N)^k − ((i−1)/N)^k] over its N values sorted, with the central'
        f" {expected_max.BAND_LEVEL:.0%} of {expected_max.RESAMPLES} bootstrap resamples as a band. Only random trials that"
        f" completed a full trial's {settings.trial_epochs} epochs enter it: pruned ones and the budget's shortened last one"
        " were not trained to the end (docs/tuning.md).",
        "",
    ]
    curves = []
    for candidate in candidates:
        drawn = random_trials(candidate, settings)
        reasons = [f"{drawn.pruned} pruned"] * bool(drawn.pruned) + [
            f"{drawn.shortened} shortened by the budget"
        ] * bool(drawn.shortened)
        left_out = f"{', '.join(reasons)}: left out" if reasons else "none left out"
        if not drawn.values:
            lines.append(
                f"- {candidate.name}: no curve: none of its {drawn.drawn} random trials completed a full trial ({left_out})"
            )
            continue
        made = expected_max.curve(candidate.name, drawn.values)
        curves.append(made)
        lines.append(
            f"- {candidate.name}: {len(drawn.values)} of {drawn.drawn} random trials ({left_out});"
            f" expected best {made.expected[0]:.4f} at k=1, {made.expected[-1]:.4f} at k={len(made.values)}"
        )
    lines.append("")
    if len(curves) >= 2:
        lines += [f"**{expected_max.ranking_sentence(curves)}**", ""]
    if curves:
        picture = _draw_expected_max(curves, settings, out_dir / EXPECTED_MAX_PICTURE)
        written.append(picture)
        lines += [f"![Expected best validation accuracy after k random trials]({picture.name})", ""]
    return lines


def _draw_expected_max(curves: list[expected_max.Curve], settings: Settings, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4))
    for made in curves:
        budgets = range(1, len(made.values) + 1)
        (line,) = axes.plot(budgets, made.expected, marker="o", label=f"{made.name} (N={len(made.values)})")
        axes.fill_between(budgets, made.low, made.high, color=line.get_color(), alpha=0.15)
    axes.set_xlabel(f"k: random trials of {settings.trial_epochs} epochs")
    axes.set_ylabel("expected best val accuracy")
    axes.xaxis.get_major_locator().set_params(integer=True)
    axes.grid(alpha=0.3)
    axes.legend()
    axes.set_title(
        f"Expected best validation accuracy after k random trials ({expected_max.BAND_LEVEL:.0%} bootstrap band)",
        fontsize=9,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _candidate_section(candidate: Candidate, settings: Settings, out_dir: Path, written: list[Path]) -> list[str]:
    trials = candidate.study.get_trials(deepcopy=False)
    counted = [trial for trial in trials if trial.state.name in ("COMPLETE", "PRUNED")]
    best = best_trial(candidate)
    lines = [f"## {candidate.name}", ""]
    lines.append(
        f"{spending(candidate, settings)}. Best: "
        + (
            f"t{best.number:03d}, val_accuracy {best.value:.4f}, {settings_text(best.params)}"
            if best
            else "none completed"
        )
    )
    lines += [
        "",
        "| trial | sampled | outcome | best val acc | epochs | "
        + " | ".join(dimension.key for dimension in settings.space)
        + " | run |",
    ]
    lines.append("|" + "---|" * (6 + len(settings.space)))
    for trial in counted:
        outcome = trial.user_attrs.get(STATUS, trial.state.name.lower())
        allotted = trial.user_attrs.get(ALLOTTED, settings.trial_epochs)
        if allotted < settings.trial_epochs:
            outcome += f" (the budget's last {allotted})"
        value = (
            f"{trial.value:.4f}"
            if trial.state.name == "COMPLETE" and trial.user_attrs.get(STATUS) == "completed"
            else (f"({max(trial.intermediate_values.values()):.4f})" if trial.intermediate_values else "-")
        )
        cells = [
            f"t{trial.number:03d}",
            str(trial.user_attrs.get(SAMPLED, "-")),
            outcome,
            value,
            str(trial.user_attrs.get(SPENT, "-")),
        ]
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
