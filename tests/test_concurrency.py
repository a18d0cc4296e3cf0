"""`rnnbench run` processes at once against one runs folder: every run recorded once, nothing corrupted."""

import fcntl
import json
import os
import subprocess
import sys

import pytest

from rnnbench import results, worker
from rnnbench.config import config_from_mapping
from conftest import untimed_history

# A hang guard, not a timing: eight processes importing TensorFlow on a busy 2-core machine are
# slow, never this slow; nothing here depends on how long they take.
HANG_SECONDS = 1200


@pytest.mark.slow
def test_eight_processes_share_a_runs_folder(tiny_data_dir, tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text("model: {cell: ann, dense_units: 8}\ndata: {num_words: 40, maxlen: 16}\ntrain: {epochs: 1}\n")
    runs = tmp_path / "runs"
    environment = {
        **os.environ,
        "RNNBENCH_DATA_DIR": str(tiny_data_dir),
        "RNNBENCH_RUNS_DIR": str(runs),
        "RNNBENCH_CACHE_DIR": str(tmp_path / "cache"),
        "TF_NUM_INTEROP_THREADS": "1",
        "TF_NUM_INTRAOP_THREADS": "1",
    }
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "rnnbench", "run", str(config), "--set", f"train.seed={seed}"],
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for seed in range(1, 9)
    ]
    outputs = [process.communicate(timeout=HANG_SECONDS)[0] for process in processes]
    assert [process.returncode for process in processes] == [0] * 8, outputs
    records = results.read_records(runs)
    assert sorted(record.config["train"]["seed"] for record in records) == list(range(1, 9))
    folders = sorted(path for path in runs.iterdir() if path.is_dir())
    assert len(folders) == 8
    for folder in folders:
        result = json.loads((folder / "result.json").read_text())
        assert result["status"] == "completed" and len((folder / "history.jsonl").read_text().splitlines()) == 1
    assert not list(runs.rglob("*.tmp"))
    compared = subprocess.run(
        [sys.executable, "-m", "rnnbench", "compare", "--runs-dir", str(runs), "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    groups = json.loads(compared.stdout)["groups"]
    assert [(group["name"], group["n"]) for group in groups] == [("tiny", 8)]


@pytest.mark.slow
def test_jobs_trains_a_sweep_in_parallel_processes_with_the_sequential_results(tiny_data_dir, tmp_path):
    config = tmp_path / "sweep.yaml"
    config.write_text(
        "name: parallel\nmodel: {cell: gru, embedding_dim: 8, units: 8, dense_units: 8}\n"
        "data: {num_words: 40, maxlen: 16}\ntrain: {epochs: 2, seeds: [1, 2, 3]}\n"
    )
    environment = {**os.environ, "RNNBENCH_DATA_DIR": str(tiny_data_dir), "RNNBENCH_CACHE_DIR": str(tmp_path / "cache")}

    def run(runs, *arguments):
        completed = subprocess.run(
            [sys.executable, "-m", "rnnbench", "run", str(config), "--runs-dir", str(runs), *arguments],
            env=environment,
            capture_output=True,
            text=True,
            timeout=HANG_SECONDS,
        )
        assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
        return completed.stdout

    output = run(tmp_path / "parallel", "--jobs", "2")
    assert "training 3 runs, 2 at a time" in output
    # Each worker's lines name their run, so interleaved output stays readable.
    assert any(line.startswith("[2/3] parallel, seed 2 epoch 2/2: ") for line in output.splitlines())
    run(tmp_path / "sequential")

    def histories(runs):
        found = {}
        for record in results.read_records(runs):
            found[record.config["train"]["seed"]] = untimed_history(runs / record.run_id)
        return found

    parallel, sequential = histories(tmp_path / "parallel"), histories(tmp_path / "sequential")
    assert sorted(parallel) == [1, 2, 3]
    assert parallel == sequential


@pytest.mark.slow
def test_two_processes_starting_the_same_run_train_it_once(tiny_data_dir, tmp_path):
    from rnnbench.sweep import expand
    from rnnbench.results import lock_path

    config = tmp_path / "tiny.yaml"
    config.write_text("model: {cell: ann, dense_units: 8}\ndata: {num_words: 40, maxlen: 16}\ntrain: {epochs: 2}\n")
    runs = tmp_path / "runs"
    runs.mkdir()
    # This test holds the run's lock, as a process training it would, until both processes wait
    # for it: so they surely meet, however slowly each starts.
    [resolved] = expand(config)
    holder = os.open(lock_path(runs, resolved.fingerprint()), os.O_RDWR | os.O_CREAT)
    fcntl.flock(holder, fcntl.LOCK_EX)
    environment = {
        **os.environ,
        "RNNBENCH_DATA_DIR": str(tiny_data_dir),
        "RNNBENCH_RUNS_DIR": str(runs),
        "PYTHONUNBUFFERED": "1",
        "RNNBENCH_CACHE_DIR": str(tmp_path / "cache"),
        "TF_NUM_INTEROP_THREADS": "1",
        "TF_NUM_INTRAOP_THREADS": "1",
    }
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "rnnbench", "run", str(config)],
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    waiting = "the same run is being trained by another process; waiting for it to finish"
    try:
        heard = [_output_until(process, waiting) for process in processes]
    finally:
        os.close(holder)
    outputs = [before + process.communicate(timeout=HANG_SECONDS)[0] for before, process in zip(heard, processes)]
    assert all(before.endswith(waiting + "\n") for before in heard), outputs
    assert [process.returncode for process in processes] == [0, 0], outputs
    [folder] = [path for path in runs.iterdir() if path.is_dir()]
    assert [(record.run_id, record.status) for record in results.read_records(runs, statuses=None)] == [
        (folder.name, "completed")
    ]
    trained = [output for output in outputs if "epoch 2/2: " in output]
    reused = [output for output in outputs if f"already completed in {folder}; reused, not retrained" in output]
    assert len(trained) == len(reused) == 1 and trained[0] != reused[0], outputs
    assert sorted(path.name for path in runs.iterdir()) == sorted(["index.sqlite", folder.name])


def _output_until(process: subprocess.Popen, line: str) -> str:
    """What `process` prints up to and including `line`, or all it prints if it never prints that line."""
    lines = []
    while not lines or lines[-1] not in (line + "\n", ""):
        lines.append(process.stdout.readline())
    return "".join(lines)


def test_a_workers_lines_are_written_whole(monkeypatch, tmp_path):
    import rnnbench.train

    written = []
    monkeypatch.setattr(worker.os, "write", lambda descriptor, data: written.append((descriptor, data)) or len(data))

    def run_experiment(config, data_dir, runs_dir, command, echo, **options):
        echo("epoch 1/2: loss 0.6931")
        echo("epoch 2/2: loss 0.5000")
        return {
            "status": "completed",
            "run_dir": str(runs_dir / options["run_id"]),
            "progress_bar": options["progress_bar"],
        }

    monkeypatch.setattr(rnnbench.train, "run_experiment", run_experiment)
    config = config_from_mapping({"name": "lines", "model": {"cell": "ann"}}).to_dict()
    request = worker.RunRequest(
        "[2/3] lines, seed 1", config, None, str(tmp_path / "runs"), "test", "20261128-100000-lines-ab12cd"
    )
    outcome = worker.train_in_process(request)
    assert outcome.record == {
        "status": "completed",
        "run_dir": str(tmp_path / "runs" / "20261128-100000-lines-ab12cd"),
        "progress_bar": False,
    }
    assert outcome.files is None
    # One write each to standard output, the label, the text and the newline together.
    assert written == [
        (1, b"[2/3] lines, seed 1 epoch 1/2: loss 0.6931\n"),
        (1, b"[2/3] lines, seed 1 epoch 2/2: loss 0.5000\n"),
    ]
