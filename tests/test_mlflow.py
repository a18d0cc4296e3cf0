"""MLflow logging (rnnbench/mlflow_tracking.py) against a real tracking server on 127.0.0.1 with a
SQLite store, started here and stopped mid-run for the failure case, and against a local
sqlite:/// store."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient  # noqa: E402

from rnnbench import mlflow_tracking, results  # noqa: E402
from rnnbench.cli import main  # noqa: E402
from rnnbench.config import config_from_mapping  # noqa: E402
from rnnbench.observers import RunObserver  # noqa: E402

EPOCH_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "seconds")
RUN_FILES = ["config.json", "history.jsonl", "model.keras", "result.json", "test_predictions.npz", "vocabulary.json"]
TINY_YAML = "model: {cell: gru, embedding_dim: 8, units: 8, dense_units: 8}\ndata: {num_words: 40, maxlen: 16}\ntrain: {epochs: 2}\n"


class Server:
    """`mlflow server` on a free port of 127.0.0.1, its store a SQLite file and a folder."""

    def __init__(self, folder: Path):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.folder, self.uri, self.process = folder, f"http://127.0.0.1:{self.port}", None

    def start(self) -> None:
        command = [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{self.folder / 'store.db'}",
            "--artifacts-destination",
            str(self.folder / "artifacts"),
        ]
        log = open(self.folder / "server.log", "ab")
        # Its own process group, so that stopping it stops the web workers it starts too; no job
        # runner (a dozen processes that nothing here uses).
        self.process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        )
        log.close()
        # A hang guard: importing MLflow and starting its server takes minutes on a busy machine.
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.25)
        self.stop()
        pytest.fail(f"mlflow server did not answer: {(self.folder / 'server.log').read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        except ProcessLookupError:
            pass
        self.process = None


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    started = Server(tmp_path_factory.mktemp("mlflow_server"))
    started.start()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def live_server(server):
    """The shared server, running (a test that stopped it may have left it stopped)."""
    if server.process is None:
        server.start()
    return server


def invoke(*args: str, **env: str):
    # Through CliRunner's env, so that the variables `--mlflow` sets are restored afterwards.
    variables = {"MLFLOW_TRACKING_URI": None, mlflow_tracking.PARENT_VARIABLE: None, **env}
    return CliRunner().invoke(main, list(args), env=variables, catch_exceptions=False)


def runs_of(uri: str, experiment: str) -> list:
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    return [] if found is None else client.search_runs([found.experiment_id])


def steps(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((metric.step, metric.value) for metric in client.get_metric_history(run_id, key))


def history_of(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]


def only_run_folder(runs: Path) -> Path:
    [folder] = [path for path in runs.iterdir() if path.is_dir()]
    return folder


@pytest.mark.slow
def test_a_run_is_logged_with_its_config_epochs_results_tags_and_files(live_server, tiny_data_dir, tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_YAML)
    runs = tmp_path / "runs"
    outcome = invoke(
        "run",
        str(config),
        "--data-dir",
        str(tiny_data_dir),
        "--runs-dir",
        str(runs),
        "--mlflow",
        live_server.uri,
        MLFLOW_EXPERIMENT_NAME="whole",
    )
    assert outcome.exit_code == 0, outcome.output
    assert "warning" not in outcome.stderr and "View run" not in outcome.output
    run_dir = only_run_folder(runs)
    record, history = json.loads((run_dir / "result.json").read_text()), history_of(run_dir)

    client = MlflowClient(live_server.uri)
    [logged] = runs_of(live_server.uri, "whole")
    assert logged.info.run_name == "tiny" and logged.info.status == "FINISHED"
    assert logged.data.params == mlflow_tracking.flat_params(record["config"])
    assert logged.data.params["model.cell"] == "gru" and logged.data.params["train.epochs"] == "2"
    assert logged.data.params["train.clipnorm"] == "null"
    for key in EPOCH_KEYS:
        assert steps(client, logged.info.run_id, key) == [(entry["epoch"], entry[key]) for entry in history]
    result = record["result"]
    for key in ("best_val_accuracy", "best_epoch", "test_accuracy", "test_loss", "epochs_run", "train_seconds"):
        assert steps(client, logged.info.run_id, key) == [(0, pytest.approx(result[key]))]
    assert logged.data.metrics["parameters"] == record["parameters"]
    kernel = record["kernels"][0]
    assert {key: value for key, value in logged.data.tags.items() if key.startswith("rnnbench.")} == {
        "rnnbench.run_id": run_dir.name,
        "rnnbench.status": "completed",
        "rnnbench.backend": "tensorflow",
        "rnnbench.device": record["device"],
        "rnnbench.kernels": f"{kernel['layer']}: {kernel['kernel']}",
        "rnnbench.complete": "true",
    }
    assert sorted(item.path for item in client.list_artifacts(logged.info.run_id)) == RUN_FILES
    downloaded = client.download_artifacts(logged.info.run_id, "result.json", str(tmp_path))
    assert Path(downloaded).read_bytes() == (run_dir / "result.json").read_bytes()
    assert json.loads((run_dir / "mlflow.json").read_text())[live_server.uri]["run_id"] == logged.info.run_id

    again = invoke(
        "mlflow-sync", "--runs-dir", str(runs), MLFLOW_TRACKING_URI=live_server.uri, MLFLOW_EXPERIMENT_NAME="whole"
    )
    assert again.exit_code == 0
    assert again.output == f"sent 0 runs to MLflow at {live_server.uri}; 1 already there\n"
    assert len(runs_of(live_server.uri, "whole")) == 1


@pytest.mark.slow
def test_a_sweep_is_one_parent_run_with_its_runs_nested(live_server, tiny_data_dir, tmp_path):
    config = tmp_path / "seeded.yaml"
    config.write_text(TINY_YAML.replace("cell: gru", "cell: ann").replace("epochs: 2", "epochs: 1"))
    runs = tmp_path / "runs"
    # The tracking URI from the environment this time, as MLflow's own tools read it.
    outcome = invoke(
        "run",
        str(config),
        "--seeds",
        "2",
        "--data-dir",
        str(tiny_data_dir),
        "--runs-dir",
        str(runs),
        MLFLOW_TRACKING_URI=live_server.uri,
        MLFLOW_EXPERIMENT_NAME="sweep",
    )
    assert outcome.exit_code == 0, outcome.output
    logged = runs_of(live_server.uri, "sweep")
    [parent] = [run for run in logged if "rnnbench.run_id" not in run.data.tags]
    children = [run for run in logged if run is not parent]
    assert parent.info.run_name == "seeded" and parent.info.status == "FINISHED"
    assert sorted(run.data.tags["rnnbench.run_id"] for run in children) == sorted(
        path.name for path in runs.iterdir() if path.is_dir()
    )
    assert [run.data.tags["mlflow.parentRunId"] for run in children] == [parent.info.run_id] * 2
    assert sorted(run.data.params["train.seed"] for run in children) == ["1", "2"]
    assert mlflow_tracking.PARENT_VARIABLE not in os.environ


@pytest.mark.slow
def test_a_local_sqlite_store_with_diverged_and_resumed_runs(tiny_data_dir, tmp_path, monkeypatch):
    from rnnbench.train import run_experiment

    # A store without a server keeps artifacts in ./mlruns, as MLflow does.
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mapping = {
        "name": "local",
        "model": {"cell": "ann", "dense_units": 8},
        "data": {"num_words": 40, "maxlen": 16},
        "train": {"epochs": 1, "seed": 3},
    }
    record = run_experiment(
        config_from_mapping(mapping), str(tiny_data_dir), tmp_path / "runs", "test", echo=lambda line: None
    )
    [logged] = runs_of(uri, "rnnbench")
    assert logged.data.tags["rnnbench.run_id"] == Path(record.run_dir).name and logged.info.status == "FINISHED"
    assert logged.data.params["model.cell"] == "ann" and logged.data.metrics["test_accuracy"] == pytest.approx(
        record.result.test_accuracy
    )
    assert logged.data.tags["rnnbench.kernels"] == "none"
    assert sorted(item.path for item in MlflowClient(uri).list_artifacts(logged.info.run_id)) == RUN_FILES
    assert (tmp_path / "mlruns").is_dir()

    # A diverged run is finished too: its epochs (the last one's loss not a number), no model.
    from rnnbench import model as model_factory

    loss_for = model_factory.loss_for
    monkeypatch.setattr(
        model_factory, "loss_for", lambda num_classes: lambda labels, predictions: predictions[:, 0] * float("nan")
    )
    diverged = run_experiment(
        config_from_mapping({**mapping, "name": "diverged"}),
        str(tiny_data_dir),
        tmp_path / "runs",
        "test",
        echo=lambda line: None,
    )
    assert diverged.status == "diverged"
    [logged] = [run for run in runs_of(uri, "rnnbench") if run.info.run_name == "diverged"]
    assert logged.info.status == "FAILED" and logged.data.tags["rnnbench.status"] == "diverged"
    assert [(step, value != value) for step, value in steps(MlflowClient(uri), logged.info.run_id, "loss")] == [
        (1, True)
    ]
    assert sorted(item.path for item in MlflowClient(uri).list_artifacts(logged.info.run_id)) == [
        "config.json",
        "history.jsonl",
        "vocabulary.json",
    ]

    # An interrupted run, resumed, goes on in the same MLflow run.
    monkeypatch.setattr(model_factory, "loss_for", loss_for)
    resumed_config = config_from_mapping({**mapping, "name": "resumed", "train": {"epochs": 2, "seed": 3}})
    with pytest.raises(KeyboardInterrupt):
        run_experiment(
            resumed_config,
            str(tiny_data_dir),
            tmp_path / "runs",
            "test",
            echo=lambda line: None,
            observers=[InterruptAfterFirstEpoch()],
        )
    [interrupted] = [run for run in runs_of(uri, "rnnbench") if run.info.run_name == "resumed"]
    assert interrupted.info.status == "KILLED" and interrupted.data.tags["rnnbench.status"] == "interrupted"
    [folder] = (tmp_path / "runs").glob("*-resumed-*")
    record = run_experiment(
        resumed_config,
        str(tiny_data_dir),
        tmp_path / "runs",
        "test",
        echo=lambda line: None,
        resume=results.RunDirectory(folder),
    )
    [logged] = [run for run in runs_of(uri, "rnnbench") if run.info.run_name == "resumed"]
    assert logged.info.run_id == interrupted.info.run_id and logged.info.status == "FINISHED"
    assert [step for step, _ in steps(MlflowClient(uri), logged.info.run_id, "val_accuracy")] == [1, 2]
    assert record.status == "completed"


class InterruptAfterFirstEpoch(RunObserver):
    def epoch_ended(self, entry, history):
        raise KeyboardInterrupt


class StopAfterFirstEpoch(RunObserver):
    def __init__(self, server: Server):
        self.server = server

    def epoch_ended(self, entry, history):
        if entry["epoch"] == 1:
            self.server.stop()


@pytest.mark.slow
def test_a_server_down_mid_run_costs_one_warning_and_a_later_sync_logs_each_run_once(
    live_server, tiny_data_dir, tmp_path, monkeypatch, capsys
):
    from rnnbench.train import run_experiment

    monkeypatch.setenv("MLFLOW_TRACKING_URI", live_server.uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "down")
    runs = tmp_path / "runs"
    mapping = {
        "name": "cut",
        "model": {"cell": "ann", "dense_units": 8},
        "data": {"num_words": 40, "maxlen": 16},
        "train": {"epochs": 3, "seed": 3},
    }
    cut = run_experiment(
        config_from_mapping(mapping),
        str(tiny_data_dir),
        runs,
        "test",
        echo=lambda line: None,
        observers=[StopAfterFirstEpoch(live_server)],
    )
    # Trained with the server down from the start.
    unlogged = run_experiment(
        config_from_mapping({**mapping, "name": "unlogged", "train": {"epochs": 1}}),
        str(tiny_data_dir),
        runs,
        "test",
        echo=lambda line: None,
    )
    assert cut.status == unlogged.status == "completed"
    cut_id, unlogged_id = Path(cut.run_dir).name, Path(unlogged.run_dir).name
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert warnings == [
        f"warning: MLflow at {live_server.uri} failed (connection refused) for run {cut_id}: epochs from 2 on, its results and files"
        " are not logged there; rnnbench mlflow-sync sends them later",
        f"warning: MLflow at {live_server.uri} failed (connection refused) for run {unlogged_id}: nothing of it is logged there;"
        " rnnbench mlflow-sync sends them later",
    ]

    down = invoke("mlflow-sync", "--runs-dir", str(runs), "--mlflow", live_server.uri)
    assert down.exit_code == 1
    assert down.output == (
        f"Error: MLflow at {live_server.uri} failed (connection refused) on run {cut_id}: sent 0 of 2 runs;"
        " run rnnbench mlflow-sync again to send the rest\n"
    )

    live_server.start()  # The same store: the cut run's first epoch is there.
    synced = invoke("mlflow-sync", "--runs-dir", str(runs), "--mlflow", live_server.uri)
    assert synced.exit_code == 0, synced.output
    assert synced.output.splitlines() == [
        f"sent {cut_id} (completed, 3 epochs)",
        f"sent {unlogged_id} (completed, 1 epoch)",
        f"sent 2 runs to MLflow at {live_server.uri}; 0 already there",
    ]
    client = MlflowClient(live_server.uri)
    logged = {run.data.tags["rnnbench.run_id"]: run for run in runs_of(live_server.uri, "down")}
    assert sorted(logged) == sorted([cut_id, unlogged_id])
    for run_id, epochs in ((cut_id, [1, 2, 3]), (unlogged_id, [1])):
        run = logged[run_id]
        assert run.info.status == "FINISHED" and run.data.tags["rnnbench.complete"] == "true"
        history = history_of(runs / run_id)
        for key in EPOCH_KEYS:
            # Each step once, the cut run's first epoch from training and the rest from the sync.
            assert steps(client, run.info.run_id, key) == [(entry["epoch"], entry[key]) for entry in history]
        assert [entry["epoch"] for entry in history] == epochs
        assert steps(client, run.info.run_id, "test_accuracy") == [
            (0, pytest.approx(json.loads((runs / run_id / "result.json").read_text())["result"]["test_accuracy"]))
        ]
        assert sorted(item.path for item in client.list_artifacts(run.info.run_id)) == RUN_FILES

    assert (
        invoke("mlflow-sync", "--runs-dir", str(runs), "--mlflow", live_server.uri).output
        == f"sent 0 runs to MLflow at {live_server.uri}; 2 already there\n"
    )
    # Without its mlflow.json, a run is still found on the server by its rnnbench.run_id tag.
    (runs / cut_id / "mlflow.json").unlink()
    assert (
        invoke("mlflow-sync", "--runs-dir", str(runs), "--mlflow", live_server.uri).output
        == f"sent 0 runs to MLflow at {live_server.uri}; 2 already there\n"
    )
    assert len(runs_of(live_server.uri, "down")) == 2


def test_mlflow_without_the_extra_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # As if it were not installed.
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_YAML)
    outcome = invoke("run", str(config), "--mlflow", "http://127.0.0.1:1", "--runs-dir", str(tmp_path / "runs"))
    assert outcome.exit_code == 2
    assert outcome.output == "Error: --mlflow needs mlflow, an optional extra: pip install 'rnnbench[mlflow]'\n"
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_mlflow_sync_needs_a_tracking_uri(tmp_path):
    outcome = invoke("mlflow-sync", "--runs-dir", str(tmp_path / "runs"))
    assert outcome.exit_code == 2
    assert outcome.output == "Error: no MLflow tracking server: give --mlflow URI or set MLFLOW_TRACKING_URI\n"
