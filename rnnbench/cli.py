"""The `rnnbench` command line: it parses arguments and calls the modules that do the work.

Keras (and TensorFlow) are imported only inside the commands that build models, after the
backend is chosen, so `rnnbench --help` and `rnnbench compare` answer at once.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Sequence

import click

DATA_DIR_HELP = "Folder holding imdb/train.tsv.gz (or aclImdb/); without it IMDB is downloaded once into the Keras cache."
RUNS_DIR_HELP = "Folder of recorded runs."


class UserError(click.ClickException):
    """A mistake in the input (config, override, data): one line on stderr, exit code 2."""

    exit_code = 2


def _load_config(config_path: str, overrides: Sequence[str]):
    from rnnbench.config import ConfigError, load_config

    try:
        return load_config(config_path, overrides)
    except ConfigError as error:
        raise UserError(str(error)) from None


def _select_backend(name: str) -> None:
    from rnnbench.backend import BackendError, select_backend

    try:
        select_backend(name)
    except BackendError as error:
        raise UserError(str(error)) from None


def _overrides(overrides: Sequence[str], backend: str | None) -> list[str]:
    return list(overrides) + ([f"backend={backend}"] if backend else [])


set_option = click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a config key, validated like the file, e.g. --set model.layers=2 (repeatable).",
)
backend_option = click.option(
    "--backend",
    type=click.Choice(["tensorflow", "jax", "torch"]),
    help="Keras backend (overrides the config's `backend`).",
)
runs_dir_option = click.option(
    "--runs-dir", envvar="RNNBENCH_RUNS_DIR", default="runs", show_default=True, type=click.Path(file_okay=False), help=RUNS_DIR_HELP
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rnnbench")
def main() -> None:
    """Run and compare recurrent text classifiers (SimpleRNN, LSTM, GRU, stacked,
    bidirectional) and simple baselines on real text data, reproducibly.

    \b
    rnnbench summary configs/lstm.yaml     the model and its parameter formulas
    rnnbench run configs/gru2.yaml         train it and record the result in runs/
    rnnbench compare --format markdown     the comparison table of recorded runs
    """


@main.command()
@click.argument("config_path", metavar="CONFIG.yaml", type=click.Path(dir_okay=False))
@set_option
@backend_option
@click.option("--data-dir", envvar="RNNBENCH_DATA_DIR", type=click.Path(file_okay=False), help=DATA_DIR_HELP)
@runs_dir_option
def run(config_path: str, overrides: Sequence[str], backend: str | None, data_dir: str | None, runs_dir: str) -> None:
    """Train the model that CONFIG.yaml describes and record the result.

    The run's resolved config, per-epoch history, best model and final metrics are written
    to a new folder under the runs directory; `rnnbench compare` lists the results.
    """
    config = _load_config(config_path, _overrides(overrides, backend))
    _select_backend(config.backend)
    from rnnbench import data, embeddings, results, tokenize, train

    # The command that repeats this run (data and runs folders are the machine's business).
    command = shlex.join(["rnnbench", "run", config_path, *(f"--set={item}" for item in overrides)] + (["--backend", backend] if backend else []))
    try:
        record = train.run_experiment(config, data_dir, Path(runs_dir), command, echo=click.echo)
    except (data.DataError, results.ResultsError, embeddings.EmbeddingError, tokenize.TokenizerError) as error:
        raise click.ClickException(str(error)) from None
    except KeyboardInterrupt:
        click.echo(f"\n[{config.name}] interrupted; the run is recorded as interrupted in {runs_dir}/", err=True)
        sys.exit(130)
    outcome = record.get("result", {})
    if record["status"] != "completed":
        raise click.ClickException(f"[{config.name}] {record['status']} after {outcome.get('epochs_run', 0)} epochs (see {record['run_dir']})")
    click.echo(
        f"[{config.name}] best val_accuracy {outcome['best_val_accuracy']:.4f} at epoch {outcome['best_epoch']}; "
        f"test accuracy {outcome['test_accuracy']:.4f}; {outcome['mean_epoch_seconds']:.1f} s/epoch; recorded in {record['run_dir']}"
    )


@main.command()
@runs_dir_option
@click.option("--format", "output_format", type=click.Choice(["table", "markdown", "csv"]), default="table", show_default=True)
@click.option("--all", "show_all", is_flag=True, help="Also list runs that did not complete, with their status.")
def compare(runs_dir: str, output_format: str, show_all: bool) -> None:
    """Print the comparison table of recorded runs, best validation accuracy first."""
    from rnnbench import report, results

    try:
        records = results.read_runs(Path(runs_dir), statuses=None if show_all else ("completed",))
    except results.ResultsError as error:
        raise click.ClickException(str(error)) from None
    if not records:
        click.echo(f"No {'' if show_all else 'completed '}runs in {runs_dir}/ yet; train one with: rnnbench run CONFIG.yaml", err=True)
        return
    click.echo(report.format_runs(records, output_format, show_status=show_all))


@main.command()
@click.argument("config_path", metavar="CONFIG.yaml", type=click.Path(dir_okay=False))
@set_option
@backend_option
@click.option("--data-dir", envvar="RNNBENCH_DATA_DIR", type=click.Path(file_okay=False), help="Where data.files are found (read only to count their classes).")
def summary(config_path: str, overrides: Sequence[str], backend: str | None, data_dir: str | None) -> None:
    """Print the model of CONFIG.yaml and each layer's parameter formula, without training.

    Built-in datasets are not read at all; for `data.files` only the labels are counted.
    """
    config = _load_config(config_path, _overrides(overrides, backend))
    _select_backend(config.backend)
    from tabulate import tabulate

    from rnnbench import data, model

    num_classes = data.NUM_CLASSES.get(config.data.dataset)
    if num_classes is None:
        try:
            num_classes = data.load_dataset(config.data, data_dir).num_classes
        except data.DataError as error:
            raise click.ClickException(str(error)) from None
    network = model.build_model(config, config.data.num_words, num_classes)
    network.summary(print_fn=lambda line, line_break=True: click.echo(line, nl=line_break))
    rows = [(name, formula, f"{count:,}") for name, formula, count in model.parameter_formulas(network)]
    rows.append(("total", "", f"{network.count_params():,}"))
    click.echo("\nParameters per layer:")
    click.echo(tabulate(rows, headers=["layer", "formula", "parameters"], tablefmt="simple", colalign=("left", "left", "right")))
