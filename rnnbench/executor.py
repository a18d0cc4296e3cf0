"""Where the runs of a sweep train: here, one after another; in local processes (`--jobs N`); or as
tasks on a Ray cluster (`--cluster`, rnnbench.cluster).

Every executor is driven by the same loop, `train_pending`. The driver (this process) claims
each run under its lock (reuse a completed run, go on with an unfinished one, or name a new
one), hands the executor a `worker.RunRequest` for it, and yields the record that the one worker
function, `worker.train_request`, sends back. An executor only says how many runs may train at
once, starts one, tells which have finished, and stops the rest on Ctrl-C or a failure:

    executor      where train_request runs        who indexes the run
    Sequential    this process                    this process
    Processes     a spawned process per job       the process that trains it (one machine)
    RayCluster    a Ray task on any node          this process only, from the record returned

This module imports neither Keras nor Ray: a `--jobs` worker imports it before choosing its
backend, and Ray is imported only with `--cluster`.
"""

from __future__ import annotations

import concurrent.futures
import concurrent.futures.process
import contextlib
import dataclasses
import json
import multiprocessing
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Optional, Protocol

from rnnbench import claims, results, worker
from rnnbench.record import RunRecord, RunResult

if TYPE_CHECKING:
    from rnnbench.cluster import ClusterSettings
    from rnnbench.config import Config


@dataclasses.dataclass(frozen=True)
class Pending:
    """A run of the sweep still to train: its place in the sweep, its label and its config."""

    position: int
    label: str
    config: "Config"
    # Built into a run observer where the run trains (`tune`'s trials: report epochs, prune).
    watch: Optional[worker.Watch] = None


@dataclasses.dataclass(frozen=True)
class Sweep:
    """What every run of one `run_all` shares."""

    data_dir: Optional[str]
    runs_dir: Path
    command: str
    echo: Callable[[str], None]
    reuse: bool
    resume: bool
    # A sweep of several runs names the run in each line it says.
    announce: bool

    def say(self, label: str) -> Callable[[str], None]:
        return lambda line: self.echo(f"{label}: {line}" if self.announce else line)

    def request(self, item: Pending, run_id: str, **settings: Any) -> worker.RunRequest:
        return worker.RunRequest(
            item.label,
            item.config.to_dict(),
            self.data_dir,
            str(self.runs_dir),
            self.command,
            run_id,
            watch=item.watch,
            **settings,
        )


class Executor(Protocol):
    """What `train_pending` asks of an executor; used as a context manager around the sweep."""

    def __enter__(self) -> "Executor": ...

    def __exit__(self, *exception: Any) -> Optional[bool]: ...

    def room(self) -> int:
        """How many runs may train at once now (at least 1)."""

    def start(self, item: Pending, run: Path, resume: bool) -> Any:
        """Start training `item` in the folder `run` (going on from its checkpoint if `resume`); returns a handle."""

    def finished(self, handles: list[Any]) -> list[Any]:
        """Wait until at least one of `handles` has finished; return those that have."""

    def outcome(self, handle: Any) -> worker.RunOutcome:
        """The finished run's outcome, its record indexed; raises what stopped it."""

    def stop(self, handles: list[Any]) -> None:
        """Stop the runs of `handles` (Ctrl-C, or another run failed), leaving each resumable."""


def train_pending(
    pending: Iterable[Pending],
    executor: Executor,
    sweep: Sweep,
    failed: Callable[[Pending], None] = lambda item: None,
) -> Iterator[tuple[Pending, worker.RunOutcome]]:
    """Train `pending` on `executor`, at most `executor.room()` at a time; yields each run as it finishes.

    Each run is claimed only when there is room for it, and its lock is held until it finishes,
    so that a run another process is training is waited for, then reused. `pending` is read one
    run at a time, only when there is room (tune asks its next trial then). The run whose
    training raised is told to `failed` before the error goes on.
    """
    waiting = iter(pending)
    running: dict[Any, tuple[Pending, contextlib.ExitStack]] = {}
    item: Optional[Pending] = None
    try:
        while True:
            while len(running) < executor.room():
                item = None  # Until a run is taken: none of the runs started is the one an error is about.
                item = next(waiting, None)
                if item is None:
                    break
                lock = contextlib.ExitStack()
                try:
                    claimed = lock.enter_context(
                        claims.claim(item.config, sweep.runs_dir, sweep.reuse, sweep.resume, sweep.say(item.label))
                    )
                    if claimed.completed is None:
                        run = claimed.unfinished or sweep.runs_dir / results.new_run_id(item.config.name)
                        running[executor.start(item, run, claimed.unfinished is not None)] = (item, lock)
                        item = None
                        continue
                except BaseException:
                    lock.close()
                    raise
                lock.close()
                yield item, worker.RunOutcome(claimed.completed)
            item = None
            if not running:
                return
            for handle in executor.finished(list(running)):
                item, lock = running.pop(handle)
                with lock:
                    outcome = executor.outcome(handle)
                finished, item = item, None
                yield finished, outcome
    except Exception:
        if item is not None:
            failed(item)
        executor.stop(list(running))
        raise
    except BaseException:
        executor.stop(list(running))
        raise
    finally:
        for _, lock in running.values():
            lock.close()


class Sequential:
    """Each run in this process, one after another, with Keras' progress bar on a terminal."""

    def __init__(self, sweep: Sweep):
        self.sweep = sweep
        self.done: dict[int, worker.RunOutcome] = {}

    def __enter__(self) -> "Sequential":
        return self

    def __exit__(self, *exception: Any) -> None:
        return None

    def room(self) -> int:
        return 1

    def start(self, item: Pending, run: Path, resume: bool) -> int:
        request = self.sweep.request(item, run.name, announce=self.sweep.announce, progress_bar=None)
        self.done[item.position] = worker.train_request(request, self.sweep.echo)
        return item.position

    def finished(self, handles: list[int]) -> list[int]:
        return handles

    def outcome(self, handle: int) -> worker.RunOutcome:
        return self.done.pop(handle)

    def stop(self, handles: list[int]) -> None:
        return None  # Nothing else is running: the run that stopped recorded itself.


class Processes:
    """`jobs` runs at once, each in a spawned process of its own whose lines name its run.

    With `gpu_share` (`--gpus-per-run`), each process caps its GPU memory to that share of the
    GPU before Keras is imported (`worker.prepare`), so that `jobs` runs pack onto one GPU
    without Ray.
    """

    def __init__(self, sweep: Sweep, jobs: int, count: int, backend_name: str, gpu_share: Optional[float] = None):
        self.sweep, self.jobs, self.count, self.backend_name, self.gpu_share = (
            sweep,
            jobs,
            count,
            backend_name,
            gpu_share,
        )
        self.labels: dict[concurrent.futures.Future, str] = {}

    def __enter__(self) -> "Processes":
        share = f", each with {self.gpu_share:g} of the GPU" if self.gpu_share else ""
        self.sweep.echo(f"training {self.count} runs, {self.jobs} at a time{share}")
        self.pool = concurrent.futures.ProcessPoolExecutor(
            self.jobs,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=worker.prepare,
            initargs=(self.backend_name, self.gpu_share),
        )
        return self

    def __exit__(self, *exception: Any) -> None:
        self.pool.shutdown(wait=True)

    def room(self) -> int:
        return self.jobs

    def start(self, item: Pending, run: Path, resume: bool) -> concurrent.futures.Future:
        future = self.pool.submit(worker.train_in_process, self.sweep.request(item, run.name))
        self.labels[future] = item.label
        return future

    def finished(self, handles: list[concurrent.futures.Future]) -> list[concurrent.futures.Future]:
        return list(concurrent.futures.wait(handles, return_when=concurrent.futures.FIRST_COMPLETED).done)

    def outcome(self, handle: concurrent.futures.Future) -> worker.RunOutcome:
        try:
            return handle.result()
        except concurrent.futures.process.BrokenProcessPool:
            raise worker.WorkerError(
                f"a worker process died during {self.labels[handle]} (killed, or out of memory); finished runs are"
                " recorded: run the same command again to continue"
            ) from None

    def stop(self, handles: list[concurrent.futures.Future]) -> None:
        # Ctrl-C reaches the workers too: each records its run as interrupted and exits.
        self.pool.shutdown(wait=False, cancel_futures=True)


def run_all(
    configs: list["Config"],
    data_dir: Optional[str],
    runs_dir: Path,
    command: str,
    force: bool = False,
    echo: Callable[[str], None] = print,
    resume: bool = True,
    jobs: int = 1,
    cluster: Optional["ClusterSettings"] = None,
    gpus_per_run: Optional[float] = None,
) -> list[RunRecord]:
    """Run each config with a progress line per run, reusing any that already completed (unless
    `force`) and going on with any that stopped part-way (if `resume` and not `force`).

    With `jobs` > 1, that many runs train at once, each in a process of its own: one small model
    leaves most of a GPU idle; `gpus_per_run` caps each one's GPU memory to that share. With
    `cluster`, every run is a task on that Ray cluster, and its line names the node it ran on.
    Records come back in the order of `configs` either way. Before anything trains, the index is
    checked to be writable and, with several runs to train, each distinct data source they read
    is read once, so a bad file stops the sweep at once.
    """
    from rnnbench import model

    for config in configs:
        # Known from the config alone (two classes make the smallest head), so a model far too
        # big is refused before any data is read; build_model checks the exact size again.
        model.refuse_too_large(config, config.data.num_words, 2)
    results.check_writable(runs_dir)
    done = {} if force else claims.completed_runs(runs_dir)
    records: dict[int, RunRecord] = {}
    pending = []
    for position, config in enumerate(configs, start=1):
        label = f"[{position}/{len(configs)}] {config.name}, seed {config.train.seed}"
        existing = done.get(config.fingerprint())
        if existing is not None:
            echo(f"{label}: {claims.reuse_note(existing)}")
            records[position] = existing
        else:
            pending.append(Pending(position, label, config))
    if len(pending) > 1:
        check_data([item.config for item in pending], data_dir, echo)

    sweep = Sweep(
        data_dir, runs_dir, command, echo, reuse=not force, resume=resume and not force, announce=len(configs) > 1
    )
    # Closed inside the executor's block, so that an interrupt while a line is said here still
    # stops the runs in flight before the executor goes.
    with (
        _executor(sweep, pending, jobs, cluster, gpus_per_run) as executor,
        contextlib.closing(train_pending(pending, executor, sweep)) as finishing,
    ):
        for item, outcome in finishing:
            records[item.position] = outcome.record
            if len(configs) > 1 or outcome.node:
                echo(f"{item.label}: {_outcome(outcome.record)}{f' on node {outcome.node}' if outcome.node else ''}")
            if len(configs) > 1:
                echo(f"running summary: {running_summary(list(records.values()))}")
    return [records[position] for position in sorted(records)]


def _executor(
    sweep: Sweep,
    pending: list[Pending],
    jobs: int,
    cluster: Optional["ClusterSettings"],
    gpus_per_run: Optional[float] = None,
) -> Executor:
    if not pending:
        return Sequential(sweep)
    return executor_for(
        sweep, len(pending), pending[0].config.backend, jobs, cluster, gpus_per_run, [item.config for item in pending]
    )


def executor_for(
    sweep: Sweep,
    count: int,
    backend_name: str,
    jobs: int,
    cluster: Optional["ClusterSettings"],
    gpus_per_run: Optional[float] = None,
    configs: Optional[list["Config"]] = None,
) -> Executor:
    """Where `count` runs (of `configs`, when known up front) train: on the cluster, in `jobs`
    processes (each capped at `gpus_per_run` of the GPU), or here one after another."""
    if cluster is not None:
        from rnnbench.cluster import RayCluster

        return RayCluster(sweep, cluster, count, backend_name, configs)
    if jobs > 1 and count > 1:
        return Processes(sweep, jobs, count, backend_name, gpus_per_run)
    return Sequential(sweep)


def attached(cluster: Optional["ClusterSettings"]) -> contextlib.AbstractContextManager:
    """The block attached to `cluster` (nothing without one): `run` attaches before it reads data
    or imports Keras, so that a cluster it can't use is said at once, and `tune` once for its
    trials and final runs alike."""
    if cluster is None:
        return contextlib.nullcontext()
    from rnnbench import cluster as ray_cluster

    ray_cluster.require_ray()
    return ray_cluster.attached(cluster.address)


def check_data(configs: list["Config"], data_dir: Optional[str], echo: Callable[[str], None]) -> None:
    """Read each distinct data source of `configs` once (raising its DataError), before any trains."""
    from rnnbench import data

    sources = {}
    for config in configs:
        # The settings that decide what `data.load_dataset` reads and whether it can.
        read = config.data.model_dump(mode="json", include={"dataset", "files", "test_fraction", "hold_out", "limit"})
        sources.setdefault(json.dumps(read, sort_keys=True), config.data)
    echo(
        f"checking the data of {len(configs)} runs before any trains: {len(sources)} source{'s' if len(sources) > 1 else ''}"
    )
    for settings in sources.values():
        data.load_dataset(settings, data_dir)


def _outcome(record: RunRecord) -> str:
    result = record.result or RunResult()
    if record.status != "completed":
        return f"{record.status} after {result.epochs_run or 0} epochs"
    return (
        f"best val_accuracy {result.best_val_accuracy:.4f} at epoch {result.best_epoch}, "
        f"test accuracy {result.test_accuracy:.4f}, {result.mean_epoch_seconds:.1f} s/epoch"
    )


def running_summary(records: list[RunRecord]) -> str:
    from rnnbench.verdict import group_runs

    parts = []
    for group in group_runs(records):
        spread = f" ± {group.std:.4f}" if group.n > 1 else ""
        parts.append(f"{group.name} {group.mean:.4f}{spread} (n={group.n})")
    return "; ".join(parts) or "no completed runs yet"
