"""Resuming: a run killed mid-epoch goes on from its last finished epoch, to the same history."""

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from rnnbench import results
from rnnbench.cli import main
from rnnbench.config import config_from_mapping
from rnnbench.train import run_experiment
from conftest import untimed

# Small batches make each epoch last a few seconds, long enough to be killed in the middle of one.
CONFIG = {
    "name": "resumable",
    "model": {"cell": "gru", "embedding_dim": 8, "units": 8, "dense_units": 8, "dropout": 0.3},
    "data": {"num_words": 50, "maxlen": 24},
    "train": {"epochs": 3, "batch_size": 4, "seed": 5},
}


def _environment(data_dir: Path, runs_dir: Path, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "RNNBENCH_DATA_DIR": str(data_dir),
        "RNNBENCH_RUNS_DIR": str(runs_dir),
        "RNNBENCH_CACHE_DIR": str(tmp_path / "cache"),
        "KERAS_BACKEND": "tensorflow",
    }


# How long a test waits for a step that only a hang would keep from coming: the subprocess's
# start (importing TensorFlow) and an epoch are slow on a busy machine, never this slow. A test
# that waits longer still gives the same answer; nothing here is timed.
HANG_SECONDS = 1200


def _start(config_path: Path, environment: dict[str, str], *arguments: str) -> subprocess.Popen:
    # Ctrl-C's signal must reach Python's handler even when the tests run in the background of a
    # non-interactive shell, which starts its jobs with SIGINT ignored.
    process = subprocess.Popen(
        [sys.executable, "-m", "rnnbench", "run", str(config_path), *arguments],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    # A hang guard, not a timing: a process still alive then is killed, which ends its output.
    watchdog = threading.Timer(HANG_SECONDS, process.kill)
    watchdog.daemon = True
    watchdog.start()
    return process


def _history_lines(runs_dir: Path) -> list[str]:
    found = list(runs_dir.glob("*/history.jsonl"))
    return found[0].read_text().splitlines() if found else []


def _checkpointed_epochs(runs_dir: Path) -> int:
    """How many epochs the run's checkpoint holds: what a resume goes on from."""
    [path] = runs_dir.glob(f"*/{results.CHECKPOINT_FILE}")
    state = results.RunDirectory(path.parent).read_checkpoint()["state"]
    return len(json.loads(state.tobytes().decode("utf-8"))["history"])


def _output_through(process: subprocess.Popen, prefix: str) -> str:
    """What `process` prints up to and including its first line starting with `prefix`.

    The runner prints an epoch's line once the epoch is in history.jsonl and its checkpoint, so
    the line is the event itself: nothing here sleeps or guesses how long an epoch takes."""
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith(prefix):
            return "".join(lines)
    process.wait()
    raise AssertionError(
        f"the run ended (exit code {process.returncode}) before printing {prefix!r}:\n{''.join(lines)[-3000:]}"
    )


def _train_one_epoch_in_a_subprocess(
    data_dir: Path, tmp_path: Path
) -> tuple[Path, Path, dict[str, str], subprocess.Popen, str]:
    """`rnnbench run` of CONFIG in a new process, returned once its first epoch is recorded, with what it printed so far."""
    config_path = tmp_path / "resumable.yaml"
    config_path.write_text(json.dumps(CONFIG))
    runs = tmp_path / "runs"
    environment = _environment(data_dir, runs, tmp_path)
    process = _start(config_path, environment)
    printed = _output_through(process, "epoch 1/3: ")
    return config_path, runs, environment, process, printed


@pytest.mark.slow
def test_a_run_killed_mid_epoch_resumes_to_the_uninterrupted_history(slow_data_dir, tmp_path):
    config_path, runs, environment, process, _ = _train_one_epoch_in_a_subprocess(slow_data_dir, tmp_path)
    # Killed as soon as epoch 1 is recorded: inside epoch 2, which takes seconds (300 batches).
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL
    # Read rather than assumed: however busy the machine, the kill came before the run's end.
    after = _checkpointed_epochs(runs)
    assert 1 <= after < 3 and len(_history_lines(runs)) in (after, after + 1)
    [killed] = results.read_records(runs, statuses=None)
    assert killed.status == "incomplete"

    # Resumed by the same command, in this process (which saves a second start of Keras).
    resumed = CliRunner().invoke(main, ["run", str(config_path)], env=environment)
    output = resumed.output
    assert resumed.exit_code == 0, output
    run_dir = runs / killed.run_id
    assert f"resuming {run_dir} after epoch {after} of 3 (best so far: epoch " in output
    assert f"epoch {after}/3" not in output and "epoch 3/3" in output

    # The same config trained without interruption, in this process.
    uninterrupted = run_experiment(
        config_from_mapping(CONFIG), str(slow_data_dir), tmp_path / "reference", "test", echo=lambda line: None
    )
    reference = Path(uninterrupted.run_dir)
    assert untimed(_history_lines(runs)) == untimed((reference / "history.jsonl").read_text().splitlines())

    [record] = results.read_records(runs)  # Still one run: the killed one, now completed.
    assert record.run_id == killed.run_id
    for key in ("best_val_accuracy", "best_epoch", "best_val_loss", "test_accuracy", "test_loss", "val_confusion"):
        assert record.result.value(key) == uninterrupted.result.value(key), key
    assert [entry["after_epoch"] for entry in record.resumed] == [after]
    assert sorted(path.name for path in run_dir.iterdir()) == [
        "config.json",
        "history.jsonl",
        "model.keras",
        "result.json",
        "tensorboard",
        "test_predictions.npz",
        "vocabulary.json",
    ]


@pytest.mark.slow
def test_ctrl_c_marks_the_run_interrupted_and_says_how_to_resume(slow_data_dir, tmp_path):
    config_path, runs, environment, process, printed = _train_one_epoch_in_a_subprocess(slow_data_dir, tmp_path)
    process.send_signal(signal.SIGINT)
    output = printed + process.communicate()[0]  # Ends by itself; the watchdog only ends a hang.
    assert process.returncode == 130, output
    [interrupted] = results.read_records(runs, statuses=None)
    assert interrupted.status == "interrupted"
    # The runner names the interrupted run's folder (KeyboardInterrupt.run_dir), and the CLI says it.
    assert output.splitlines()[-1] == (
        f"interrupted; {runs / interrupted.run_id} is recorded as interrupted; run the same command again"
        " to continue: it resumes from the last finished epoch"
    ), output
    assert "Traceback" not in output

    # --no-resume leaves the interrupted run alone and starts a new one.
    fresh = CliRunner().invoke(main, ["run", str(config_path), "--no-resume"], env=environment)
    fresh_output = fresh.output
    assert fresh.exit_code == 0, fresh_output
    assert "resuming" not in fresh_output and "epoch 1/3" in fresh_output
    statuses = {record.run_id: record.status for record in results.read_records(runs, statuses=None)}
    assert statuses[interrupted.run_id] == "interrupted" and sorted(statuses.values()) == [
        "completed",
        "interrupted",
    ]
    assert (runs / interrupted.run_id / results.CHECKPOINT_FILE).exists()


def test_a_damaged_checkpoint_is_one_line(tiny_data_dir, tmp_path):
    runs = tmp_path / "runs"
    config = config_from_mapping({**CONFIG, "train": {**CONFIG["train"], "batch_size": 32}})
    run = results.create_run(runs, config.name)
    (run.path / results.CHECKPOINT_FILE).write_bytes(b"not a checkpoint")
    results.index_run(
        runs, run.run_id, config.name, "interrupted", {"config": config.to_dict(), "run_dir": str(run.path)}
    )
    config_path = tmp_path / "resumable.yaml"
    config_path.write_text(json.dumps({**CONFIG, "train": {**CONFIG["train"], "batch_size": 32}}))
    outcome = CliRunner().invoke(
        main, ["run", str(config_path), "--data-dir", str(tiny_data_dir), "--runs-dir", str(runs)]
    )
    assert outcome.exit_code == 1
    assert outcome.output.splitlines()[-1].startswith(f"Error: cannot read {run.path / results.CHECKPOINT_FILE}: ")
    assert outcome.output.splitlines()[-1].endswith("; start afresh with --no-resume")


def test_a_run_lock_has_one_holder_at_a_time_and_leaves_no_file(tmp_path):
    import fcntl
    import os

    waits = []
    with results.run_lock(tmp_path, "abc", lambda: waits.append("waited")):
        held = os.open(results.lock_path(tmp_path, "abc"), os.O_RDWR)
        with pytest.raises(BlockingIOError):
            fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.close(held)
    assert waits == []
    # The last holder removes the lock file, so runs/ keeps none.
    assert not results.lock_path(tmp_path, "abc").exists()


class _Interrupt:
    """An echo that presses Ctrl-C as the line of epoch `after` is printed, once its checkpoint is saved."""

    def __init__(self, after: int):
        self.prefix = f"epoch {after}/"

    def __call__(self, line: str) -> None:
        if line.startswith(self.prefix):
            raise KeyboardInterrupt


@pytest.mark.parametrize(
    "schedule",
    [
        {"lr_schedule": "reduce_on_plateau", "lr_factor": 0.3, "min_learning_rate": 0.001},
        {"lr_schedule": "cosine", "min_learning_rate": 0.001},
    ],
)
@pytest.mark.slow
def test_a_resumed_run_with_options_gives_the_uninterrupted_history(tiny_data_dir, tmp_path, schedule):
    # Clipping, early stopping, dropout and a schedule whose state a resume must not lose: the
    # reduced rate of reduce_on_plateau (derived from the history) and cosine's step count.
    raw = {
        **CONFIG,
        "train": {
            "epochs": 12,
            "batch_size": 16,
            "seed": 5,
            "learning_rate": 0.1,
            "clipnorm": 0.5,
            "early_stopping_patience": 2,
            **schedule,
        },
    }
    config = config_from_mapping(raw)
    runs = tmp_path / "runs"
    with pytest.raises(KeyboardInterrupt) as interrupted:
        run_experiment(config, str(tiny_data_dir), runs, "test", echo=_Interrupt(after=2))
    run = results.RunDirectory(Path(interrupted.value.run_dir))
    lines = []
    resumed = run_experiment(config, str(tiny_data_dir), runs, "test", echo=lines.append, resume=run)
    assert f"resuming {run.path} after epoch 2 of 12 (best so far: epoch " in "\n".join(lines)

    reference = run_experiment(config, str(tiny_data_dir), tmp_path / "reference", "test", echo=lambda line: None)
    reference_history = untimed(Path(reference.run_dir, "history.jsonl").read_text().splitlines())
    assert untimed(Path(resumed.run_dir, "history.jsonl").read_text().splitlines()) == reference_history
    for key in (
        "best_val_accuracy",
        "best_epoch",
        "epochs_run",
        "stopped_early",
        "test_accuracy",
        "test_loss",
        "val_confusion",
    ):
        assert resumed.result.value(key) == reference.result.value(key), key
    # The options took effect: training stopped early after the resume, and the rate the resumed
    # epoch 3 started with had already moved (the plateau rule reduced it after epoch 2's higher loss).
    assert 2 < reference.result.epochs_run < 12 and reference.result.stopped_early is True
    rates = [entry["learning_rate"] for entry in reference_history]
    assert rates[0] == 0.1 and rates[2] < rates[1]


@pytest.mark.slow
def test_ctrl_c_inside_a_constructor_leaves_no_traceback_after_its_line(tmp_path, monkeypatch):
    """Ctrl-C that lands while TensorFlow builds a traced function leaves the function half-built,
    and its finalizer fails as the interpreter exits ("Exception ignored in: AtomicFunction.__del__
    ... has no attribute '_generated_graph'"): a traceback printed after the interrupted line, as
    the Ctrl-C test above saw one time in twenty on a busy machine."""
    import gc

    from rnnbench import executor

    class HalfBuilt:
        def __init__(self):
            raise KeyboardInterrupt  # Before the constructor set anything.

        def __del__(self):
            self.generated_graph  # noqa: B018  Fails, as TensorFlow's finalizer does.

    def run_all(*arguments, **options):
        HalfBuilt()

    # Where Python reports a finalizer's error ("Exception ignored in"); put back after the test.
    reported = []
    monkeypatch.setattr(sys, "unraisablehook", reported.append)
    monkeypatch.setattr(executor, "run_all", run_all)
    config_path = tmp_path / "resumable.yaml"
    config_path.write_text(json.dumps(CONFIG))
    outcome = CliRunner().invoke(main, ["run", str(config_path), "--runs-dir", str(tmp_path / "runs")])
    assert (outcome.exit_code, outcome.stdout) == (130, "")
    assert (
        outcome.stderr
        == "\ninterrupted before the run was recorded, so there is nothing to resume; run the same command again to start it\n"
    )
    del outcome  # It holds the interrupted frames, and with them the half-built object.
    gc.collect()
    assert reported == []
