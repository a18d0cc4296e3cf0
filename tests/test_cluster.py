"""`rnnbench run --cluster`: runs trained as Ray tasks are recorded once, by the driver alone, with
the histories they would have had here.

One private Ray (2 CPUs, no dashboard) serves the module, and a head started with `ray start`
serves the tests of a real cluster address; each prints how long it took to start (`-s`). The
tests skip, saying why, where Ray (the ray extra) is not installed; CI installs it.
"""

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner

ray = pytest.importorskip("ray", reason="the ray extra is not installed: pip install 'rnnbench[ray]'")

from rnnbench import executor, results, worker  # noqa: E402
from rnnbench.cli import main  # noqa: E402
from rnnbench.cluster import ClusterSettings  # noqa: E402
from rnnbench.observers import RunObserver  # noqa: E402
from rnnbench.sweep import expand  # noqa: E402
from conftest import untimed_history  # noqa: E402

SWEEP = (
    "name: {name}\nmodel: {{cell: gru, embedding_dim: 8, units: 8, dense_units: 8}}\n"
    "data: {{num_words: 40, maxlen: 16}}\ntrain: {{epochs: 2, seeds: {seeds}}}\n"
)
RAY = Path(sys.executable).with_name("ray")
# The commands run against the head start in seconds less on JAX than on TensorFlow, in the driver
# and in each worker; the in-process tests keep this process's TensorFlow.
COMMAND_BACKEND = "jax" if importlib.util.find_spec("jax") else "tensorflow"


def sweep_file(folder: Path, name: str, seeds: list[int]) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(SWEEP.format(name=name, seeds=seeds))
    return path


def histories(runs: Path) -> dict[str, list[dict]]:
    """Each completed run's epochs by its config's fingerprint, without their times."""
    found = {}
    for record in results.read_records(runs):
        found[record.fingerprint] = untimed_history(runs / record.run_id)
    return found


# Ray starts its workers at nice 15, below everything else on the machine: on a busy one they get
# a few percent of a core, and a test's two epochs take most of an hour. At nice 0 they share the
# machine like the test itself; nothing else about them changes.
WORKERS_NOT_NICED = ("RAY_worker_niceness", "0")
# How long a test waits for something that only a hang would keep from happening: training on
# a busy machine is slow, never this slow, and a test that waits longer still gives its answer.
HANG_SECONDS = 1200


def wait_for(condition, what: str) -> None:
    """Return once `condition()` holds; fail, naming `what`, only after HANG_SECONDS."""
    started = time.perf_counter()
    while not condition():
        assert time.perf_counter() - started < HANG_SECONDS, f"no {what} after {HANG_SECONDS} s"
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    """A private Ray for this module's in-process tests; its workers write their caches in a temporary folder."""
    home = tmp_path_factory.mktemp("ray_workers")
    with pytest.MonkeyPatch.context() as environment:
        # Ray's workers inherit this process's environment as it is now, before any test's own.
        environment.setenv("RNNBENCH_CACHE_DIR", str(home / "cache"))
        environment.setenv("KERAS_HOME", str(home / "keras_home"))
        environment.delenv("MLFLOW_TRACKING_URI", raising=False)
        # Without a mode, a new local Ray writes a token into ~/.ray, which would turn
        # authentication on for every `ray start --head` of this user afterwards.
        environment.setenv("RAY_AUTH_MODE", "disabled")
        environment.setenv(*WORKERS_NOT_NICED)
        started = time.perf_counter()
        # Ray's workers inherit SIGINT ignored, as they do from a driver started in the background
        # (nohup, a CI runner, `make test &`): a task cancelled on Ctrl-C must stop all the same.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            ray.init(
                address="local",
                num_cpus=2,
                include_dashboard=False,
                object_store_memory=80 * 1024 * 1024,
                log_to_driver=False,
            )
        finally:
            signal.signal(signal.SIGINT, previous)
        print(f"\nlocal Ray started in {time.perf_counter() - started:.1f} s")
        yield
        ray.shutdown()


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    """A head on loopback, as `ray start --head` starts one on a cluster's first machine; yields its address.

    It is stopped by ending its `ray start --block` process (which stops what it started), not
    with `ray stop`, which would stop every Ray on this machine, this module's own included.
    """
    port = free_port()
    log = tmp_path_factory.mktemp("ray_head") / "head.log"
    # A fixed mode, so that a token in ~/.ray (which turns authentication on) changes nothing here.
    environment = {
        **os.environ,
        "RAY_AUTH_MODE": "disabled",
        "RNNBENCH_CACHE_DIR": str(log.parent / "cache"),
        "KERAS_HOME": str(log.parent / "keras"),
        WORKERS_NOT_NICED[0]: WORKERS_NOT_NICED[1],
    }
    started = time.perf_counter()
    with open(log, "w") as output:
        head = subprocess.Popen(
            [
                str(RAY),
                "start",
                "--head",
                "--node-ip-address",
                "127.0.0.1",
                "--port",
                str(port),
                "--num-cpus",
                "2",
                "--include-dashboard=false",
                "--disable-usage-stats",
                "--block",
            ],
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert head.poll() is None and time.perf_counter() - started < HANG_SECONDS, log.read_text()[-3000:]
            time.sleep(0.2)
        print(f"\nray start --head answered in {time.perf_counter() - started:.1f} s")
        yield f"127.0.0.1:{port}"
    finally:
        head.terminate()
        head.wait(timeout=HANG_SECONDS)


@pytest.mark.slow
def test_a_sweep_on_ray_is_recorded_once_by_the_driver_with_the_histories_of_training_here(
    local_ray, tiny_data_dir, tmp_path, monkeypatch
):
    configs = expand(sweep_file(tmp_path, "ray", [1, 2, 3, 4]))
    indexed = []
    index_run = results.index_run
    monkeypatch.setattr(
        results,
        "index_run",
        lambda runs_dir, run_id, name, status, record: (
            indexed.append((run_id, status)) or index_run(runs_dir, run_id, name, status, record)
        ),
    )
    lines = []
    started = time.perf_counter()
    records = executor.run_all(
        configs, str(tiny_data_dir), tmp_path / "on_ray", "test", echo=lines.append, cluster=ClusterSettings("local")
    )
    print(f"\n4 runs on Ray in {time.perf_counter() - started:.1f} s")

    assert [record.status for record in records] == ["completed"] * 4
    assert "training 4 runs on a private Ray on this machine: 1 node, 2 CPUs; 1 CPU per run, up to 2 at a time" in lines
    finished = [line for line in lines if " on node " in line]
    assert sorted(line.split(":")[0] for line in finished) == [f"[{seed}/4] ray, seed {seed}" for seed in (1, 2, 3, 4)]
    # Every write to the index came from this process, the driver: running when handed out, then the record.
    runs = results.read_records(tmp_path / "on_ray", statuses=None)
    assert sorted(indexed) == sorted(
        [(record.run_id, "running") for record in runs] + [(record.run_id, "completed") for record in runs]
    )
    assert len(runs) == 4 and {record.status for record in runs} == {"completed"}
    folders = sorted(path.name for path in (tmp_path / "on_ray").iterdir())
    assert folders == sorted([record.run_id for record in runs] + ["index.sqlite"])
    assert all((tmp_path / "on_ray" / record.run_id / "model.keras").is_file() for record in runs)

    executor.run_all(configs, str(tiny_data_dir), tmp_path / "here", "test", echo=lambda line: None)
    assert sorted(histories(tmp_path / "on_ray")) == sorted(config.fingerprint() for config in configs)
    assert histories(tmp_path / "on_ray") == histories(tmp_path / "here")


class HoldAfterEpoch:
    """A run's watch, as tune's trials have one: its observer, where the run trains, holds the
    run once epoch `epoch` is checkpointed, saying so in `folder`, until Ctrl-C's cancellation of
    the task reaches it, which it says there too. So the run is surely in progress, with a
    checkpoint of exactly that epoch, when Ctrl-C comes, however fast or slow its epochs are."""

    def __init__(self, epoch: int, folder: Path):
        self.epoch, self.folder = epoch, folder

    def observer(self) -> "HeldRun":
        return HeldRun(self.epoch, self.folder)


class HeldRun(RunObserver):
    def __init__(self, epoch: int, folder: Path):
        self.epoch, self.folder = epoch, folder

    def epoch_ended(self, entry: dict, history: list) -> None:
        if entry["epoch"] != self.epoch:
            return
        (self.folder / "holding").touch()
        held = time.perf_counter()
        try:
            # Short sleeps: Ray's cancellation raises KeyboardInterrupt in a running task by
            # _thread.interrupt_main, which is seen between Python steps, not inside one sleep.
            while time.perf_counter() - held < HANG_SECONDS:
                time.sleep(0.05)
        except KeyboardInterrupt:
            (self.folder / "cancelled").touch()
            raise


@pytest.mark.slow
def test_ctrl_c_of_a_cluster_sweep_then_the_same_command_loses_nothing_and_trains_nothing_twice(
    local_ray, tiny_data_dir, tmp_path, monkeypatch
):
    short = expand(sweep_file(tmp_path, "stop", [1]), ["train.epochs=1"])
    long = expand(sweep_file(tmp_path, "stop", [1, 2]), ["train.epochs=6"])
    configs, runs = short + long, tmp_path / "runs"
    # The first long run is held after epoch 2; the watch travels to the worker with its task.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    hold = HoldAfterEpoch(2, tmp_path)
    pending = executor.Pending
    monkeypatch.setattr(
        executor,
        "Pending",
        lambda position, label, config: pending(
            position, label, config, watch=hold if config.fingerprint() == long[0].fingerprint() else None
        ),
    )

    def interrupt_once_the_long_run_is_held(line: str) -> None:
        # Ctrl-C reaches the driver while it waits for its tasks; here it comes as the short run
        # is reported, once the long run beside it is held with a checkpoint of two epochs.
        if " on node " in line:
            wait_for((tmp_path / "holding").exists, "hold of the long run after epoch 2")
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        executor.run_all(
            configs,
            str(tiny_data_dir),
            runs,
            "test",
            echo=interrupt_once_the_long_run_is_held,
            cluster=ClusterSettings("local"),
        )
    monkeypatch.setattr(executor, "Pending", pending)
    wait_for((tmp_path / "cancelled").exists, "cancellation reaching the held run")
    statuses = sorted(record.status for record in results.read_records(runs, statuses=None))
    assert statuses == ["completed", "interrupted"]  # The third run was never handed out.
    [stopped] = results.read_records(runs, statuses=("interrupted",))
    assert results.RunDirectory(runs / stopped.run_id).has_checkpoint()

    lines = []
    records = executor.run_all(
        configs, str(tiny_data_dir), runs, "test", echo=lines.append, cluster=ClusterSettings("local")
    )
    assert (
        sum("reused, not retrained" in line for line in lines) == 1 and sum(" on node " in line for line in lines) == 2
    )
    assert [record.status for record in results.read_records(runs, statuses=None)] == ["completed"] * 3
    assert len([folder for folder in runs.iterdir() if folder.is_dir()]) == 3
    [resumed] = [record for record in records if record.resumed]
    assert Path(resumed.run_dir).name == stopped.run_id and resumed.resumed[0]["after_epoch"] == 2
    # Its history is the one an uninterrupted run has: every epoch once, with the same numbers.
    executor.run_all([long[0]], str(tiny_data_dir), tmp_path / "uninterrupted", "test", echo=lambda line: None)
    assert histories(runs)[long[0].fingerprint()] == histories(tmp_path / "uninterrupted")[long[0].fingerprint()]


@pytest.mark.slow
@pytest.mark.parametrize("sees_runs_folder", [True, False])
def test_a_cluster_worker_writes_no_index_and_sends_back_what_its_driver_cant_read(
    tiny_data_dir, tmp_path, monkeypatch, sees_runs_folder
):
    def refuse(*arguments):
        raise AssertionError("a cluster worker wrote the index")

    monkeypatch.setattr(results, "index_run", refuse)
    runs = tmp_path / "runs"
    runs.mkdir()
    if sees_runs_folder:
        (runs / ".cluster-test").write_text("")
    [config] = expand(sweep_file(tmp_path, "worker", [1]))
    request = worker.RunRequest(
        "[1/1] worker, seed 1",
        config.to_dict(),
        str(tiny_data_dir),
        str(runs),
        "test",
        "20261128-100000-worker-ab12cd",
        runs_marker=".cluster-test",
    )
    outcome = worker.train_request(request, lambda line: None)

    assert outcome.record.status == "completed"
    assert not (runs / results.INDEX_FILE).exists()
    scratch = worker.scratch_folder(".cluster-test")
    assert not scratch.exists()
    if sees_runs_folder:
        assert outcome.files is None
        assert sorted(path.name for path in (runs / "20261128-100000-worker-ab12cd").iterdir()) == [
            "config.json",
            "history.jsonl",
            "model.keras",
            "result.json",
            "tensorboard",
            "test_predictions.npz",
            "vocabulary.json",
        ]
    else:
        assert sorted(name for name in outcome.files if "/" not in name) == [
            "config.json",
            "history.jsonl",
            "model.keras",
            "result.json",
            "test_predictions.npz",
            "vocabulary.json",
        ]
        assert any(name.startswith("tensorboard/") for name in outcome.files)
        assert sorted(path.name for path in runs.iterdir()) == []
        assert len(outcome.files["history.jsonl"].decode().splitlines()) == 2


def run_command(
    arguments: list[str], environment: dict[str, str], prefix: tuple[str, ...] = ()
) -> subprocess.CompletedProcess:
    completed = subprocess.run(
        [*prefix, sys.executable, "-m", "rnnbench", "run", *arguments],
        env=environment,
        capture_output=True,
        text=True,
        timeout=HANG_SECONDS,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return completed


@pytest.mark.slow
def test_rnnbench_run_on_a_head_started_with_ray_start(ray_head, tiny_data_dir, tmp_path):
    runs = tmp_path / "runs"
    environment = {
        **os.environ,
        "RAY_AUTH_MODE": "disabled",
        "RNNBENCH_DATA_DIR": str(tiny_data_dir),
        "KERAS_BACKEND": COMMAND_BACKEND,
    }
    started = time.perf_counter()
    output = run_command(
        [str(sweep_file(tmp_path, "head", [1])), "--runs-dir", str(runs), "--cluster", ray_head], environment
    ).stdout
    print(
        f"\na run through a ray start head, the command's Python start included, in {time.perf_counter() - started:.1f} s"
    )
    assert (
        "training 1 run on the Ray cluster at " in output
        and ": 1 node, 2 CPUs; 1 CPU per run, up to 2 at a time" in output
    )
    [finished] = [line for line in output.splitlines() if " on node " in line]
    assert finished.startswith("[1/1] head, seed 1: best val_accuracy ")
    [record] = results.read_records(runs, statuses=None)
    assert record.status == "completed" and (runs / record.run_id / "model.keras").is_file()
    assert sorted(path.name for path in runs.iterdir()) == sorted([record.run_id, "index.sqlite"])


@pytest.mark.slow
def test_runs_a_cluster_cant_see_come_back_to_the_driver(ray_head, tiny_data_dir, tmp_path):
    """The driver alone sees its runs folder and its data folder (a tmpfs in a mount namespace of
    its own, as a laptop's disk is to a cluster): the data reaches the workers through Ray's object
    store, each run trains in a worker's scratch folder and its files come back."""
    if (
        shutil.which("unshare") is None
        or subprocess.run(["unshare", "--mount", "true"], capture_output=True).returncode != 0
    ):
        pytest.skip(
            "needs a private mount namespace (unshare --mount, as root) to hide the runs folder from the cluster"
        )
    private = tmp_path / "private"
    private.mkdir()
    runs = private / "runs"
    environment = {
        **os.environ,
        "RAY_AUTH_MODE": "disabled",
        "RNNBENCH_DATA_DIR": str(private / "data"),
        "KERAS_BACKEND": COMMAND_BACKEND,
    }
    command = [str(sweep_file(tmp_path, "far", [1, 2])), "--runs-dir", str(runs), "--cluster", ray_head]
    script = (
        f"mount -t tmpfs tmpfs {private} && cp -r {tiny_data_dir} {private / 'data'} && "
        f"{sys.executable} -m rnnbench run {' '.join(command)} && "
        f"{sys.executable} -c 'import json, pathlib, sys; from rnnbench import results; print(json.dumps([record.to_json() for record in results.read_records(pathlib.Path(sys.argv[1]))]))' {runs} && "
        f"cd {runs} && find . -type f | sort"
    )
    completed = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        env=environment,
        capture_output=True,
        text=True,
        timeout=HANG_SECONDS,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert not list(private.iterdir()), "the runs folder is visible outside the driver's namespace"
    lines = completed.stdout.splitlines()
    records = [
        results.RunRecord.from_json(item) for item in json.loads(next(line for line in lines if line.startswith("[{")))
    ]
    assert [record.status for record in records] == ["completed", "completed"]
    # Each seed cuts its own validation split, so each run's data is prepared once, by the driver.
    assert sum(line.startswith("preparing the data of far here, once") for line in lines) == 2
    files = [line for line in lines if line.startswith("./")]
    for record in records:
        assert record.run_dir == str(runs / record.run_id)
        assert {
            f"./{record.run_id}/{name}"
            for name in ("config.json", "history.jsonl", "model.keras", "result.json", "vocabulary.json")
        } <= set(files)
    assert not any(name.endswith(results.CHECKPOINT_FILE) or "/.cluster-" in name for name in files)


def ray_never_asked(*arguments, **options):
    raise AssertionError("ray.init was called: Ray would have retried for minutes")


def test_a_cluster_that_cant_be_reached_is_one_line_and_exit_1(tmp_path, monkeypatch):
    address = f"127.0.0.1:{free_port()}"  # Nothing listens there.
    # Refused by rnnbench's own look at the address, within seconds, before Ray is asked.
    monkeypatch.setattr(ray, "init", ray_never_asked)
    outcome = CliRunner().invoke(
        main,
        [
            "run",
            str(sweep_file(tmp_path, "unreached", [1])),
            "--runs-dir",
            str(tmp_path / "runs"),
            "--cluster",
            address,
        ],
    )
    assert outcome.exit_code == 1
    assert outcome.stderr == f"Error: cannot reach the Ray cluster at {address}: Connection refused\n"
    assert not (tmp_path / "runs").exists()


@contextlib.contextmanager
def listening(answer: "bytes | None" = None):
    """A port on loopback that accepts connections and sends each `answer`, or nothing at all; yields its address."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted = []

    def serve() -> None:
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return  # Closed: the test is over.
            accepted.append(connection)
            connection.sendall(answer)

    if answer is not None:
        threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.getsockname()[1]}"
    finally:
        server.close()
        for connection in accepted:
            connection.close()


@pytest.mark.slow
def test_a_port_that_accepts_but_never_answers_is_one_line_and_exit_1(tmp_path, monkeypatch):
    # A stuck process or a firewall that accepts for another host: Ray's C++ client would print a
    # warning every few seconds for minutes; asked as a gRPC client asks, it is one line.
    monkeypatch.setattr(ray, "init", ray_never_asked)
    with listening() as address:
        outcome = CliRunner().invoke(
            main,
            [
                "run",
                str(sweep_file(tmp_path, "silent", [1])),
                "--runs-dir",
                str(tmp_path / "runs"),
                "--cluster",
                address,
            ],
        )
    assert (outcome.exit_code, outcome.stdout) == (1, "")
    assert outcome.stderr == (
        f"Error: cannot reach the Ray cluster at {address}: nothing answered there within 5 s (the connection was accepted, but no reply came)\n"
    )
    assert not (tmp_path / "runs").exists()


def test_a_port_that_is_not_rays_is_one_line_and_exit_1(tmp_path, monkeypatch):
    monkeypatch.setattr(ray, "init", ray_never_asked)
    with listening(b"SSH-2.0-OpenSSH_9.6\r\n") as address:
        outcome = CliRunner().invoke(
            main,
            ["run", str(sweep_file(tmp_path, "ssh", [1])), "--runs-dir", str(tmp_path / "runs"), "--cluster", address],
        )
    assert (outcome.exit_code, outcome.stderr) == (
        1,
        (
            f"Error: cannot reach the Ray cluster at {address}: what answers there is not a Ray cluster (it does not speak gRPC);"
            " is that a Ray head's port (6379 unless `ray start --port` said otherwise)?\n"
        ),
    )


def test_rays_own_warnings_while_it_fails_to_attach_are_held_back_for_one_line(tmp_path, monkeypatch, capfd):
    """Something that answers as gRPC does but is no usable cluster: Ray's C++ client writes its
    retries straight to file descriptor 2 before ray.init gives up; only rnnbench's line shows."""

    def failing_init(**options):
        os.write(
            2,
            b"[2026-12-03 23:59:55,640 W 16308 16308] rpc_client.h:153: Failed to connect to GCS at address 192.0.2.2:1 within 5 seconds.\n",
        )
        raise ConnectionError("Failed to connect to Ray cluster at 192.0.2.2:1")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # As in a command of its own, not this module's Ray.
    monkeypatch.setattr(ray, "init", failing_init)
    with listening(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00") as address:  # HTTP/2's empty SETTINGS frame.
        outcome = CliRunner().invoke(
            main,
            ["run", str(sweep_file(tmp_path, "held", [1])), "--runs-dir", str(tmp_path / "runs"), "--cluster", address],
        )
    assert (outcome.exit_code, outcome.stderr) == (
        1,
        f"Error: cannot attach to the Ray cluster at {address}: Failed to connect to Ray cluster at 192.0.2.2:1\n",
    )
    assert capfd.readouterr().err == ""


@pytest.mark.slow
def test_a_run_no_node_has_room_for_is_refused_in_one_line(local_ray, tiny_data_dir, tmp_path):
    outcome = CliRunner().invoke(
        main,
        [
            "run",
            str(sweep_file(tmp_path, "roomless", [1])),
            "--data-dir",
            str(tiny_data_dir),
            "--runs-dir",
            str(tmp_path / "runs"),
            "--cluster",
            "local",
            "--gpus-per-run",
            "0.25",
        ],
    )
    assert (outcome.exit_code, outcome.stderr) == (
        2,
        "Error: --gpus-per-run 0.25: no node of the Ray cluster has that many GPUs (the largest has 0)\n",
    )
    assert sorted(path.name for path in (tmp_path / "runs").iterdir()) == ["index.sqlite"]


@pytest.mark.parametrize(
    "arguments, message",
    [
        (
            ["--cluster", "head-node"],
            "Error: --cluster 'head-node' is not one of auto, local, HOST:PORT or ray://HOST:PORT",
        ),
        (["--cpus-per-run", "2"], "Error: --cpus-per-run needs --cluster"),
        (
            ["--cluster", "local", "--jobs", "2"],
            "Error: --jobs and --cluster don't go together: a cluster trains as many runs at once as it has room"
            " for (--cpus-per-run, --gpus-per-run)",
        ),
    ],
)
def test_cluster_options_misused_are_one_line_and_exit_2(tmp_path, arguments, message):
    outcome = CliRunner().invoke(
        main, ["run", str(sweep_file(tmp_path, "misused", [1])), "--runs-dir", str(tmp_path / "runs"), *arguments]
    )
    assert (outcome.exit_code, outcome.stderr) == (2, message + "\n")


@pytest.mark.slow
def test_ctrl_c_of_a_cluster_sweep_says_what_was_recorded(local_ray, monkeypatch, tmp_path):
    import rnnbench

    def interrupted(*arguments, **options):
        raise KeyboardInterrupt

    runner = type(sys)("rnnbench.executor")
    runner.run_all, runner.attached = interrupted, executor.attached
    monkeypatch.setattr(rnnbench, "executor", runner, raising=False)
    monkeypatch.setitem(sys.modules, "rnnbench.executor", runner)
    outcome = CliRunner().invoke(
        main,
        [
            "run",
            str(sweep_file(tmp_path, "stopped", [1, 2])),
            "--runs-dir",
            str(tmp_path / "runs"),
            "--cluster",
            "local",
        ],
    )
    assert (outcome.exit_code, outcome.stdout) == (130, "")
    assert outcome.stderr == (
        "\ninterrupted; the cluster's tasks are cancelled and each run in progress is recorded as interrupted; run the same command"
        " again to continue: they resume from their last finished epoch where the runs folder is shared, and finished runs are reused\n"
    )


class PruneSecondTrial(optuna.pruners.BasePruner):
    """Prunes trial 1 of every study at its first report, and nothing else, in whatever process asks."""

    def prune(self, study, trial) -> bool:
        return trial.number == 1


TUNE = {
    "name": "tiny",
    "data": {"num_words": 40, "maxlen": 16},
    "model": {"embedding_dim": 8, "units": 8, "dense_units": 8},
    "train": {"epochs": 2},
    "sweep": {"variants": {"gru": {"model.cell": "gru"}, "ann": {"model.cell": "ann"}}},
    # Every trial sampled at random, seeded by its number: trial n's settings are the same however many train at once.
    "tune": {
        "trials": 3,
        "sampler": "random",
        "space": {"train.learning_rate": {"float": [1.0e-3, 2.0e-2], "log": True}},
        "seeds": 2,
    },
}


@pytest.mark.slow
def test_tune_on_a_cluster_trains_each_trial_as_a_task_and_ends_as_tuning_here(
    local_ray, tiny_data_dir, tmp_path, monkeypatch
):
    """Trials train two at a time as Ray tasks, report their epochs to the study from the worker
    and are pruned there; the studies, runs and histories equal a tuning trained here, trial by trial."""
    from rnnbench import tune

    monkeypatch.setattr(tune, "_pruner", lambda settings: PruneSecondTrial())
    # The pruner travels to the workers with each trial; they can't import this test module.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    path = tmp_path / "tiny.yaml"
    path.write_text(json.dumps(TUNE))
    tuned = {}
    for where, options in (("here", []), ("on_ray", ["--cluster", "local"])):
        runs = tmp_path / where
        started = time.perf_counter()
        outcome = CliRunner().invoke(
            main,
            [
                "tune",
                str(path),
                "--data-dir",
                str(tiny_data_dir),
                "--runs-dir",
                str(runs),
                "--out",
                str(tmp_path / f"report_{where}"),
                *options,
            ],
        )
        print(f"\ntuning {where}: {time.perf_counter() - started:.1f} s")
        assert outcome.exit_code == 0, outcome.output
        studies = {
            name: [
                (trial.number, trial.state.name, trial.params, trial.value, trial.intermediate_values)
                for trial in optuna.load_study(study_name=name, storage=tune.default_storage(runs)).get_trials()
            ]
            for name in ("tiny-gru", "tiny-ann")
        }
        records = sorted(
            (record.name, record.status, record.config["train"]["seed"])
            for record in results.read_records(runs, statuses=None)
        )
        tuned[where] = (studies, records, histories(runs), outcome.output)

    studies, records, trained, output = tuned["on_ray"]
    assert "training 6 runs on a private Ray on this machine" in output and "1 CPU per run, up to 2 at a time" in output
    assert "[tiny-gru] trial 2: pruned after epoch 1: val_accuracy" in output and " (on node " in output
    # The pruned trial's unused epoch funds a fourth trial, which trains that one epoch: 6 epochs per cell.
    assert [state for _, state, *_ in studies["tiny-gru"]] == ["COMPLETE", "PRUNED", "COMPLETE", "COMPLETE"]
    # Reported from the worker, epoch by epoch.
    assert [list(values) for *_, values in studies["tiny-gru"]] == [[1, 2], [1], [1, 2], [1]]
    assert sorted(records) == sorted(
        [
            (f"tiny-{cell}-t00{number}", "pruned" if number == 1 else "completed", 0)
            for cell in ("gru", "ann")
            for number in range(4)
        ]
        + [(f"tiny-{cell}-tuned", "completed", seed) for cell in ("gru", "ann") for seed in (1, 2)]
    )
    assert tuned["on_ray"][:3] == tuned["here"][:3]
