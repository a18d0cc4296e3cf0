"""The `rnnbench` command line: it parses arguments and calls the modules that do the work.

Keras (and TensorFlow) are imported only inside the commands that build models, after the
backend is chosen, so `rnnbench --help` and `rnnbench compare` answer at once.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
from pathlib import Path
from typing import Callable, Iterator, Sequence, TypeVar

import click

from rnnbench.record import RunRecord
from rnnbench.verdict import DELTA

T = TypeVar("T")

DATA_DIR_HELP = (
    "Folder holding imdb/train.tsv.gz (or aclImdb/); without it IMDB is downloaded once into the Keras cache."
)
RUNS_DIR_HELP = "Folder of recorded runs."


class UserError(click.ClickException):
    """A mistake in the command line itself: one line on stderr, exit code 2."""

    exit_code = 2


class _Commands(click.Group):
    """The command group; it turns every rnnbench error into one line on stderr and its exit code
    (2 for a mistake in the input, 1 for work that could not be done), so no command can let one
    through as a traceback."""

    def invoke(self, ctx: click.Context):
        from rnnbench.errors import RnnbenchError

        try:
            return super().invoke(ctx)
        except RnnbenchError as error:
            failure = click.ClickException(str(error))
            failure.exit_code = error.exit_code
            raise failure from None


def _select_backend(name: str, choice: str | None = None) -> None:
    from rnnbench.backend import select_backend

    select_backend(name, choice)


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


def _a_folder(context: click.Context, parameter: click.Parameter, value: str | None) -> str | None:
    """Refuse an empty folder option: "" would be the current folder, and `/` where one is added."""
    if value == "":
        raise UserError(f"{parameter.opts[0]} is empty; give a folder (the default is {parameter.default})")
    return value


runs_dir_option = click.option(
    "--runs-dir",
    envvar="RNNBENCH_RUNS_DIR",
    default="runs",
    show_default=True,
    type=click.Path(file_okay=False),
    help=RUNS_DIR_HELP,
    callback=_a_folder,
)


def verdict_options(command: Callable) -> Callable:
    """The verdict's settings, shared by compare and report."""
    options = [
        click.option(
            "--outcome",
            type=click.Choice(["test", "validation"]),
            default="test",
            show_default=True,
            help="What the verdict tests: each run's test accuracy at its best-validation epoch, or the best validation"
            " accuracy itself (a maximum over epochs, so optimistic).",
        ),
        click.option(
            "--delta",
            type=click.FloatRange(min=0, min_open=True, max=100),
            default=100 * DELTA,
            show_default=True,
            metavar="POINTS",
            help="Equivalence margin in accuracy points: two configs whose difference is shown to lie within ±POINTS are equivalent.",
        ),
        click.option(
            "--bootstrap",
            "replicates",
            type=click.IntRange(min=0),
            default=0,
            metavar="N",
            help="Test by a multi-bootstrap of N replicates over seeds and test rows (thorough; 10000 is a good N) instead of t-tests.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def mlflow_option(help_text: str) -> Callable:
    return click.option(
        "--mlflow", "tracking_uri", envvar="MLFLOW_TRACKING_URI", show_envvar=True, metavar="URI", help=help_text
    )


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rnnbench")
def main() -> None:
    """Run and compare recurrent text classifiers (SimpleRNN, LSTM, GRU, stacked,
    bidirectional) and simple baselines on real text data, reproducibly.

    \b
    rnnbench summary configs/lstm.yaml     the model and its parameter formulas
    rnnbench run configs/gru2.yaml         train it and record the result in runs/
    rnnbench compare --format markdown     the comparison table of recorded runs
    """


def executor_options(command: Callable) -> Callable:
    """Where the runs of `run` and `tune` train: --jobs, --cluster, --cpus-per-run, --gpus-per-run."""
    for option in reversed(_EXECUTOR_OPTIONS):
        command = option(command)
    return command


_EXECUTOR_OPTIONS = [
    click.option(
        "--jobs",
        type=click.IntRange(1, 64),
        default=1,
        show_default=True,
        help="Train this many runs of a sweep (or trials of a tuning) at once, each in its own process (for a GPU that one small model leaves idle).",
    ),
    click.option(
        "--cluster",
        metavar="auto|local|HOST:PORT|ray://HOST:PORT",
        help="Train every run as a task on a Ray cluster (needs the ray extra): auto attaches to the one RAY_ADDRESS names or"
        " `ray start` started here, local starts a private one on this machine. See docs/cluster.md.",
    ),
    click.option(
        "--cpus-per-run",
        type=click.FloatRange(0.01, 1024),
        help="With --cluster: CPUs each run takes on its node.  [default: 1]",
    ),
    click.option(
        "--gpus-per-run",
        type=click.FloatRange(0, 64),
        help="With --cluster, or --jobs on one GPU: the share of a GPU each run takes (its memory capped to it), 0.25 packing four runs on one GPU.  [default: 0]",
    ),
]


@main.command()
@click.argument("config_path", metavar="CONFIG.yaml", type=click.Path(dir_okay=False))
@set_option
@backend_option
@click.option(
    "--seeds",
    "seed_count",
    type=click.IntRange(1, 100),
    help="Train N runs, seeds train.seed .. train.seed + N - 1 (replaces train.seeds).",
)
@click.option(
    "--force", is_flag=True, help="Train again, from the start, even runs whose config and seed already completed."
)
@click.option(
    "--resume/--no-resume",
    default=True,
    show_default=True,
    help="Go on with an unfinished run of the same config and seed from its last finished epoch, or start a new run.",
)
@executor_options
@click.option("--data-dir", envvar="RNNBENCH_DATA_DIR", type=click.Path(file_okay=False), help=DATA_DIR_HELP)
@runs_dir_option
@mlflow_option(
    "Also log each run to this MLflow tracking server or store (needs the mlflow extra); the runs folder stays the record."
)
def run(
    config_path: str,
    overrides: Sequence[str],
    backend: str | None,
    seed_count: int | None,
    force: bool,
    resume: bool,
    jobs: int,
    cluster: str | None,
    cpus_per_run: float | None,
    gpus_per_run: float | None,
    data_dir: str | None,
    runs_dir: str,
    tracking_uri: str | None,
) -> None:
    """Train the model(s) that CONFIG.yaml describes and record the results.

    One run per seed (train.seeds or --seeds) and per point of the config's `sweep:` section.
    Each run's resolved config, per-epoch history, best model and final metrics go to a new
    folder under the runs directory. A run whose config and seed already completed is reused,
    and one that was interrupted, killed or crashed goes on from its last finished epoch, so
    running the same command again continues where it stopped.
    """
    from rnnbench import mlflow_tracking
    from rnnbench.sweep import expand

    settings = _cluster_settings(cluster, cpus_per_run, gpus_per_run, jobs)
    if tracking_uri:
        mlflow_tracking.use(tracking_uri)
    configs = _read_configs(lambda: expand(config_path, _overrides(overrides, backend), seed_count), gpus_per_run)
    _select_backend(configs[0].backend, configs[0].backend_choice)
    if len({config.backend for config in configs}) > 1:
        raise UserError(
            f"{config_path}: a sweep runs in one process, so it can't vary `backend`; run one config per backend"
        )
    from rnnbench import executor, report

    # The command that repeats this run (data and runs folders are the machine's business).
    command = shlex.join(
        ["rnnbench", "run", config_path, *(f"--set={item}" for item in overrides)]
        + (["--backend", backend] if backend else [])
        + (["--seeds", str(seed_count)] if seed_count else [])
    )
    # A sweep is one parent MLflow run with its runs nested under it.
    sweep = mlflow_tracking.parent_run(Path(config_path).stem) if len(configs) > 1 else contextlib.nullcontext()
    try:
        with executor.attached(settings), sweep:
            records = executor.run_all(
                configs,
                data_dir,
                Path(runs_dir),
                command,
                force=force,
                echo=click.echo,
                resume=resume,
                jobs=jobs,
                cluster=settings,
                gpus_per_run=None if settings else gpus_per_run,
            )
    except KeyboardInterrupt as interrupt:
        from rnnbench.errors import RunInterrupted

        click.echo(
            "\n"
            + _interrupted(
                interrupt.run_dir if isinstance(interrupt, RunInterrupted) else None,
                sweep=len(configs) > 1,
                parallel=jobs > 1,
                cluster=settings is not None,
            ),
            err=True,
        )
        _exit_interrupted()
    failed = [record for record in records if record.status != "completed"]
    if len(records) > 1:
        click.echo("")
        click.echo(report.format_groups(records))
    elif not failed:
        record = records[0]
        outcome = record.result
        assert outcome is not None  # A completed run has its result.
        click.echo(
            f"[{record.name}] best val_accuracy {outcome.best_val_accuracy:.4f} at epoch {outcome.best_epoch}; "
            f"test accuracy {outcome.test_accuracy:.4f}; {outcome.mean_epoch_seconds:.1f} s/epoch; recorded in {record.run_dir}"
        )
    if failed:
        names = ", ".join(f"{record.name} ({record.status})" for record in failed)
        raise click.ClickException(f"{len(failed)} of {len(records)} runs did not complete: {names}")


@main.command(name="predict")
@click.argument("run_spec", metavar="RUN")
@click.argument("texts", nargs=-1)
@click.option(
    "--file",
    "file_path",
    type=click.Path(dir_okay=False),
    help="Texts to classify: one per line (.txt), or a column of a TSV, CSV or JSONL file (gzip or plain).",
)
@click.option(
    "--text-column", default="text", show_default=True, help="The column (or JSONL key) holding the texts in --file."
)
@click.option(
    "--format", "output_format", type=click.Choice(["table", "csv", "jsonl"]), default="table", show_default=True
)
@runs_dir_option
def predict_command(
    run_spec: str, texts: Sequence[str], file_path: str | None, text_column: str, output_format: str, runs_dir: str
) -> None:
    """Classify texts with a trained run: the predicted class and each class's probability.

    RUN is a run folder, a run id, or a config name (its completed run with the best validation
    accuracy, named on stderr). Texts come as arguments, from --file, or from standard input, one
    per line; they are read with the run's own tokenizer, vocabulary, maxlen and padding.
    """
    from rnnbench import predict as predicting

    if texts and file_path:
        raise UserError("give texts as arguments or with --file, not both")
    if file_path:
        source, given = file_path, predicting.read_texts(Path(file_path), text_column)
    elif texts:
        source, given = "the command line", list(texts)
    elif not sys.stdin.isatty():
        # Bytes that are not UTF-8 stay as lone surrogates, for check_texts to name their line.
        text = sys.stdin.buffer.read().decode("utf-8", errors="surrogateescape")
        source, given = "standard input", [line.rstrip("\r") for line in text.split("\n")]
        if given and given[-1] == "":
            given.pop()
    else:
        raise UserError("no texts: give them as arguments, with --file, or on standard input, one per line")
    predicting.check_texts(given, source)
    from rnnbench.config import default_backend

    # Before finding the run: reading its record imports the runner, and with it Keras.
    _select_backend(default_backend())
    run, note = predicting.find_run(run_spec, Path(runs_dir))
    if note:
        click.echo(note, err=True)
    encoded = predicting.encode_texts(run, given)
    warning = predicting.unknown_text_warning(run, encoded)
    if warning:
        click.echo(warning, err=True)
    with _prediction_progress(len(given)) as progress:
        probabilities = predicting.predict(run, given, progress, encoded)
    click.echo(predicting.format_predictions(run, given, probabilities, output_format))


@contextlib.contextmanager
def _prediction_progress(total: int) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on a terminal's stderr, a line per tenth otherwise (logs, CI); nothing for one batch."""
    from rnnbench.predict import BATCH_SIZE

    if total <= BATCH_SIZE:
        yield lambda done, total: None
    elif sys.stderr.isatty():
        with click.progressbar(length=total, label="predicting", file=sys.stderr, show_pos=True) as bar:
            yield lambda done, total: bar.update(done - bar.pos)
    else:
        reported = [0]

        def line(done: int, total: int) -> None:
            tenth = done * 10 // total
            if tenth > reported[0]:
                reported[0] = tenth
                click.echo(f"predicted {done:,} of {total:,} texts", err=True)

        yield line


def _cluster_settings(address: str | None, cpus_per_run: float | None, gpus_per_run: float | None, jobs: int):
    """The --cluster options, checked before anything slow: a cluster that can't be reached is one
    line within seconds, before Keras is imported."""
    if address is None:
        if cpus_per_run is not None:
            raise UserError("--cpus-per-run needs --cluster")
        if gpus_per_run is not None and jobs == 1:
            raise UserError("--gpus-per-run needs --cluster, or --jobs N to pack N runs on this machine's GPU")
        if gpus_per_run is not None and jobs * gpus_per_run > 1:
            raise UserError(
                f"--jobs {jobs} with --gpus-per-run {gpus_per_run:g} asks for {jobs * gpus_per_run:g} GPUs; --jobs runs share one"
                f" GPU, so each may take at most 1/{jobs} of it (--gpus-per-run {1 / jobs:.4g})"
            )
        return None
    if jobs > 1:
        raise UserError(
            "--jobs and --cluster don't go together: a cluster trains as many runs at once as it has room for (--cpus-per-run, --gpus-per-run)"
        )
    from rnnbench import cluster

    cluster.check_address(address)
    cluster.require_ray()
    cluster.reach(address)
    return cluster.ClusterSettings(address, cpus_per_run or 1.0, gpus_per_run or 0.0)


def _read_configs(read: Callable[[], T], gpus_per_run: float | None) -> T:
    """`read()`, with `backend: auto` choosing for a GPU when each run takes a share of one."""
    from rnnbench import backend

    with backend.runs_take_a_gpu(bool(gpus_per_run)):
        return read()


def _interrupted(run_dir: str | None, sweep: bool, parallel: bool = False, cluster: bool = False) -> str:
    """What Ctrl-C left behind: the runner names the folder of the run it recorded as interrupted,
    and names none when the interrupt came before a run was recorded (while data was read).
    With --jobs each worker records its own run, which the parent can't name; on a cluster the
    driver records every run it had handed out."""
    if cluster:
        return (
            "interrupted; the cluster's tasks are cancelled and each run in progress is recorded as interrupted; run the same"
            " command again to continue: they resume from their last finished epoch where the runs folder is shared, and"
            " finished runs are reused"
        )
    if parallel and sweep:
        return (
            "interrupted; each run in progress is recorded as interrupted by its worker; run the same command"
            " again to continue: they resume from their last finished epoch, and finished runs are reused"
        )
    if run_dir is None:
        if sweep:
            return "interrupted before the next run was recorded; run the same command again to go on: finished runs are reused"
        return "interrupted before the run was recorded, so there is nothing to resume; run the same command again to start it"
    finished = ", and finished runs are reused" if sweep else ""
    return (
        f"interrupted; {run_dir} is recorded as interrupted; run the same command again to continue:"
        f" it resumes from the last finished epoch{finished}"
    )


@main.command(name="tune")
@click.argument("config_path", metavar="CONFIG.yaml", type=click.Path(dir_okay=False))
@set_option
@backend_option
@click.option(
    "--storage",
    metavar="URL",
    help="Optuna storage of the studies (an RDB URL, e.g. sqlite:///studies.db or postgresql://...), shared by every process tuning"
    " the same config; default: tune.sqlite in the runs folder.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    help="Folder for the tuning report; default: reports/tune-<config name>.",
)
@executor_options
@click.option("--data-dir", envvar="RNNBENCH_DATA_DIR", type=click.Path(file_okay=False), help=DATA_DIR_HELP)
@runs_dir_option
@mlflow_option(
    "Also log each trial and final run to this MLflow tracking server or store, nested under one parent run."
)
def tune_command(
    config_path: str,
    overrides: Sequence[str],
    backend: str | None,
    storage: str | None,
    out_dir: str | None,
    jobs: int,
    cluster: str | None,
    cpus_per_run: float | None,
    gpus_per_run: float | None,
    data_dir: str | None,
    runs_dir: str,
    tracking_uri: str | None,
) -> None:
    """Tune every candidate of CONFIG.yaml with the same budget, then compare the winners over fresh seeds.

    The config's sweep variants (or grid points) are the candidates and its `tune:` section the
    budget, search space and pruner (see configs/tune/). Each candidate trains exactly tune.trials
    x the trials' train.epochs epochs of a seeded search (a pruned trial's unused epochs fund more
    trials), each trial an ordinary run named <candidate>-tNNN; the best one's
    settings are trained again over tune.seeds as <candidate>-tuned, and the comparison with its
    verdict is printed and written, with each study's history, to the report folder. Running
    the same command again (or several at once, with one --storage) continues the studies.
    With --jobs or --cluster, trials train side by side, each asked when there is room for it.
    """
    from rnnbench import mlflow_tracking, results, tune

    cluster_settings = _cluster_settings(cluster, cpus_per_run, gpus_per_run, jobs)
    if tracking_uri:
        mlflow_tracking.use(tracking_uri)
    settings, candidates = _read_configs(
        lambda: tune.read_plan(config_path, _overrides(overrides, backend)), gpus_per_run
    )
    _select_backend(candidates[0].config.backend, candidates[0].config.backend_choice)
    if len({candidate.config.backend for candidate in candidates}) > 1:
        raise UserError(
            f"{config_path}: a tuning runs in one process, so it can't vary `backend`; tune one config per backend"
        )
    runs = Path(runs_dir)
    results.check_writable(runs)
    storage = storage or tune.default_storage(runs)
    tune.open_studies(candidates, settings, storage)
    from rnnbench import report, tune_report

    command = shlex.join(
        ["rnnbench", "tune", config_path, *(f"--set={item}" for item in overrides)]
        + (["--backend", backend] if backend else [])
    )
    base = os.path.commonprefix([candidate.name for candidate in candidates]).rstrip("-") or "tune"
    try:
        with mlflow_tracking.parent_run(f"tune-{base}"):
            finals = tune.tune(
                settings,
                candidates,
                data_dir,
                runs,
                command,
                click.echo,
                tune.storage_label(storage),
                jobs=jobs,
                cluster=cluster_settings,
                gpus_per_run=None if cluster_settings else gpus_per_run,
            )
    except KeyboardInterrupt:
        click.echo(
            "\ninterrupted; run the same command again to continue: finished trials count toward the budget, and the"
            " trial in progress resumes from its run's last finished epoch",
            err=True,
        )
        _exit_interrupted()
    click.echo("")
    click.echo(report.format_groups(finals))
    folder = Path(out_dir or Path("reports") / f"tune-{base}")
    try:
        written = tune_report.write_tune_report(
            candidates, settings, finals, runs, folder, f"rnnbench tune {config_path}", command
        )
    except OSError as error:
        raise click.ClickException(f"cannot write the report into {folder}: {error.strerror or error}") from None
    click.echo(f"wrote {written[0]} (each study) and {written[1]} (the winners' runs)")


@main.command(name="mlflow-sync")
@runs_dir_option
@mlflow_option("The MLflow tracking server or store to send the runs to.")
def mlflow_sync(runs_dir: str, tracking_uri: str | None) -> None:
    """Log to MLflow every finished run (completed, diverged, pruned) of the runs folder that is
    not fully logged there yet, from its recorded files: runs that a server down or slow during
    training missed. A run is never logged twice: one logged in part is completed in place.
    """
    from rnnbench import mlflow_tracking

    if not tracking_uri:
        raise UserError("no MLflow tracking server: give --mlflow URI or set MLFLOW_TRACKING_URI")
    sent, present = mlflow_tracking.sync(Path(runs_dir), tracking_uri, click.echo)
    click.echo(f"sent {sent} run{'' if sent == 1 else 's'} to MLflow at {tracking_uri}; {present} already there")


@main.command()
@runs_dir_option
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "markdown", "csv", "json"]),
    default="table",
    show_default=True,
)
@click.option(
    "--per-run",
    is_flag=True,
    help="One row per counted run (the latest per config and seed) instead of one per config.",
)
@click.option(
    "--all",
    "show_all",
    is_flag=True,
    help="One row per run, including runs that did not complete and runs replaced by a later run of the same config and seed, with their status.",
)
@click.option(
    "--name",
    "names",
    multiple=True,
    metavar="PATTERN",
    help="Only runs whose name matches this glob pattern (repeatable).",
)
@verdict_options
def compare(
    runs_dir: str,
    output_format: str,
    per_run: bool,
    show_all: bool,
    names: Sequence[str],
    outcome: str,
    delta: float,
    replicates: int,
) -> None:
    """Print the comparison table of recorded runs, highest mean test accuracy first, and the verdict.

    Runs that share a config apart from their seed form one row: n, mean ± standard deviation
    of the test accuracy at each run's best-validation epoch, its 95% confidence interval, what
    the test split's size alone does to one accuracy, the best validation accuracy and the gap
    between the two (val−test). n counts distinct seeds: a config and seed trained again counts
    once, by its latest completed run. Collapsed models and runs with warnings are flagged.

    The verdict compares every pair of configs of a dataset (paired t-test where they share
    their seeds, else Welch's; Holm over the family at 5%) and answers better, equivalent within
    ±--delta points, or undecided with the seeds that would decide it (docs/results.md).
    """
    from rnnbench import report, results

    recorded = results.read_records(Path(runs_dir), statuses=None if show_all else ("completed",))
    records = _matching(recorded, names)
    if recorded and not records and output_format != "json":
        raise click.ClickException(f"no {'' if show_all else 'completed '}runs in {runs_dir}/ match {', '.join(names)}")
    if not records and output_format != "json":
        click.echo(
            f"No {'' if show_all else 'completed '}runs in {runs_dir}/ yet; train one with: rnnbench run CONFIG.yaml",
            err=True,
        )
        return
    # With --per-run, only the runs the statistics count; with --all, every run and its status.
    if per_run or show_all:
        click.echo(report.format_runs(records, output_format, show_status=show_all))
    else:
        click.echo(
            report.format_groups(
                records, output_format, **_verdict_settings(records, runs_dir, outcome, delta, replicates)
            )
        )


@main.command()
@runs_dir_option
@click.option(
    "--name",
    "names",
    multiple=True,
    metavar="PATTERN",
    help="Only runs whose name matches this glob pattern (repeatable).",
)
@click.option(
    "--out",
    "out_dir",
    default="report",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder to write the report into.",
    callback=_a_folder,
)
@click.option("--title", default="rnnbench report", show_default=True)
@verdict_options
def report(
    runs_dir: str, names: Sequence[str], out_dir: str, title: str, outcome: str, delta: float, replicates: int
) -> None:
    """Write a report of completed runs: report.md with its PNG pictures, and a self-contained report.html.

    It holds the comparison table (mean ± std over seeds, 95% CI), the verdict, learning
    curves, accuracy against parameters and seconds per epoch, every run, and the environment.
    """
    from rnnbench import report as reporting, results

    records = _matching(results.read_records(Path(runs_dir)), names)
    if not records:
        raise click.ClickException(f"no completed runs in {runs_dir}/ match {', '.join(names) or 'anything'}")
    command = shlex.join(["rnnbench", "report", *(f"--name={name}" for name in names), "--out", out_dir])
    results.check_folder(Path(out_dir), "the report folder")
    _warn_of_missing_histories(records, Path(runs_dir))
    try:
        written = reporting.write_report(
            records,
            Path(runs_dir),
            Path(out_dir),
            title,
            command,
            **_verdict_settings(records, runs_dir, outcome, delta, replicates),
        )
    except OSError as error:
        raise click.ClickException(f"cannot write the report into {out_dir}: {error.strerror or error}") from None
    click.echo(f"wrote {written[0]} and {written[1]} with {len(written) - 2} pictures")


def _warn_of_missing_histories(records: list[RunRecord], runs_dir: Path) -> None:
    """A warning line per counted run whose folder or history.jsonl is gone: the report still
    holds its results (the index has them), but no learning curve of it."""
    from rnnbench import results, verdict

    for record in verdict.counted_runs(records):
        missing = results.missing_history(runs_dir, record)
        if missing:
            click.echo(
                f"warning: run {record.run_id} ({record.name}, seed {record.seed}): {missing},"
                " so the report has its results but no learning curve of it",
                err=True,
            )


def _exit_interrupted() -> None:
    """Exit with 130 after Ctrl-C, the interruption already said. A KeyboardInterrupt that landed
    inside a framework's constructor leaves a half-built object whose finalizer fails as the
    interpreter shuts down (TensorFlow's AtomicFunction: "Exception ignored in ... has no
    attribute '_generated_graph'"); that noise would follow the one line, so it is not printed."""
    sys.unraisablehook = lambda unraisable: None
    sys.exit(130)


def _verdict_settings(records: list[RunRecord], runs_dir: str, outcome: str, delta: float, replicates: int) -> dict:
    """The verdict's keyword arguments for report.format_groups and write_report."""
    settings: dict = {"outcome": outcome, "delta": delta / 100}
    if replicates:
        if outcome != "test":
            raise click.UsageError("--bootstrap resamples test rows, so it needs --outcome test")
        from rnnbench import bootstrap, verdict

        settings["difference_of"] = bootstrap.from_runs(verdict.counted_runs(records), runs_dir, replicates).difference
    return settings


def _matching(records: list[RunRecord], names: Sequence[str]) -> list[RunRecord]:
    import fnmatch

    return [
        record for record in records if not names or any(fnmatch.fnmatchcase(record.name, pattern) for pattern in names)
    ]


@main.command()
@click.argument("config_path", metavar="CONFIG.yaml", type=click.Path(dir_okay=False))
@set_option
@backend_option
@click.option(
    "--data-dir",
    envvar="RNNBENCH_DATA_DIR",
    type=click.Path(file_okay=False),
    help="Where data.files are found (read only to count their classes).",
)
def summary(config_path: str, overrides: Sequence[str], backend: str | None, data_dir: str | None) -> None:
    """Print the model of CONFIG.yaml and each layer's parameter formula, without training.

    Built-in datasets are not read at all; for `data.files` only the labels are counted.
    """
    from rnnbench.sweep import expand

    configs = expand(config_path, _overrides(overrides, backend))
    config = configs[0]
    if len(configs) > 1:
        click.echo(
            f"{config_path} describes {len(configs)} runs; this is the first, {config.name} (seed {config.train.seed})"
        )
    _select_backend(config.backend)
    from tabulate import tabulate

    from rnnbench import data, model

    # Refused from the config alone before any data is read; build_model checks the exact size.
    model.refuse_too_large(config, config.data.num_words, 2)
    num_classes = data.NUM_CLASSES.get(config.data.dataset)
    if num_classes is None:
        num_classes = data.load_dataset(config.data, data_dir).num_classes
    network = model.build_model(config, config.data.num_words, num_classes)
    network.summary(print_fn=lambda line, line_break=True: click.echo(line, nl=line_break))
    rows = [(name, formula, f"{count:,}") for name, formula, count in model.parameter_formulas(network)]
    rows.append(("total", "", f"{network.count_params():,}"))
    click.echo("\nParameters per layer:")
    click.echo(
        tabulate(
            rows, headers=["layer", "formula", "parameters"], tablefmt="simple", colalign=("left", "left", "right")
        )
    )
    from rnnbench import kernels

    plans = {device: kernels.plan(config, config.backend, gpu=device == "GPU") for device in ("CPU", "GPU")}
    if plans["CPU"]:
        click.echo(f"\nRecurrent kernels on the {config.backend} backend:")
        rows = [
            (choice.layer, device, choice.kernel, choice.reason)
            for device, choices in plans.items()
            for choice in choices
        ]
        click.echo(tabulate(rows, headers=["layer", "device", "kernel", "why"], tablefmt="simple"))
        for warning in kernels.forfeited(config, config.backend):
            click.echo(f"warning, on a GPU: {warning}")
