"""TensorBoard events: every run's scalars, read back with TensorBoard's own reader over the runs folder."""

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from tensorboard.backend.event_processing import event_multiplexer

from rnnbench import observers, results, tensorboard_events
from rnnbench.config import config_from_mapping
from rnnbench.executor import run_all
from rnnbench.record import RunRecord
from rnnbench.train import run_experiment

EPOCH_TAGS = {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "seconds"}
RESULT_TAGS = {f"result/{key}" for key in tensorboard_events.RESULT_KEYS}


def tiny_config(seed: int = 3, epochs: int = 3):
    return config_from_mapping(
        {
            "name": "tiny",
            "model": {"cell": "ann", "dense_units": 8},
            "data": {"num_words": 50, "maxlen": 24},
            "train": {"epochs": epochs, "batch_size": 32, "seed": seed},
        }
    )


def read_runs_folder(runs_dir: Path) -> event_multiplexer.EventMultiplexer:
    """The runs folder as `tensorboard --logdir runs_dir` reads it."""
    multiplexer = event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(runs_dir))
    multiplexer.Reload()
    return multiplexer


def history_of(record: dict) -> list[dict]:
    return [json.loads(line) for line in Path(record.run_dir, "history.jsonl").read_text().splitlines()]


def steps(multiplexer: event_multiplexer.EventMultiplexer, run: str, tag: str) -> list[int]:
    return [event.step for event in multiplexer.Scalars(run, tag)]


@pytest.mark.slow
def test_a_run_has_one_scalar_per_epoch_per_tag_and_its_results(tiny_data_dir, tmp_path):
    runs_dir = tmp_path / "runs"
    record = run_experiment(
        tiny_config(), str(tiny_data_dir), runs_dir, "rnnbench run tiny.yaml", echo=lambda line: None
    )
    run_id = Path(record.run_dir).name
    multiplexer = read_runs_folder(runs_dir)
    run = f"{run_id}/tensorboard"
    assert list(multiplexer.Runs()) == [run]
    assert set(multiplexer.Runs()[run]["scalars"]) == EPOCH_TAGS | RESULT_TAGS

    history = history_of(record)
    for tag in EPOCH_TAGS:
        events = multiplexer.Scalars(run, tag)
        assert [event.step for event in events] == [1, 2, 3], tag
        # TensorBoard's scalars are 32-bit floats.
        assert [event.value for event in events] == pytest.approx([entry[tag] for entry in history], rel=1e-6), tag
    for tag in RESULT_TAGS:
        [event] = multiplexer.Scalars(run, tag)
        assert event.step == 3
        assert event.value == pytest.approx(record.result.value(tag.removeprefix("result/")), rel=1e-6)

    # The config, as text at step 0, for TensorBoard's Text tab.
    [config] = multiplexer.Tensors(run, tensorboard_events.CONFIG_TAG)
    assert config.step == 0
    text = config.tensor_proto.string_val[0].decode("utf-8")
    assert text.startswith("`rnnbench run tiny.yaml`") and '"seed": 3' in text


@pytest.mark.slow
def test_every_run_of_a_sweep_is_listed(tiny_data_dir, tmp_path):
    runs_dir = tmp_path / "runs"
    records = run_all(
        [tiny_config(seed=1, epochs=2), tiny_config(seed=2, epochs=2)],
        str(tiny_data_dir),
        runs_dir,
        "rnnbench run tiny.yaml --seeds 2",
        echo=lambda line: None,
    )
    multiplexer = read_runs_folder(runs_dir)
    assert sorted(multiplexer.Runs()) == sorted(f"{Path(record.run_dir).name}/tensorboard" for record in records)
    for record in records:
        run = f"{Path(record.run_dir).name}/tensorboard"
        assert steps(multiplexer, run, "val_accuracy") == [1, 2]
        assert [event.value for event in multiplexer.Scalars(run, "val_accuracy")] == pytest.approx(
            [entry["val_accuracy"] for entry in history_of(record)], rel=1e-6
        )


class _InterruptAfterEvents(observers.RunObserver):
    """Ctrl-C once epoch `after`'s events are written (this observer comes after TensorBoard's)."""

    def __init__(self, after: int):
        self.after = after

    def epoch_ended(self, entry, history):
        if entry["epoch"] == self.after:
            raise KeyboardInterrupt


class _InterruptBeforeEvents:
    """An echo that presses Ctrl-C as epoch `after`'s line is printed: its history and checkpoint
    are saved, its events not yet written (observers are told after the line)."""

    def __init__(self, after: int):
        self.prefix = f"epoch {after}/"

    def __call__(self, line: str) -> None:
        if line.startswith(self.prefix):
            raise KeyboardInterrupt


@pytest.mark.slow
@pytest.mark.parametrize("interrupted_at", ["after its events", "before its events"])
def test_a_resumed_run_has_each_epoch_once(tiny_data_dir, tmp_path, interrupted_at):
    runs_dir = tmp_path / "runs"
    config = tiny_config(epochs=4)
    options = (
        {"echo": _InterruptBeforeEvents(after=2)}
        if interrupted_at == "before its events"
        else {"echo": lambda line: None, "observers": [_InterruptAfterEvents(after=2)]}
    )
    with pytest.raises(KeyboardInterrupt) as interrupted:
        run_experiment(config, str(tiny_data_dir), runs_dir, "test", **options)
    run_dir = Path(interrupted.value.run_dir)
    written_before = {"after its events": {1, 2}, "before its events": {1}}[interrupted_at]
    assert tensorboard_events.recorded_epochs(run_dir / tensorboard_events.FOLDER) == written_before

    record = run_experiment(
        config, str(tiny_data_dir), runs_dir, "test", echo=lambda line: None, resume=results.RunDirectory(run_dir)
    )
    assert record.resumed[0]["after_epoch"] == 2
    multiplexer = read_runs_folder(runs_dir)
    run = f"{run_dir.name}/tensorboard"
    assert list(multiplexer.Runs()) == [run]
    history = history_of(record)
    for tag in EPOCH_TAGS:
        assert steps(multiplexer, run, tag) == [1, 2, 3, 4], tag
    assert [event.value for event in multiplexer.Scalars(run, "loss")] == pytest.approx(
        [entry["loss"] for entry in history], rel=1e-6
    )
    assert len(multiplexer.Tensors(run, tensorboard_events.CONFIG_TAG)) == 1
    assert len(list((run_dir / tensorboard_events.FOLDER).iterdir())) == 2


def _no_space_from_the_fourth_record(monkeypatch):
    # The file's version, the config and epoch 1 are written; epoch 2's record finds the disk full.
    written = []
    original = tensorboard_events.record_bytes

    def record_bytes(data):
        if len(written) == 3:
            raise OSError(28, "No space left on device")
        written.append(data)
        return original(data)

    monkeypatch.setattr(tensorboard_events, "record_bytes", record_bytes)


def _tensorboard_not_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard.compat.proto", None)


@pytest.mark.parametrize(
    "failure, epochs_written, reason",
    [
        (_no_space_from_the_fourth_record, [1], r"\[Errno 28\] No space left on device"),
        (_tensorboard_not_installed, [], r"import of tensorboard\.compat\.proto halted; None in sys\.modules"),
    ],
)
@pytest.mark.slow
def test_a_write_failure_is_one_warning_and_training_goes_on(
    tiny_data_dir, tmp_path, capsys, monkeypatch, failure, epochs_written, reason
):
    failure(monkeypatch)
    runs_dir = tmp_path / "runs"
    record = run_experiment(tiny_config(), str(tiny_data_dir), runs_dir, "test", echo=lambda line: None)
    assert record.status == "completed" and [entry["epoch"] for entry in history_of(record)] == [1, 2, 3]
    run_id = Path(record.run_dir).name
    warnings = [line for line in capsys.readouterr().err.splitlines() if "TensorBoard" in line]
    assert len(warnings) == 1
    expected = (
        rf"warning: TensorBoard events of {run_id} are not written from here on \({reason}\); the run itself goes on"
    )
    assert re.fullmatch(expected, warnings[0]), warnings[0]
    monkeypatch.undo()
    folder = Path(record.run_dir, tensorboard_events.FOLDER)
    assert (tensorboard_events.recorded_epochs(folder) or set()) == set(epochs_written)


def test_records_are_framed_as_tensorboard_reads_them_and_a_cut_record_is_not_counted(tmp_path):
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

    for data in (b"", b"a", b"123456789", bytes(range(256)) * 3):
        assert tensorboard_events.masked_crc32c(data) == masked_crc32c(data)
    events = tensorboard_events.TensorBoardEvents(warn=pytest.fail)
    events.opened(tmp_path, RunRecord(name="test", config={}, command="test"), [{"epoch": 1, "loss": 0.5}])
    events.epoch_ended({"epoch": 2, "loss": 0.25}, [])
    events.closed(RunRecord(name="test", config={}, status="interrupted"))
    [path] = (tmp_path / "tensorboard").iterdir()
    # A process killed while writing epoch 3's record leaves it cut short.
    whole = tensorboard_events.record_bytes(b"epoch three")
    path.write_bytes(path.read_bytes() + whole[:-5])
    assert tensorboard_events.recorded_epochs(tmp_path / "tensorboard") == {1, 2}
    multiplexer = read_runs_folder(tmp_path)
    assert [(event.step, event.value) for event in multiplexer.Scalars("tensorboard", "loss")] == [(1, 0.5), (2, 0.25)]


def test_writing_events_never_imports_tensorflow(tmp_path):
    # A JAX or torch run must not pay for TensorFlow's import, nor tensorboard.summary's, because of its events.
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from rnnbench.record import RunRecord, RunResult
        from rnnbench.tensorboard_events import TensorBoardEvents, recorded_epochs

        events = TensorBoardEvents(warn=print)
        events.opened(Path({str(tmp_path)!r}), RunRecord(name="test", config={{}}, command="test"), [])
        for epoch in (1, 2):
            events.epoch_ended({{"epoch": epoch, "loss": 0.5, "val_accuracy": 0.75}}, [])
        events.closed(RunRecord(name="test", config={{}}, status="completed", result=RunResult(test_accuracy=0.7, epochs_run=2)))
        print(sorted(recorded_epochs(Path({str(tmp_path)!r}, "tensorboard"))), "tensorflow" in sys.modules, "tensorboard.summary" in sys.modules)
    """)
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=600
    )  # A hang guard.
    assert completed.stdout == "[1, 2] False False\n", completed.stderr


def test_a_diverged_run_has_its_last_epoch_too(tiny_data_dir, tmp_path, monkeypatch):
    from rnnbench import model as model_factory

    monkeypatch.setattr(
        model_factory, "loss_for", lambda num_classes: lambda labels, predictions: predictions[:, 0] * float("nan")
    )
    record = run_experiment(tiny_config(), str(tiny_data_dir), tmp_path / "runs", "test", echo=lambda line: None)
    assert record.status == "diverged"
    run = f"{Path(record.run_dir).name}/tensorboard"
    [loss] = read_runs_folder(tmp_path / "runs").Scalars(run, "loss")
    assert loss.step == 1 and loss.value != loss.value  # The epoch whose loss is not a number.
    assert observers.diverged(history_of(record)[0])
