"""A Ray cluster as an executor (`rnnbench run --cluster ADDRESS`): every run is a Ray task.

    --cluster auto             the cluster RAY_ADDRESS names, else the one `ray start` started on this machine
    --cluster local            a private Ray on this machine (no dashboard), stopped at the end
    --cluster HOST:PORT        a cluster's head (its GCS port, 6379 unless `ray start --port` said otherwise)
    --cluster ray://HOST:PORT  Ray Client (port 10001), for a driver outside the cluster's network

Each task runs `worker.train_request`, the function `--jobs` processes run too, after choosing the
backend and its GPU share (`--gpus-per-run`) and before Keras is imported. The runs folder's
index is written here, by the driver only: a run is indexed as running when its task is handed
out, then with the record the task returns, or as interrupted (Ctrl-C) or failed when none comes
back. A task whose node sees the runs folder at the same path (one machine, or shared storage)
writes the run's folder there, per-epoch checkpoints included; one whose node does not trains in
a scratch folder and returns the run's files, which are written here. A task whose worker
process or node dies is tried again (`RETRIES`), going on from its checkpoint where it can read
it. Ctrl-C cancels the tasks; running the same command again continues, as it does locally.

Ray is an optional extra (`pip install 'rnnbench[ray]'`), imported only by a command given
--cluster; nothing else in rnnbench imports this module.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import logging
import os
import secrets
import socket
from pathlib import Path
from typing import Any, Iterator, Optional

from rnnbench import results, worker
from rnnbench.errors import InputError, RnnbenchError
from rnnbench.record import RunRecord

ADDRESS_FORMS = "auto, local, HOST:PORT or ray://HOST:PORT"
INSTALL_HINT = "pip install 'rnnbench[ray]'"
# How long to wait for a cluster's address to answer: Ray itself would retry for minutes.
REACH_SECONDS = 5.0
# Ray retries attaching to a cluster that answers but can't be used for minutes, its C++ client's
# warnings held back meanwhile; after this long a line says that it is still trying.
ATTACH_NOTE_SECONDS = 30.0
# A run whose worker process or node dies is tried this many more times, from its checkpoint
# when the runs folder is shared (or the retry lands on the same machine).
RETRIES = 2
# After Ctrl-C, how long the cancelled tasks get to record their last epoch and stop.
STOP_SECONDS = 30.0
# Variables a run reads from its environment that the driver's command set: MLflow logging,
# and why the backend was chosen (backend.CHOICE_VARIABLE), for each run's record.
FORWARDED_VARIABLES = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_EXPERIMENT_NAME",
    "RNNBENCH_MLFLOW_PARENT_RUN_ID",
    "RNNBENCH_BACKEND_CHOICE",
)


class ClusterError(RnnbenchError):
    """A Ray cluster that can't be reached or used, in one line naming its address."""


@dataclasses.dataclass(frozen=True)
class ClusterSettings:
    """Where runs train (`--cluster`) and what each run takes of a node."""

    address: str
    cpus_per_run: float = 1.0
    # A fraction packs several runs on one GPU; 0 trains on CPUs.
    gpus_per_run: float = 0.0
    # The driver's folder when the command started, which relative paths are read from. Taken
    # before attaching: in a `ray job submit` with --working-dir, Ray may unpack the job's folder
    # again while the driver attaches, which leaves the process in a folder that no longer exists.
    working_directory: str = dataclasses.field(default_factory=os.getcwd)


@dataclasses.dataclass(frozen=True)
class WorkerSettings:
    """What a task sets up in its worker process before training."""

    backend_name: str
    gpu_share: Optional[float]
    environment: dict[str, str]
    # The driver's folder, where relative data paths are found when the node has it too.
    working_directory: str


def check_address(value: str) -> str:
    """`value` if it is one of ADDRESS_FORMS, else an InputError saying which forms are."""
    if value in ("auto", "local"):
        return value
    _, port = _host_and_port(value)
    if port is None:
        raise InputError(f"--cluster {value!r} is not one of {ADDRESS_FORMS}")
    return value


def _host_and_port(address: str) -> tuple[str, Optional[int]]:
    rest = address.split("://", 1)[1] if "://" in address else address
    host, _, port = rest.rstrip("/").rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        return host, None
    return host.strip("[]"), int(port)


def require_ray() -> None:
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        raise InputError(f"--cluster needs Ray, an optional extra: {INSTALL_HINT}")


def reach(address: str) -> None:
    """Raise ClusterError, within seconds, when nothing answers at the cluster's address (for
    `auto`, the one RAY_ADDRESS names, if set; else Ray looks for a cluster on this machine)."""
    target = (os.environ.get("RAY_ADDRESS") or None) if address == "auto" else address
    if target is None or target in ("auto", "local"):
        return
    host, port = _host_and_port(target)
    shown = address if target == address else f"{target} (RAY_ADDRESS)"
    if target.startswith(("http://", "https://")):
        raise ClusterError(
            f"cannot attach to the Ray cluster at {shown}: that is a dashboard's address, for `ray job` commands;"
            " give the cluster's own (HOST:6379, or ray://HOST:10001)"
        )
    if port is None:
        raise ClusterError(f"cannot reach the Ray cluster at {shown}: not one of {ADDRESS_FORMS}")
    try:
        connection = socket.create_connection((host, port), timeout=REACH_SECONDS)
    except OSError as error:
        raise ClusterError(f"cannot reach the Ray cluster at {shown}: {error.strerror or error}") from None
    with connection:
        problem = _not_grpc(connection)
    if problem:
        raise ClusterError(f"cannot reach the Ray cluster at {shown}: {problem}")


# What a gRPC client sends first (HTTP/2's connection preface and an empty SETTINGS frame); a
# Ray head's GCS port and a Ray Client server both answer with a SETTINGS frame of their own.
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
_HTTP2_SETTINGS = 0x04


def _not_grpc(connection: socket.socket) -> Optional[str]:
    """Why what accepted `connection` is not a Ray cluster, or None when it answers as one.

    A port that accepts connections but never answers (a stuck process, a firewall that
    accepts for another host) would keep Ray retrying for minutes while its C++ client prints
    warnings; asked here, it is one line within REACH_SECONDS. With RAY_USE_TLS the port speaks
    TLS first, so only the connection is checked.
    """
    if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
        return None
    try:
        connection.settimeout(REACH_SECONDS)
        connection.sendall(_HTTP2_PREFACE)
        header = b""
        while len(header) < 9:
            received = connection.recv(9 - len(header))
            if not received:
                return "the connection was closed without an answer; is that a Ray head's port (6379 unless `ray start --port` said otherwise)?"
            header += received
    except socket.timeout:
        return f"nothing answered there within {REACH_SECONDS:g} s (the connection was accepted, but no reply came)"
    except OSError as error:
        return f"{error.strerror or error}"
    if header[3] != _HTTP2_SETTINGS:
        return "what answers there is not a Ray cluster (it does not speak gRPC); is that a Ray head's port (6379 unless `ray start --port` said otherwise)?"
    return None


@contextlib.contextmanager
def attached(address: str) -> Iterator[None]:
    """This process attached to the cluster at `address` (a private one started for `local`) for
    the block, and detached after it, unless it was attached to Ray before (a notebook, a test):
    then it keeps its cluster, whatever `address` says. `rnnbench run` attaches before reading
    any data or importing Keras, so that a cluster it can't use is said at once."""
    import ray

    if ray.is_initialized():
        yield
        return
    _connect(address)
    try:
        yield
    finally:
        ray.shutdown()


def _connect(address: str) -> None:
    import ray

    if address == "local":
        # Errors only: Ray's warning that its token authentication is on concerns no one else here.
        ray.init(address="local", include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        return
    reach(address)
    where = _where(address)
    with _native_stderr_held(
        f"still attaching to the Ray cluster at {where}: Ray tries again for minutes; Ctrl-C stops"
    ) as held:
        try:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as error:
            # Ray's C++ client has written its retries meanwhile; this line says why instead.
            held.drop()
            raise ClusterError(f"cannot attach to the Ray cluster at {where}: {_reason(error)}") from None


class _HeldOutput:
    """Output held back from standard error: written there when the block ends, unless dropped."""

    def __init__(self) -> None:
        self.dropped = False

    def drop(self) -> None:
        self.dropped = True


@contextlib.contextmanager
def _native_stderr_held(note: str) -> Iterator[_HeldOutput]:
    """File descriptor 2 into a temporary file for the block: Ray's C++ client writes its
    connection warnings there directly, past Python's logging, every few seconds while it
    retries. What was written comes out when the block ends, unless the block dropped it (an
    attach that failed is said in one line instead). `note` goes out at once if the block
    lasts longer than ATTACH_NOTE_SECONDS, so a long wait is not a silent one."""
    import sys
    import tempfile
    import threading

    sys.stderr.flush()
    saved = os.dup(2)
    held = _HeldOutput()
    timer = threading.Timer(ATTACH_NOTE_SECONDS, lambda: os.write(saved, f"{note}\n".encode("utf-8", errors="replace")))
    timer.daemon = True
    with tempfile.TemporaryFile() as file:
        os.dup2(file.fileno(), 2)
        timer.start()
        try:
            yield held
        finally:
            timer.cancel()
            timer.join()
            os.dup2(saved, 2)
            os.close(saved)
            if not held.dropped:
                file.seek(0)
                sys.stderr.write(file.read().decode("utf-8", errors="replace"))
                sys.stderr.flush()


def _where(address: str) -> str:
    named = os.environ.get("RAY_ADDRESS")
    return f"{named} (RAY_ADDRESS)" if address == "auto" and named else address


def _reason(error: BaseException) -> str:
    """Why Ray could not attach, in one line: the cause it chained, when that says more."""
    causes = [error]
    while causes[-1].__cause__ is not None and len(causes) < 5:
        causes.append(causes[-1].__cause__)
    # Ray words the cause into the text of the error it raises instead, as often as it chains it.
    if any(type(cause).__name__ == "AuthenticationError" or "InvalidAuthToken" in str(cause) for cause in causes):
        return (
            "it asks for an authentication token; set RAY_AUTH_MODE=token and give this machine the cluster's token"
            " (RAY_AUTH_TOKEN, or ~/.ray/auth_token), see docs/cluster.md"
        )
    if "Could not find any running Ray instance" in str(error):
        return "no Ray runs on this machine and RAY_ADDRESS is not set; start one (ray start --head) or use --cluster local"
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


class RayCluster:
    """The executor of `--cluster`: runs as Ray tasks, as many at once as the cluster has room for."""

    def __init__(
        self, sweep: Any, settings: ClusterSettings, count: int, backend_name: str, configs: Optional[list[Any]] = None
    ):
        """`configs`, when known up front, are those of the runs to hand out: each run's data is
        then dropped from the object store once the last run that reads it has been handed out."""
        self.sweep, self.settings, self.count = sweep, settings, count
        self.configs = configs
        self.runs_dir = Path(settings.working_directory, sweep.runs_dir)
        self.data_dir = str(Path(settings.working_directory, sweep.data_dir)) if sweep.data_dir else None
        self.worker_settings = WorkerSettings(
            backend_name,
            settings.gpus_per_run or None,
            {name: os.environ[name] for name in FORWARDED_VARIABLES if os.environ.get(name)},
            settings.working_directory,
        )
        self.handed_out: dict[Any, tuple[Any, Path]] = {}
        # The data each distinct EncodedData.key names, prepared here and put in Ray's object store.
        self.shared_data: dict[str, Any] = {}
        self.still_to_read: Optional[collections.Counter[str]] = None
        self.attachment = attached(settings.address)
        self.marker: Optional[str] = None

    def __enter__(self) -> "RayCluster":
        require_ray()
        import ray

        self.attachment.__enter__()
        try:
            nodes = self._check_resources()
            # Workers that see this file see the runs folder as this process does.
            self.marker = f".cluster-{secrets.token_hex(4)}"
            results.write_atomic(
                self.runs_dir / self.marker,
                b"rnnbench: the mark of a sweep's driver on a Ray cluster; removed when it ends\n",
            )
            self.task = ray.remote(_train_on_node).options(
                num_cpus=self.settings.cpus_per_run,
                num_gpus=self.settings.gpus_per_run,
                max_retries=RETRIES,
                retry_exceptions=False,
            )
        except BaseException:
            self.__exit__()
            raise
        total = ray.cluster_resources()
        gpus = f", {_count(total['GPU'], 'GPU')}" if total.get("GPU") else ""
        each = f"{self.settings.cpus_per_run:g} CPU" + (
            f" and {self.settings.gpus_per_run:g} GPU" if self.settings.gpus_per_run else ""
        )
        where = (
            "a private Ray on this machine"
            if self.settings.address == "local"
            else f"the Ray cluster at {ray.get_runtime_context().gcs_address}"
        )
        self.sweep.echo(
            f"training {_count(self.count, 'run')} on {where}: {_count(len(nodes), 'node')}, {_count(total.get('CPU', 0), 'CPU')}{gpus};"
            f" {each} per run, up to {self.room()} at a time"
        )
        return self

    def __exit__(self, *exception: Any) -> None:
        if self.marker is not None:
            (self.runs_dir / self.marker).unlink(missing_ok=True)
            self.marker = None
        self.attachment.__exit__(None, None, None)

    def _check_resources(self) -> list[dict[str, Any]]:
        """The cluster's live nodes; an InputError when no node could ever run a task of this size."""
        import ray

        nodes = [node for node in ray.nodes() if node.get("Alive")]
        for option, amount, resource in (
            ("--cpus-per-run", self.settings.cpus_per_run, "CPU"),
            ("--gpus-per-run", self.settings.gpus_per_run, "GPU"),
        ):
            largest = max((node.get("Resources", {}).get(resource, 0.0) for node in nodes), default=0.0)
            if amount > largest:
                raise InputError(
                    f"{option} {amount:g}: no node of the Ray cluster has that many {resource}s (the largest has {largest:g})"
                )
        return nodes

    def room(self) -> int:
        import ray

        total = ray.cluster_resources()
        fits = total.get("CPU", 0.0) / self.settings.cpus_per_run
        if self.settings.gpus_per_run:
            fits = min(fits, total.get("GPU", 0.0) / self.settings.gpus_per_run)
        # At least one: a task waits in Ray's queue while the cluster has no room (a node away).
        return max(1, int(fits + 1e-9))

    def start(self, item: Any, run: Path, resume: bool) -> Any:
        run = self.runs_dir / run.name
        request = dataclasses.replace(
            self.sweep.request(item, run.name, runs_marker=self.marker),
            runs_dir=str(self.runs_dir),
            data_dir=self.data_dir,
            # Only read by a worker that can't see the runs folder; a resume is rare (after Ctrl-C).
            resume_files=results.RunDirectory(run).files(checkpoint=True) if resume else None,
        )
        self._index(item, run, "running", process=results.this_process())
        # In a list, so that Ray hands the task the reference rather than the data: the data is
        # read only once the task has set its process up (`worker.prepare`, before any import).
        handle = self.task.remote(request, self.worker_settings, [self._shared(item.config)])
        self.handed_out[handle] = (item, run)
        return handle

    def _shared(self, config: Any) -> Any:
        """The object-store reference to `config`'s data, prepared here the first time a run needs
        it: worker nodes then need no data folder and tokenize nothing. A task keeps what it was
        given for its retries, so the driver lets go once no run still to hand out reads it."""
        import ray

        from rnnbench.encoded import EncodedData

        if self.still_to_read is None and self.configs is not None:
            self.still_to_read = collections.Counter(EncodedData.key(each) for each in self.configs)
        key = EncodedData.key(config)
        if key not in self.shared_data:
            self.sweep.echo(f"preparing the data of {config.name} here, once, for every run that reads it")
            self.shared_data[key] = ray.put(EncodedData.prepare(config, self.sweep.data_dir, self.sweep.echo))
        reference = self.shared_data[key]
        if self.still_to_read is not None:
            self.still_to_read[key] -= 1
            if self.still_to_read[key] <= 0:
                del self.shared_data[key]
        return reference

    def finished(self, handles: list[Any]) -> list[Any]:
        import ray

        ready, _ = ray.wait(handles, num_returns=1)
        return ready

    def outcome(self, handle: Any) -> worker.RunOutcome:
        import ray

        item, run = self.handed_out.pop(handle)
        try:
            outcome: worker.RunOutcome = ray.get(handle)
        except ray.exceptions.RayTaskError as error:
            # The run itself raised (a data error, a disk full): recorded as failed, resumable.
            cause = error.cause if isinstance(error.cause, BaseException) else None
            self._index(
                item,
                run,
                "failed",
                error=(str(cause or error).strip().splitlines() or [type(cause or error).__name__])[0],
            )
            if isinstance(cause, RnnbenchError):
                raise cause from None
            raise
        except ray.exceptions.RayError as error:
            self._index(item, run, "failed", error=type(error).__name__)
            raise worker.WorkerError(
                f"the Ray task training {item.label} was lost ({type(error).__name__}: its worker or node died, and"
                f" its {RETRIES} retries with it); finished runs are recorded: run the same command again to continue"
            ) from None
        return dataclasses.replace(outcome, record=self._received(run, outcome), files=None)

    def _received(self, run: Path, outcome: worker.RunOutcome) -> RunRecord:
        """Write the files a worker sent back (if it could not see the runs folder), then index its record."""
        shown = Path(self.sweep.runs_dir) / run.name
        record = outcome.record.changed(run_dir=str(shown))
        if outcome.files is not None:
            folder = results.RunDirectory(run)
            folder.path.mkdir(parents=True, exist_ok=True)
            folder.write_files({name: _pointing_at(name, data, shown) for name, data in outcome.files.items()})
            folder.remove_checkpoint()  # A resumed run's old one, sent out with it; it has finished now.
        results.index_run(self.runs_dir, run.name, record.name, record.status, record.to_json())
        return record

    def stop(self, handles: list[Any]) -> None:
        import ray

        for handle in handles:
            ray.cancel(handle)
        with contextlib.suppress(Exception):
            ray.wait(handles, num_returns=len(handles), timeout=STOP_SECONDS)
        for handle in handles:
            item, run = self.handed_out.pop(handle)
            try:
                # A task that finished just before it was cancelled is recorded as it ended.
                self._received(run, ray.get(handle, timeout=0))
            except Exception:
                self._index(item, run, "interrupted")

    def _index(self, item: Any, run: Path, status: str, **more: Any) -> None:
        """Index a run that no record came back for: handed out (running), interrupted or failed."""
        config = item.config
        record = {
            "name": config.name,
            "config": config.to_dict(),
            "fingerprint": config.fingerprint(),
            "group": config.group_fingerprint(),
            "command": self.sweep.command,
            "run_dir": str(Path(self.sweep.runs_dir) / run.name),
            "status": status,
            **more,
        }
        results.index_run(self.runs_dir, run.name, config.name, status, record)


def _count(amount: float, noun: str) -> str:
    return f"{amount:g} {noun}{'' if amount == 1 else 's'}"


def _pointing_at(name: str, data: bytes, run_dir: Path) -> bytes:
    """A run file as the worker wrote it, with the records in config.json and result.json naming
    the folder the driver keeps the run in, rather than the worker's scratch folder."""
    if name not in (results.CONFIG_FILE, results.RESULT_FILE):
        return data
    record = RunRecord.from_json(json.loads(data)).changed(run_dir=str(run_dir))
    return (json.dumps(record.to_json(), indent=2, sort_keys=False) + "\n").encode("utf-8")


def _train_on_node(request: worker.RunRequest, settings: WorkerSettings, shared_data: list[Any]) -> worker.RunOutcome:
    """A Ray task: set the worker process up before Keras is imported, then train as every executor
    does, on the data the driver prepared (`shared_data`: its object-store reference, in a list)."""
    import ray

    _cancellable()
    worker.prepare(settings.backend_name, settings.gpu_share)
    os.environ.update(settings.environment)
    prepared = ray.get(shared_data[0])
    with _working_directory(settings.working_directory):
        outcome = worker.train_request(request, worker.labelled_echo(request.label), prepared)

    return dataclasses.replace(outcome, node=ray.util.get_node_ip_address())


def _cancellable() -> None:
    """Let Ray's cancellation (Ctrl-C, or another run failing) stop this task. Ray raises
    KeyboardInterrupt in a running task as a SIGINT would, which does nothing where SIGINT is
    ignored; a worker inherits that from a driver started in the background of a shell, under
    nohup or by a CI runner. Its run would train on, beside the driver recording it as
    interrupted and beside the run that resumes it. Tasks run in the worker's main thread."""
    import signal

    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        with contextlib.suppress(ValueError):  # Only a main thread may; Ray interrupts no other.
            signal.signal(signal.SIGINT, signal.default_int_handler)


@contextlib.contextmanager
def _working_directory(path: str) -> Iterator[None]:
    """Run the block in `path` when this node has it (relative data paths then mean what they
    meant to the driver), and in the worker's own folder otherwise."""
    try:
        previous = os.getcwd()
        os.chdir(path)
    except OSError:
        yield
        return
    try:
        yield
    finally:
        os.chdir(previous)
