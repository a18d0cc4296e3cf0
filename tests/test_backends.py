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
    found["multi_hot"] = [keras.ops.convert_to_numpy(layer(tokens)).tolist() for layer in (
        MultiHot(10), keras.layers.CategoryEncoding(num_tokens=10, output_mode="multi_hot"))]
    for cell in LECTURE_PARAMETERS:
        network = build_model(load_config(root / "configs" / "lecture" / f"{cell}.yaml"), 10_000, 2)
        found["parameters"][cell] = network.count_params()
        found["calls"][cell] = trace_calls(cell)
    config = config_from_mapping({
        "name": "tiny", "model": {"cell": "gru", "embedding_dim": 8, "units": 8, "dense_units": 8, "dropout": 0.3},
        "data": {"num_words": 50, "maxlen": 24}, "train": {"epochs": 2, "batch_size": 32, "seed": 3},
    })
    def history(record: dict) -> list[dict]:
        lines = Path(record["run_dir"], "history.jsonl").read_text().splitlines()
        return [{key: value for key, value in json.loads(line).items() if key != "seconds"} for line in lines]

    for attempt in ("a", "b"):
        record = run_experiment(config, data_dir, Path(runs_dir) / attempt, "test", echo=lambda line: None)
        found["histories"].append(history(record))
        found["backend_recorded"] = record["backend"]
        found["kernels_recorded"] = record["kernels"]

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
    found["resumed_after"] = [entry["after_epoch"] for entry in resumed["resumed"]]
    return found


@pytest.mark.parametrize("backend", BACKENDS)
def test_backend_builds_runs_the_planned_kernels_and_reproduces(backend, tiny_data_dir, tmp_path):
    tests = Path(__file__).parent
    environment = {**os.environ, "KERAS_BACKEND": backend, "CUDA_VISIBLE_DEVICES": "",
                   "PYTHONPATH": os.pathsep.join(filter(None, [str(tests), os.environ.get("PYTHONPATH")]))}
    code = f"import json, test_backends; print(json.dumps(test_backends.probe({str(tiny_data_dir)!r}, {str(tmp_path / 'runs')!r})))"
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    found = json.loads(completed.stdout.splitlines()[-1])

    assert found["backend"] == found["backend_recorded"] == backend
    assert found["parameters"] == LECTURE_PARAMETERS
    ours, keras_own = found["multi_hot"]
    assert ours == keras_own  # The bag-of-words layer gives CategoryEncoding's values on this backend too.
    assert found["calls"] == {cell: CPU_CALLS[(backend, cell)][1] for cell in LECTURE_PARAMETERS}
    assert found["kernels_recorded"] == [
        {"layer": "gru_1", "kernel": CPU_CALLS[(backend, "gru")][0], "fused": False, "reason": found["kernels_recorded"][0]["reason"]}
    ]
    first, second = found["histories"]
    assert [entry["epoch"] for entry in first] == [1, 2]
    assert first == second  # Same config, same seed, same backend, on the CPU: the same history.
    assert found["resumed_after"] == [1]
    assert found["resumed_history"] == first
