"""`rnnbench run --cluster` when a node dies: the run's task is tried again on another node, goes on
from its last checkpoint, and is recorded once, with the history of a run nothing interrupted.

The cluster is Ray's own test cluster (`ray.cluster_utils.Cluster`): a head with no CPUs, so that
every run trains on a worker node, and worker nodes that are processes of this machine, so they
see the runs folder as the driver (this process) does. Skipped, saying why, where Ray (the ray
extra) is not installed; CI installs it.
"""

import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="the ray extra is not installed: pip install 'rnnbench[ray]'")
from ray import cluster_utils  # noqa: E402

from rnnbench import executor, results  # noqa: E402
from rnnbench.cluster import ClusterSettings  # noqa: E402
from rnnbench.config import config_from_mapping  # noqa: E402
from conftest import untimed_history  # noqa: E402

# Dropout, so that the checkpoint must carry the random generators' states for the history to
# match; enough epochs that the run is still training well after its first checkpoints.
CONFIG = {
    "name": "node_failure",
    "model": {"cell": "gru", "embedding_dim": 8, "units": 8, "dense_units": 8, "dropout": 0.3},
    "data": {"num_words": 40, "maxlen": 16},
    "train": {"epochs": 8, "batch_size": 8, "seed": 3},
}
# The node dies once this many epochs are in the run's history (its checkpoint holds them all, or
# all but the last when the history was written a moment before it).
EPOCHS_BEFORE_FAILURE = 2
# Ray notices a node that stopped answering after health_check_failure_threshold missed checks,
# health_check_period_ms apart: 5 checks 3 s apart by default, fewer and closer here to keep the test short.
HEALTH_CHECKS = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500, "health_check_failure_threshold": 3}
NODE = {"num_cpus": 1, "object_store_memory": 80 * 1024 * 1024}


def epochs_recorded(runs: Path) -> int:
    return max(
        (
            len((folder / "history.jsonl").read_text().splitlines())
            for folder in runs.glob("*")
            if (folder / "history.jsonl").exists()
        ),
        default=0,
    )


class InBackground(threading.Thread):
    """`function()` in a thread of its own, whose result or error `outcome` returns: the test's own
    thread has to be free to add a node, which Ray does only from a program's main thread."""

    def __init__(self, function):
        super().__init__(daemon=True)
        self.function, self.result, self.error = function, None, None

    def run(self) -> None:
        try:
            self.result = self.function()
        except BaseException as error:
            self.error = error

    def outcome(self, timeout: float):
        self.join(timeout)
        assert not self.is_alive(), f"still running after {timeout:.0f} s"
        if self.error is not None:
            raise self.error
        return self.result


@pytest.fixture
def test_cluster(monkeypatch):
    """A head with no CPUs and this process attached to it as the driver; yields the Cluster."""
    # Without a mode, a new Ray writes a token into ~/.ray, which would turn authentication on for
    # every `ray start --head` of this user afterwards.
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    # Ray starts its workers at nice 15: on a busy machine they would get a few percent of a core.
    monkeypatch.setenv("RAY_worker_niceness", "0")
    started = time.perf_counter()
    head = cluster_utils.Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 0,
            "object_store_memory": 80 * 1024 * 1024,
            "include_dashboard": False,
            "_system_config": HEALTH_CHECKS,
        },
    )
    try:
        # Attached before any worker node exists, so the driver is the head's: removing a worker
        # node never takes the driver's own raylet with it.
        ray.init(address=head.address, log_to_driver=False)
        print(f"\nRay test cluster's head started and attached in {time.perf_counter() - started:.1f} s")
        yield head
    finally:
        ray.shutdown()
        head.shutdown()


@pytest.mark.slow
def test_a_run_whose_node_dies_is_retried_from_its_checkpoint_and_recorded_once(
    test_cluster, tiny_data_dir, tmp_path, monkeypatch
):
    """45 to 56 s here (2 cores shared with other work, load average 6 to 10): the head starts and is
    attached in 4 to 9 s, the run with its node killed and a node added takes 27 to 34 s (each
    node's worker imports TensorFlow), and the same run trained in this process the rest."""
    config = config_from_mapping(CONFIG)
    runs = tmp_path / "runs"
    indexed = []
    index_run = results.index_run
    monkeypatch.setattr(
        results,
        "index_run",
        lambda runs_dir, run_id, name, status, record: (
            indexed.append((run_id, status)) or index_run(runs_dir, run_id, name, status, record)
        ),
    )

    worker_node = test_cluster.add_node(**NODE)
    lines = []
    started = time.perf_counter()
    training = InBackground(
        lambda: executor.run_all(
            [config], str(tiny_data_dir), runs, "test", echo=lines.append, cluster=ClusterSettings(test_cluster.address)
        )
    )
    training.start()
    # The node dies, as a machine does, once the run has finished epochs: its raylet is killed,
    # and its workers, the run's included, end with it. A fresh node then joins for the retry.
    # A hang guard, not a timing: on a busy machine the epochs come late, and the test still waits for them.
    deadline = time.perf_counter() + 1200
    while (
        (epochs_at_failure := epochs_recorded(runs)) < EPOCHS_BEFORE_FAILURE
        and training.is_alive()
        and time.perf_counter() < deadline
    ):
        time.sleep(0.02)
    assert training.is_alive(), f"the run ended before its node could be removed: {training.error!r}"
    assert epochs_at_failure >= EPOCHS_BEFORE_FAILURE, f"no {EPOCHS_BEFORE_FAILURE} epochs in 1200 s"
    test_cluster.remove_node(worker_node, allow_graceful=False)
    test_cluster.add_node(**NODE)
    [record] = training.outcome(timeout=1200)
    print(
        f"\nthe run, its node killed after epoch {epochs_at_failure} and a node added, in {time.perf_counter() - started:.1f} s"
    )

    # Found the live worker node, with its 1 CPU, when it started; finished once, on one node.
    assert any(
        line.startswith("training 1 run on the Ray cluster at ")
        and line.endswith(": 2 nodes, 1 CPU; 1 CPU per run, up to 1 at a time")
        for line in lines
    ), lines
    assert sum(" on node " in line for line in lines) == 1
    assert record.status == "completed"

    # Recorded once, by the driver alone: running when handed out, then the record of the retry.
    [stored] = results.read_records(runs, statuses=None)
    assert stored.status == "completed" and indexed == [
        (stored.run_id, "running"),
        (stored.run_id, "completed"),
    ]
    assert sorted(path.name for path in runs.iterdir()) == sorted([stored.run_id, results.INDEX_FILE])
    run_dir = runs / stored.run_id
    assert sorted(path.name for path in run_dir.iterdir()) == [
        "config.json",
        "history.jsonl",
        "model.keras",
        "result.json",
        "tensorboard",
        "test_predictions.npz",
        "vocabulary.json",
    ]

    # The retry went on from the checkpoint of the last epoch its node finished, not from the start.
    # That checkpoint is the one of the history's last epoch, or of the one before when the node
    # died between writing the two; the dying worker may still have finished an epoch after it.
    assert len(stored.resumed or ()) == 1, (
        "the retried task started the run afresh instead of going on from its checkpoint"
    )
    assert epochs_at_failure - 1 <= stored.resumed[0]["after_epoch"] < CONFIG["train"]["epochs"]
    assert stored.result.epochs_run == CONFIG["train"]["epochs"]

    # Its history is an uninterrupted run's: every epoch once, with the same numbers.
    reference = executor.run_all(
        [config], str(tiny_data_dir), tmp_path / "uninterrupted", "test", echo=lambda line: None
    )[0]
    assert untimed_history(run_dir) == untimed_history(reference.run_dir)
    for key in (
        "best_val_accuracy",
        "best_epoch",
        "best_val_loss",
        "test_accuracy",
        "test_loss",
        "val_confusion",
        "test_confusion",
    ):
        assert stored.result.value(key) == reference.result.value(key), key
