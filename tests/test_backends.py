"""Every installed Keras backend other than TensorFlow (which the rest of the suite runs on):
the lecture's models build with the lecture's parameter counts, each layer runs the kernel that
`rnnbench.kernels.plan` names, a tiny training run is reproducible with the same seed, and a run
interrupted after its first epoch resumes to the same history."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from test_kernels import CPU_CALLS
from conftest import untimed_history

# The lecture's counts: Embedding 500,000 + recurrent layer + Dense 1,632 + output 33.
LECTURE_PARAMETERS = {"simple_rnn": 506_715, "lstm": 521_865, "gru": 516_965}
BACKENDS = [name for name in ("jax", "torch") if importlib.util.find_spec(name) is not None]


def probe(data_dir: str, runs_dir: str) -> dict:
    """Runs in a process of its own, whose KERAS_BACKEND is the backend under test."""
    import keras

    from rnnbench.config import config_from_mapping, load_config
    import numpy as np

    from rnnbench.model import MultiHot, build_model
    from rnnbench.executor import run_all
    from rnnbench.train import run_experiment
    from test_kernels import trace_calls

    root = Path(__file__).resolve().parent.parent
    found = {"backend": keras.backend.backend(), "parameters": {}, "calls": {}, "histories": []}
    tokens = np.array([[0, 0, 3, 3, 9], [1, 2, 3, 4, 5]], dtype="int32")
    found["multi_hot"] = [
        keras.ops.convert_to_numpy(layer(tokens)).tolist()
        for layer in (MultiHot(10), keras.layers.CategoryEncoding(num_tokens=10, output_mode="multi_hot"))
    ]
    for cell in LECTURE_PARAMETERS:
        network = build_model(load_config(root / "configs" / "lecture" / f"{cell}.yaml"), 10_000, 2)
        found["parameters"][cell] = network.count_params()
        found["calls"][cell] = trace_calls(cell)
    config = config_from_mapping(
        {
            "name": "tiny",
            "model": {"cell": "gru", "embedding_dim": 8, "units": 8, "dense_units": 8, "dropout": 0.3},
            "data": {"num_words": 50, "maxlen": 24},
            "train": {"epochs": 2, "batch_size": 32, "seed": 3},
        }
    )

    def history(record: dict) -> list[dict]:
        return untimed_history(record.run_dir)

    for attempt in ("a", "b"):
        record = run_experiment(config, data_dir, Path(runs_dir) / attempt, "test", echo=lambda line: None)
        found["histories"].append(history(record))
        found["backend_recorded"] = record.backend
        found["backend_choice_recorded"] = record.backend_choice
        found["kernels_recorded"] = record.to_json()["kernels"]

    # Interrupted as the second epoch starts, then resumed from the checkpoint of the first.
    fit = keras.Model.fit

    def interrupted_fit(self, *arguments, **settings):
        if settings.get("initial_epoch") == 1:
            raise KeyboardInterrupt
        return fit(self, *arguments, **settings)

    keras.Model.fit = interrupted_fit
    try:
        run_experiment(config, data_dir, Path(runs_dir) / "c", "test", echo=lambda line: None)
    except KeyboardInterrupt:
        pass
    finally:
        keras.Model.fit = fit
    [resumed] = run_all([config], data_dir, Path(runs_dir) / "c", "test", echo=lambda line: None)
    found["resumed_history"] = history(resumed)
    found["resumed_after"] = [entry["after_epoch"] for entry in resumed.resumed]
    return found


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_backend_builds_runs_the_planned_kernels_and_reproduces(backend, tiny_data_dir, tmp_path):
    tests = Path(__file__).parent
    environment = {
        **os.environ,
        "KERAS_BACKEND": backend,
        "CUDA_VISIBLE_DEVICES": "",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(tests), os.environ.get("PYTHONPATH")])),
    }
    environment.pop("RNNBENCH_BACKEND_CHOICE", None)  # What an earlier test's command chose.
    code = f"import json, test_backends; print(json.dumps(test_backends.probe({str(tiny_data_dir)!r}, {str(tmp_path / 'runs')!r})))"
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environment, timeout=1200
    )  # A hang guard.
    assert completed.returncode == 0, completed.stderr[-3000:]
    found = json.loads(completed.stdout.splitlines()[-1])

    assert found["backend"] == found["backend_recorded"] == backend
    assert found["backend_choice_recorded"] == f"auto: KERAS_BACKEND={backend} is set"
    assert found["parameters"] == LECTURE_PARAMETERS
    ours, keras_own = found["multi_hot"]
    assert ours == keras_own  # The bag-of-words layer gives CategoryEncoding's values on this backend too.
    assert found["calls"] == {cell: CPU_CALLS[(backend, cell)][1] for cell in LECTURE_PARAMETERS}
    assert found["kernels_recorded"] == [
        {
            "layer": "gru_1",
            "kernel": CPU_CALLS[(backend, "gru")][0],
            "fused": False,
            "reason": found["kernels_recorded"][0]["reason"],
        }
    ]
    first, second = found["histories"]
    assert [entry["epoch"] for entry in first] == [1, 2]
    assert first == second  # Same config, same seed, same backend, on the CPU: the same history.
    assert found["resumed_after"] == [1]
    assert found["resumed_history"] == first


# `backend: auto` by device, and the reason each run records.

GPU_TORCH = "auto: an NVIDIA GPU is visible and torch is installed; Keras-torch trained whole runs fastest on a GPU (docs/performance.md)"
CPU_JAX = "auto: no NVIDIA GPU is visible and JAX is installed; Keras-JAX was fastest on the CPU (docs/performance.md)"


@pytest.fixture
def machine(monkeypatch):
    """Sets what auto_choice sees: a visible GPU or none, and which backends are installed."""
    from rnnbench import backend

    monkeypatch.delenv("KERAS_BACKEND", raising=False)

    def set_machine(gpu: bool, installed: tuple[str, ...]) -> None:
        monkeypatch.setattr(backend, "nvidia_gpu_visible", lambda: gpu)
        monkeypatch.setattr(backend, "installed", lambda name: name in installed)

    return set_machine


@pytest.mark.parametrize(
    "gpu, installed, chosen, reason",
    [
        (True, ("tensorflow", "jax", "torch"), "torch", GPU_TORCH),
        (False, ("tensorflow", "jax", "torch"), "jax", CPU_JAX),
        (
            True,
            ("tensorflow", "jax"),
            "jax",
            "auto: an NVIDIA GPU is visible but torch is not installed; JAX is, and Keras-JAX was second on GPU (docs/performance.md)",
        ),
        (
            False,
            ("tensorflow", "torch"),
            "tensorflow",
            "auto: no NVIDIA GPU is visible and JAX is not installed, so TensorFlow",
        ),
        (
            True,
            ("tensorflow",),
            "tensorflow",
            "auto: an NVIDIA GPU is visible but neither torch nor JAX is installed, so TensorFlow",
        ),
    ],
)
def test_auto_picks_the_backend_measured_fastest_on_the_device(machine, gpu, installed, chosen, reason):
    from rnnbench.config import config_from_mapping

    machine(gpu, installed)
    config = config_from_mapping({"model": {"cell": "lstm"}})
    assert (config.backend, config.backend_choice) == (chosen, reason)


def test_runs_that_take_a_gpu_share_choose_for_the_gpu_on_a_driver_without_one(machine, monkeypatch):
    """A cluster's driver (a laptop) chooses `auto` for the GPUs its runs will train on."""
    from rnnbench import backend
    from rnnbench.config import config_from_mapping

    machine(False, ("tensorflow", "jax", "torch"))
    assert config_from_mapping({}).backend == "jax"
    with backend.runs_take_a_gpu(True):
        config = config_from_mapping({})
    assert (config.backend, config.backend_choice) == (
        "torch",
        "auto: each run takes a share of a GPU (--gpus-per-run) and torch is installed; Keras-torch trained whole runs fastest on a GPU (docs/performance.md)",
    )
    assert config_from_mapping({}).backend == "jax"  # Only while the command reads its configs.


def test_keras_backend_and_the_config_win_over_the_device(machine, monkeypatch):
    from rnnbench.config import config_from_mapping

    machine(True, ("tensorflow", "jax", "torch"))
    assert config_from_mapping({"backend": "jax"}).backend_choice == "set in the config"
    assert config_from_mapping({}, overrides=["backend=tensorflow"]).backend_choice == "set in the config"
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    config = config_from_mapping({})
    assert (config.backend, config.backend_choice) == ("jax", "auto: KERAS_BACKEND=jax is set")


def test_how_the_backend_was_chosen_changes_no_fingerprint_and_no_equality(machine):
    from rnnbench.config import config_from_mapping
    from rnnbench.sweep import expand_mapping

    machine(True, ("tensorflow", "jax", "torch"))
    chosen = config_from_mapping({"model": {"cell": "gru"}})
    written = config_from_mapping({"backend": "torch", "model": {"cell": "gru"}})
    assert chosen.backend_choice != written.backend_choice
    assert chosen == written and hash(chosen) == hash(written)
    assert (chosen.fingerprint(), chosen.group_fingerprint()) == (written.fingerprint(), written.group_fingerprint())
    # --seeds rebuilds the config from its resolved values, and keeps the reason.
    assert {
        config.backend_choice
        for config in expand_mapping({"name": "gru", "model": {"cell": "gru"}}, "gru.yaml", seed_count=2)
    } == {GPU_TORCH}


@pytest.mark.parametrize("hidden", ["", "-1", "-1,0"])
def test_cuda_visible_devices_can_hide_every_gpu(monkeypatch, hidden):
    from rnnbench import backend

    monkeypatch.setattr(backend.glob, "glob", lambda pattern: ["/dev/nvidia0"])
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert backend.nvidia_gpu_visible()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", hidden)
    assert not backend.nvidia_gpu_visible()


def test_a_worker_records_the_reason_its_command_chose_the_backend(monkeypatch):
    from rnnbench import backend
    from rnnbench.config import config_from_mapping

    # What a worker rebuilds from the resolved values names the backend as if it had been set.
    rebuilt = config_from_mapping({"backend": "tensorflow"})
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    monkeypatch.setenv(backend.CHOICE_VARIABLE, "auto: KERAS_BACKEND=tensorflow is set")
    assert backend.choice_reason(rebuilt) == "auto: KERAS_BACKEND=tensorflow is set"
    # A reason exported for another backend says nothing about this one.
    assert backend.choice_reason(config_from_mapping({"backend": "jax"})) == "set in the config"


def worker_environment() -> dict:
    """Runs in a `--jobs` worker process: what its initializer left in the environment."""
    names = (
        "KERAS_BACKEND",
        "XLA_PYTHON_CLIENT_PREALLOCATE",
        "XLA_CLIENT_MEM_FRACTION",
        "XLA_PYTHON_CLIENT_MEM_FRACTION",
        "RNNBENCH_BACKEND_CHOICE",
    )
    return {name: os.environ.get(name) for name in names}


def test_jobs_with_gpus_per_run_cap_each_worker_process(monkeypatch, tmp_path):
    from rnnbench import executor

    for name in ("XLA_PYTHON_CLIENT_PREALLOCATE", "XLA_CLIENT_MEM_FRACTION", "XLA_PYTHON_CLIENT_MEM_FRACTION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RNNBENCH_BACKEND_CHOICE", GPU_TORCH)
    said = []
    sweep = executor.Sweep(None, tmp_path, "test", said.append, reuse=True, resume=True, announce=True)
    with executor.Processes(sweep, 2, 4, "jax", 0.25) as processes:
        found = processes.pool.submit(worker_environment).result(
            timeout=600
        )  # A hang guard: a spawned process imports JAX.
    assert said == ["training 4 runs, 2 at a time, each with 0.25 of the GPU"]
    assert found == {
        "KERAS_BACKEND": "jax",
        "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
        "XLA_CLIENT_MEM_FRACTION": "0.25",
        "XLA_PYTHON_CLIENT_MEM_FRACTION": "0.25",
        "RNNBENCH_BACKEND_CHOICE": GPU_TORCH,
    }
