"""The worker side of training: one run, as a driver hands it over, trained by the one worker function.

    RunRequest -> train_request -> RunOutcome

Every executor (rnnbench.executor: in this process, `--jobs` processes; rnnbench.cluster: Ray
tasks) gives `train_request` a `RunRequest` and gets back a `RunOutcome`, so that there is one
training path however runs are spread. A request names the run's folder: the driver chose it
under the run's lock, and the run goes on from that folder's checkpoint when it has one.

Where the index is written: on one machine, the worker indexes its own run as it goes (running,
then how it ended), as a single `rnnbench run` does; SQLite's locking is sound on a local disk.
From a cluster (`runs_marker` set), the worker writes no index at all, and its driver indexes the
record the task returns (SQLite over a network file system is not safe). A cluster worker that
can't see the driver's runs folder trains in a scratch folder of its own machine and sends the
run's files back in the outcome, for the driver to write.

This module imports no Keras: a worker chooses its backend, and how it takes GPU memory, before
Keras is imported (`prepare`); `train_request` imports the runner only when it runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional, Protocol

from rnnbench.errors import RnnbenchError

if TYPE_CHECKING:
    from rnnbench.encoded import EncodedData
    from rnnbench.observers import RunObserver
    from rnnbench.record import RunRecord


class WorkerError(RnnbenchError):
    """A worker that died without a result (killed, out of memory, its machine gone), in one line."""


class Watch(Protocol):
    """What a driver hands a worker to follow its run by (tune's `TrialWatch`): plain values that
    pickle, made into a run observer where the run trains."""

    def observer(self) -> "RunObserver":
        """The observer told of the run's epochs; one that raises `errors.RunStopped` ends the run
        with that status (a pruned trial), an outcome rather than a failure."""
        ...


@dataclasses.dataclass(frozen=True)
class RunRequest:
    """One run as a driver hands it to a worker: plain values, so that it pickles to another process or machine."""

    label: str
    # The resolved config, as Config.to_dict() gives it.
    config: dict[str, Any]
    data_dir: Optional[str]
    runs_dir: str
    command: str
    # The run's folder in runs_dir: a new run's name, or an unfinished run's to go on with.
    run_id: str
    # Say "training" or "resuming" first, after the label (a sequential sweep's lines).
    announce: bool = False
    # Keras' progress bar: None shows it on a terminal; workers that share one terminal show none.
    progress_bar: Optional[bool] = False
    # Set by a cluster driver: a file in runs_dir that a worker sees only where the runs folder is
    # shared. A request with a marker is never indexed by its worker.
    runs_marker: Optional[str] = None
    # An unfinished run's files (checkpoint included), for a cluster worker that can't see runs_dir.
    resume_files: Optional[dict[str, bytes]] = None
    # Made into an observer where the run trains: tune's trials report to their study and end
    # pruned through it.
    watch: Optional[Watch] = None


@dataclasses.dataclass(frozen=True, eq=False)
class RunOutcome:
    """What a worker sends back: the run's record, its files when the driver can't read its folder, and where it ran.
    The record is a RunRecord, pickled as it is to a `--jobs` driver or through Ray: plain values all the way down."""

    record: "RunRecord"
    files: Optional[dict[str, bytes]] = None
    node: Optional[str] = None


def prepare(backend_name: str, gpu_share: Optional[float] = None) -> None:
    """Choose the backend and how a run takes GPU memory; call before Keras is imported.

    Runs that share one GPU each take memory as they need it, instead of JAX's 75% or
    TensorFlow's all of it up front, which would leave nothing for the next run. With
    `gpu_share` (a Ray task's `--gpus-per-run`), JAX's allocator and torch's are also capped at
    that share of the GPU; TensorFlow only grows, since capping it takes a call after its import.
    """
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    if gpu_share:
        # The variable's new name and the one older JAX releases read.
        os.environ.setdefault("XLA_CLIENT_MEM_FRACTION", f"{gpu_share:.4g}")
        os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", f"{gpu_share:.4g}")
    from rnnbench.backend import select_backend

    select_backend(backend_name)
    if gpu_share and backend_name == "torch":
        import torch

        if torch.cuda.is_available():
            torch.cuda.set_per_process_memory_fraction(min(gpu_share, 1.0))


def train_request(
    request: RunRequest, echo: Callable[[str], None], prepared: Optional["EncodedData"] = None
) -> RunOutcome:
    """Train the run `request` describes, in its folder, going on from the folder's checkpoint if it has one.

    The one worker function: the same for a sequential sweep, `--jobs` processes and Ray tasks.
    `prepared` is the run's data when the driver prepared it; else the worker reads and encodes
    it. A run that its watch's observer stopped (pruned) comes back as an outcome like any other.
    """
    from rnnbench import results, train
    from rnnbench.config import Config

    config = Config.model_validate(request.config)
    runs_dir = Path(request.runs_dir)
    on_cluster = request.runs_marker is not None
    sends_files = on_cluster and not (runs_dir / request.runs_marker).exists()
    where = scratch_folder(request.runs_marker) if sends_files else runs_dir
    run = results.RunDirectory(where / request.run_id)
    with _removed_afterwards(run.path if sends_files else None):
        if sends_files and request.resume_files and not run.has_checkpoint():
            run.path.mkdir(parents=True, exist_ok=True)
            run.write_files(request.resume_files)
        if on_cluster and run.path.exists() and not run.has_checkpoint():
            # Only a retried task (its first worker died before an epoch ended) finds its folder
            # without a checkpoint; it was never indexed by anyone but the driver, as running.
            shutil.rmtree(run.path)
        resume = run if run.has_checkpoint() else None
        if request.announce:
            echo(f"{request.label}: {'resuming' if resume else 'training'}")
        record = train.run_experiment(
            config,
            request.data_dir,
            where,
            request.command,
            echo,
            resume=resume,
            progress_bar=request.progress_bar,
            observers=[request.watch.observer()] if request.watch is not None else [],
            run_id=request.run_id,
            index=_indexed_by_driver if on_cluster else None,
            prepared=prepared,
        )
        return RunOutcome(record, run.files() if sends_files else None)


def _indexed_by_driver(run_id: str, name: str, status: str, record: dict[str, Any]) -> None:
    """A cluster worker's index: nothing. Its driver indexed the run as running when it handed it
    out, and indexes the record the task returns (or interrupted, failed, if none comes back)."""


def scratch_folder(runs_marker: str) -> Path:
    """Where a cluster worker that can't see the runs folder trains; the same path on every try of a task."""
    return Path(tempfile.gettempdir()) / f"rnnbench-{runs_marker.lstrip('.')}"


@contextlib.contextmanager
def _removed_afterwards(path: Optional[Path]) -> Iterator[None]:
    """Remove `path` (a scratch run folder) when the block ends, unless the process dies first: a
    task retried on the same machine then goes on from its checkpoint."""
    try:
        yield
    finally:
        if path is not None:
            shutil.rmtree(path, ignore_errors=True)
            with contextlib.suppress(OSError):
                path.parent.rmdir()  # Only once empty: other runs of the sweep may train beside it.


def train_in_process(request: RunRequest) -> RunOutcome:
    """`train_request` in a `--jobs` worker process, whose lines each name their run."""
    try:
        return train_request(request, labelled_echo(request.label))
    except KeyboardInterrupt:
        # The run, if one had started, is recorded as interrupted by now. Leave the pool, rather than
        # go on to the next queued run: Ctrl-C stops the whole sweep.
        sys.stdout.flush()
        os._exit(130)


def labelled_echo(label: str) -> Callable[[str], None]:
    """A worker's `echo`: every line names its run, since several runs print at once, and goes to
    standard output in one write, so that lines from several processes never mix within a line."""

    def echo(line: str) -> None:
        whole = f"{label} {line}\n".encode(sys.stdout.encoding or "utf-8", errors="backslashreplace")
        written = os.write(1, whole)
        while written < len(whole):  # Only a signal can cut a write to a pipe or terminal short.
            written += os.write(1, whole[written:])

    return echo
