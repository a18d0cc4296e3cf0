"""MLflow, a mirror of the run folders: each run is also logged to an MLflow tracking server.

    rnnbench run CONFIG.yaml --mlflow http://127.0.0.1:5000   (or MLFLOW_TRACKING_URI set)
    rnnbench mlflow-sync                                       sends the finished runs not yet logged

An MLflow run holds the resolved config flattened to dotted keys as params, each epoch's
metrics at the epoch as step, the result's numbers as metrics, tags (rnnbench.run_id,
rnnbench.status, rnnbench.backend, rnnbench.device, rnnbench.kernels) and the run folder's
files as artifacts; the runs of a sweep are nested under a parent run (`parent_run`).

The run folder stays the record. Logging never stops or slows training much: requests have
short timeouts and one retry, and after a run's first failure nothing more of that run is sent,
and one warning line says what was not. `sync` later sends every finished run that is not fully
logged, never twice: each run folder keeps `mlflow.json`, which names its MLflow run on each
tracking URI and whether that run is complete, and an MLflow run carries the tag
rnnbench.run_id, so even a run whose file was never written is found on the server rather than
logged again. A partly logged run is completed in place: only the params, metric steps and
final metrics it lacks are logged, so each step is there once.

mlflow is an optional extra, imported only inside the functions that talk to a server.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

from rnnbench import results
from rnnbench.errors import InputError, RnnbenchError
from rnnbench.observers import RunObserver
from rnnbench.record import RunRecord

TRACKING_URI_VARIABLE = "MLFLOW_TRACKING_URI"
EXPERIMENT_VARIABLE = "MLFLOW_EXPERIMENT_NAME"
# Set while a sweep's parent run is open, so that every run of it, in this process or in a
# worker process started meanwhile, is nested under it.
PARENT_VARIABLE = "RNNBENCH_MLFLOW_PARENT_RUN_ID"
DEFAULT_EXPERIMENT = "rnnbench"
INSTALL_HINT = "pip install 'rnnbench[mlflow]'"
MARKER_FILE = "mlflow.json"
# The run folder's files that an MLflow run gets as artifacts (those that exist: a diverged
# run has no model or result); the checkpoint and mlflow.json are not the run's outcome.
ARTIFACT_FILES = (
    results.CONFIG_FILE,
    results.HISTORY_FILE,
    results.RESULT_FILE,
    results.MODEL_FILE,
    results.TEST_PREDICTIONS_FILE,
    results.VOCABULARY_FILE,
)
# The statuses after which a run never trains again, so that its MLflow run can be completed.
FINISHED = ("completed", "diverged", "pruned")
MLFLOW_STATUSES = {
    "completed": "FINISHED",
    "diverged": "FAILED",
    "pruned": "KILLED",
    "failed": "FAILED",
    "interrupted": "KILLED",
}
# MLflow's defaults retry a request for minutes (7 retries, 120 s timeouts); a server that is
# down or stuck would hold training up that long. These apply unless the user set them.
REQUEST_SETTINGS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    # MLflow prints two lines of links at each run's end; rnnbench's output stays its own.
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}
# MLflow's limits on one log_batch request.
PARAMS_PER_REQUEST, TAGS_PER_REQUEST, METRICS_PER_REQUEST = 100, 100, 1000
COMPLETE_TAG = "rnnbench.complete"
RUN_ID_TAG = "rnnbench.run_id"


class TrackingError(RnnbenchError):
    """A tracking server that could not take what `mlflow-sync` sent, in one line."""


def require_mlflow(option: str = "--mlflow") -> None:
    """Refuse, in one line naming the extra, MLflow logging without mlflow installed."""
    if importlib.util.find_spec("mlflow") is None:
        raise InputError(f"{option} needs mlflow, an optional extra: {INSTALL_HINT}")


def use(uri: str) -> None:
    """Log every run of this command, and of the worker processes it starts, to `uri`."""
    require_mlflow()
    check_store(uri)
    os.environ[TRACKING_URI_VARIABLE] = uri


def check_store(uri: str, option: str = "--mlflow") -> None:
    """Refuse a SQLite store (sqlite:///relative.db, sqlite:////absolute/path.db) whose folder
    does not exist: MLflow would create every missing folder on the way without a word, so a
    typo in the path would leave the runs logged somewhere no one looks."""
    if not uri.startswith("sqlite://"):
        return
    path = uri[len("sqlite://") :].partition("?")[0][1:]
    if path in ("", ":memory:"):
        return
    folder = Path(path).parent
    if not folder.is_dir():
        raise InputError(
            f"{option} {uri}: the folder {folder} does not exist; create it first, or give a store in a folder that exists"
        )


def mlflow_observers() -> list[RunObserver]:
    """The MLflow observer of a run when MLFLOW_TRACKING_URI is set (by --mlflow or the user)."""
    uri = os.environ.get(TRACKING_URI_VARIABLE)
    if not uri:
        return []
    if importlib.util.find_spec("mlflow") is None:
        _warn(
            f"{TRACKING_URI_VARIABLE} is set but mlflow is not installed, so this run is not logged there: {INSTALL_HINT}"
        )
        return []
    return [MlflowObserver(uri, os.environ.get(PARENT_VARIABLE) or None)]


class MlflowObserver(RunObserver):
    """Logs one run to MLflow as it trains; after its first failure it sends nothing more of the
    run and warns once, leaving the rest to `rnnbench mlflow-sync`."""

    def __init__(self, uri: str, parent_run_id: Optional[str] = None):
        self.uri, self.parent_run_id = uri, parent_run_id
        self.tracker: Optional[_Tracker] = None
        self.mlflow_run_id: Optional[str] = None
        self.run_dir: Optional[Path] = None
        self.given_up = False

    def opened(self, run_dir: Path, record: RunRecord, history: Sequence[dict[str, Any]]) -> None:
        self.run_dir = run_dir
        self._attempt("nothing of it is logged there", lambda: self._open(record, history))

    def _open(self, run: RunRecord, history: Sequence[dict[str, Any]]) -> None:
        assert self.run_dir is not None
        # Before the server is asked anything, so that a later sync nests the run under its sweep.
        _update_marker(self.run_dir, self.uri, parent_run_id=self.parent_run_id, keep=True)
        self.tracker = _Tracker(self.uri)
        self.mlflow_run_id, _ = self.tracker.run_of(self.run_dir, run, self.parent_run_id)
        # A resumed run goes on in the MLflow run its first process opened.
        self.tracker.client.update_run(self.mlflow_run_id, status="RUNNING")
        self.tracker.log_missing(self.mlflow_run_id, dataclasses.replace(run, status="running"), history)

    def epoch_ended(self, entry: dict[str, Any], history: Sequence[dict[str, Any]]) -> None:
        def log() -> None:
            assert self.tracker is not None and self.mlflow_run_id is not None
            self.tracker.log_batches(self.mlflow_run_id, metrics=_epoch_metrics([entry]))

        self._attempt(f"epochs from {entry['epoch']} on, its results and files are not logged there", log)

    def closed(self, record: RunRecord) -> None:
        finished = record.status in FINISHED

        def close() -> None:
            assert self.tracker is not None and self.mlflow_run_id is not None and self.run_dir is not None
            if finished:
                self.tracker.complete(self.run_dir, record, self.mlflow_run_id)
            else:
                # Interrupted or failed: a later `rnnbench run` resumes it in the same MLflow run.
                self.tracker.client.set_tag(self.mlflow_run_id, "rnnbench.status", record.status)
                self.tracker.client.set_terminated(self.mlflow_run_id, MLFLOW_STATUSES[record.status])

        self._attempt(
            "its results and files are not logged there"
            if finished
            else f"its end ({record.status}) is not logged there",
            close,
        )

    def _attempt(self, unsent: str, action: Callable[[], None]) -> None:
        """Run `action` unless an earlier one failed; on its failure, warn once and give up the run."""
        if self.given_up:
            return
        try:
            action()
        except Exception as error:  # An observer that copies the record never stops training.
            self.given_up = True
            run_id = self.run_dir.name if self.run_dir else "?"
            _warn(
                f"MLflow at {self.uri} failed ({_reason(error)}) for run {run_id}: {unsent}; rnnbench mlflow-sync sends them later"
            )


@contextlib.contextmanager
def parent_run(name: str) -> Iterator[Optional[str]]:
    """A parent MLflow run named `name` (a sweep, a tuning study) for the runs trained inside the
    block, which are nested under it; yields its id, or None when runs are not logged to MLflow
    or the server did not answer (then one warning line, and the runs are logged unnested)."""
    uri = os.environ.get(TRACKING_URI_VARIABLE)
    parent_id = None
    if uri and importlib.util.find_spec("mlflow") is not None:
        try:
            tracker = _Tracker(uri)
            parent_id = tracker.client.create_run(
                tracker.experiment_id, run_name=name, tags={"rnnbench.parent": name}
            ).info.run_id
        except Exception as error:
            _warn(
                f"MLflow at {uri} failed ({_reason(error)}): no parent run for {name}; its runs are logged without one"
            )
    if parent_id is None:
        yield None
        return
    previous = os.environ.get(PARENT_VARIABLE)
    os.environ[PARENT_VARIABLE] = parent_id
    status = "FAILED"
    try:
        yield parent_id
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        if previous is None:
            os.environ.pop(PARENT_VARIABLE, None)
        else:
            os.environ[PARENT_VARIABLE] = previous
        try:
            tracker.client.set_terminated(parent_id, status)
        except Exception as error:
            _warn(f"MLflow at {uri} failed ({_reason(error)}): the parent run of {name} is left running there")


def sync(runs_dir: Path, uri: str, echo: Callable[[str], None]) -> tuple[int, int]:
    """Log to `uri` every finished run (completed, diverged, pruned) of `runs_dir` that is not
    fully logged there, from its files; returns how many were sent and how many already were."""
    require_mlflow("rnnbench mlflow-sync")
    check_store(uri)
    records = results.read_records(runs_dir, FINISHED)
    pending = [
        record
        for record in records
        if not _read_marker(results.run_directory(runs_dir, record).path).get(uri, {}).get("complete")
    ]
    sent, present = 0, len(records) - len(pending)
    tracker: Optional[_Tracker] = None
    for record in pending:
        run_dir = results.run_directory(runs_dir, record).path
        if not run_dir.is_dir():
            echo(f"skipped {record.run_id}: its folder is gone from {runs_dir}")
            continue
        try:
            tracker = tracker or _Tracker(uri)
            mlflow_run_id, complete = tracker.run_of(run_dir, record, None)
            if complete:
                _update_marker(run_dir, uri, complete=True)
                present += 1
                continue
            tracker.complete(run_dir, record, mlflow_run_id)
        except RnnbenchError:
            raise
        except Exception as error:
            raise TrackingError(
                f"MLflow at {uri} failed ({_reason(error)}) on run {record.run_id}: sent {sent} of"
                f" {len(pending)} runs; run rnnbench mlflow-sync again to send the rest"
            ) from None
        sent += 1
        epochs = record.metric("epochs_run") or 0
        echo(f"sent {record.run_id} ({record.status}, {epochs} epoch{'' if epochs == 1 else 's'})")
    return sent, present


class _Tracker:
    """A tracking server (or local store) and rnnbench's experiment on it."""

    def __init__(self, uri: str):
        for name, value in REQUEST_SETTINGS.items():
            os.environ.setdefault(name, value)
        from mlflow.tracking import MlflowClient

        self.uri = uri
        self.client = MlflowClient(uri)
        self.experiment_id = self._experiment(os.environ.get(EXPERIMENT_VARIABLE) or DEFAULT_EXPERIMENT)

    def _experiment(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is None:
            try:
                return self.client.create_experiment(name)
            except Exception:
                # Another process (a worker of the same sweep) may have created it meanwhile.
                found = self.client.get_experiment_by_name(name)
                if found is None:
                    raise
        if found.lifecycle_stage != "active":
            raise TrackingError(
                f"the experiment {name!r} is deleted on {self.uri}; restore it or set {EXPERIMENT_VARIABLE}"
            )
        return found.experiment_id

    def run_of(self, run_dir: Path, record: RunRecord, parent_run_id: Optional[str]) -> tuple[str, bool]:
        """The MLflow run of `run_dir` (the one mlflow.json names, else the one tagged with its
        run id, else a new one) and whether it is complete; mlflow.json then names it."""
        from mlflow.exceptions import MlflowException

        entry = _read_marker(run_dir).get(self.uri, {})
        found = None
        if entry.get("run_id"):
            try:
                found = self.client.get_run(entry["run_id"])
            except MlflowException as error:
                if error.error_code != "RESOURCE_DOES_NOT_EXIST":
                    raise
        if found is None or found.info.lifecycle_stage != "active":
            matches = self.client.search_runs(
                [self.experiment_id], f"tags.`{RUN_ID_TAG}` = '{run_dir.name}'", max_results=10
            )
            found = max(matches, key=lambda run: run.data.tags.get(COMPLETE_TAG) == "true", default=None)
        parent_run_id = entry.get("parent_run_id") or parent_run_id
        if found is None:
            tags = {RUN_ID_TAG: run_dir.name, **({"mlflow.parentRunId": parent_run_id} if parent_run_id else {})}
            found = self.client.create_run(self.experiment_id, run_name=record.name, tags=tags)
        _update_marker(
            run_dir,
            self.uri,
            experiment_id=self.experiment_id,
            run_id=found.info.run_id,
            parent_run_id=parent_run_id,
            complete=False,
        )
        return found.info.run_id, found.data.tags.get(COMPLETE_TAG) == "true"

    def log_missing(
        self, mlflow_run_id: str, record: RunRecord, history: Sequence[dict[str, Any]], final: bool = False
    ) -> None:
        """Log the params, tags, epoch metrics (and with `final` the result's numbers) that the
        MLflow run lacks: a metric step already there is never logged again."""
        from mlflow.entities import Param, RunTag

        logged = self.client.get_run(mlflow_run_id).data
        steps = {
            key: {metric.step for metric in self.client.get_metric_history(mlflow_run_id, key)}
            for key in logged.metrics
        }
        params = [Param(key, value) for key, value in flat_params(record.config).items() if key not in logged.params]
        tags = [RunTag(key, value) for key, value in run_tags(record).items() if logged.tags.get(key) != value]
        metrics = [metric for metric in _epoch_metrics(history) if metric.step not in steps.get(metric.key, ())]
        if final:
            metrics += [metric for metric in _final_metrics(record) if metric.key not in logged.metrics]
        self.log_batches(mlflow_run_id, params, metrics, tags)

    def log_batches(
        self, mlflow_run_id: str, params: Sequence[Any] = (), metrics: Sequence[Any] = (), tags: Sequence[Any] = ()
    ) -> None:
        for start in range(0, len(params), PARAMS_PER_REQUEST):
            self.client.log_batch(mlflow_run_id, params=params[start : start + PARAMS_PER_REQUEST])
        for start in range(0, len(metrics), METRICS_PER_REQUEST):
            self.client.log_batch(mlflow_run_id, metrics=metrics[start : start + METRICS_PER_REQUEST])
        for start in range(0, len(tags), TAGS_PER_REQUEST):
            self.client.log_batch(mlflow_run_id, tags=tags[start : start + TAGS_PER_REQUEST])

    def complete(self, run_dir: Path, record: RunRecord, mlflow_run_id: str) -> None:
        """Make the MLflow run of a finished run whole, from its folder's files, and mark it complete."""
        self.log_missing(mlflow_run_id, record, results.RunDirectory(run_dir).read_history(), final=True)
        for name in ARTIFACT_FILES:
            if (run_dir / name).is_file():
                # Logging a file again replaces it, so a sync after a partial upload is harmless.
                self.client.log_artifact(mlflow_run_id, str(run_dir / name))
        self.client.set_terminated(mlflow_run_id, MLFLOW_STATUSES[str(record.status)])
        # Last: a run tagged complete has everything above.
        self.client.set_tag(mlflow_run_id, COMPLETE_TAG, "true")
        _update_marker(run_dir, self.uri, complete=True)


def flat_params(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """The config as MLflow params: nested keys dotted (model.cell), values as text (lists as JSON)."""
    flat = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            flat.update(flat_params(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value if isinstance(value, str) else json.dumps(value)
    return flat


def run_tags(record: RunRecord) -> dict[str, str]:
    kernels = "; ".join(f"{choice['layer']}: {choice['kernel']}" for choice in record.kernels or ())
    return {
        RUN_ID_TAG: Path(record.run_dir).name if record.run_dir else str(record.run_id),
        "rnnbench.status": record.status or "running",
        "rnnbench.backend": record.backend or "",
        "rnnbench.device": record.device or "",
        # Recurrent layers only; a model without any (ann) has none.
        "rnnbench.kernels": kernels or "none",
    }


def _epoch_metrics(history: Sequence[dict[str, Any]]) -> list[Any]:
    """Each epoch's numbers (loss, accuracy, val_loss, val_accuracy, learning_rate, seconds) at its epoch as step."""
    from mlflow.entities import Metric

    stamp = int(time.time() * 1000)
    return [
        Metric(key, float(value), stamp, int(entry["epoch"]))
        for entry in history
        for key, value in entry.items()
        if key != "epoch" and _is_number(value)
    ]


def _final_metrics(record: RunRecord) -> list[Any]:
    """The result's numbers (best_val_accuracy, test_accuracy, ...) and the parameter count, at step 0."""
    from mlflow.entities import Metric

    stamp = int(time.time() * 1000)
    result = {} if record.result is None else record.result.to_json()
    numbers = {key: value for key, value in result.items() if _is_number(value)}
    if record.parameters is not None:
        numbers["parameters"] = record.parameters
    return [Metric(key, float(value), stamp, 0) for key, value in numbers.items()]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _read_marker(run_dir: Path) -> dict[str, Any]:
    """mlflow.json: for each tracking URI, the MLflow run of this run folder and whether it is complete."""
    try:
        marker = json.loads((run_dir / MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # None yet, or damaged: the server's rnnbench.run_id tag still finds the run.
    return marker if isinstance(marker, dict) else {}


def _update_marker(run_dir: Path, uri: str, keep: bool = False, **fields: Any) -> None:
    """Set `fields` of `uri`'s entry in mlflow.json (with `keep`, only those it lacks)."""
    marker = _read_marker(run_dir)
    entry = marker.get(uri) if isinstance(marker.get(uri), dict) else {}
    for key, value in fields.items():
        if not (keep and entry.get(key) is not None):
            entry[key] = value
    marker[uri] = entry
    results.write_json(run_dir / MARKER_FILE, marker)


def _reason(error: BaseException) -> str:
    """Why a request failed, briefly: the operating system's words when there are some."""
    text = str(error)
    system = re.search(r"\[Errno -?\d+\] ([^'\"()]+)", text)
    if system:
        return system.group(1).strip().lower()
    if "timed out" in text.lower():
        return "timed out"
    line = " ".join(text.split()) or type(error).__name__
    return line if len(line) <= 120 else line[:117] + "..."


def _warn(line: str) -> None:
    print(f"warning: {line}", file=sys.stderr, flush=True)
