"""Benchmark: `rnnbench run` against a plain Keras script of the same model, data and epochs.

    RNNBENCH_DATA_DIR=/path/to/data python scripts/bench_overhead.py [--config configs/lecture/gru.yaml] [--repeats 2]

Four arms, each a fresh process, interleaved in every repeat so that a noisy machine slows all
of them alike (the two TensorFlow arms, which only set the speed-up, run in the first
--reference-repeats repeats):
  rnnbench (default backend)   `rnnbench run CONFIG --force`, the backend `auto` picks
  plain Keras, same backend    the script below with that backend
  plain Keras, tensorflow      the script below on TensorFlow (the usual Keras setup)
  rnnbench, tensorflow         `rnnbench run CONFIG --force --backend tensorflow`
The plain script gets rnnbench's encoded arrays (the same tokens, split and vocabulary), builds
Embedding -> cell -> Dense(relu) -> Dense(sigmoid) by hand and calls `model.fit(..., epochs=E,
validation_data=..., shuffle=True)` once. Training time is the whole fit: every epoch with its
validation, compiling included; for rnnbench it is the recorded `train_seconds`, which also
covers its shuffling, per-epoch checkpoints and history writes. Ratios are of median times.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

PLAIN_SCRIPT = """
import json, sys, time
import keras
import numpy as np
from keras import layers

arrays = np.load(sys.argv[1])
settings = json.loads(sys.argv[2])
cell = {"simple_rnn": layers.SimpleRNN, "lstm": layers.LSTM, "gru": layers.GRU}[settings["cell"]]
keras.utils.set_random_seed(settings["seed"])
model = keras.Sequential([
    keras.Input(shape=(settings["maxlen"],), dtype="int32"),
    layers.Embedding(settings["num_words"], settings["embedding_dim"]),
    cell(settings["units"]),
    layers.Dense(settings["dense_units"], activation="relu"),
    layers.Dense(1, activation="sigmoid"),
])
model.compile(optimizer=keras.optimizers.Adam(settings["learning_rate"]), loss="binary_crossentropy", metrics=["accuracy"])
started = time.perf_counter()
history = model.fit(arrays["x"], arrays["y"], validation_data=(arrays["xv"], arrays["yv"]),
                    batch_size=settings["batch_size"], epochs=settings["epochs"], shuffle=True, verbose=0)
seconds = time.perf_counter() - started
print(json.dumps({"train_seconds": seconds, "best_val_accuracy": max(history.history["val_accuracy"])}))
"""


def prepare(config_path: str, data_dir: str, folder: Path) -> tuple[Path, dict]:
    """rnnbench's own encoded arrays for the config, saved for the plain script."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    from rnnbench.config import load_config
    from rnnbench.train import Prepared

    config = load_config(config_path)
    if config.model.cell not in ("simple_rnn", "lstm", "gru"):
        raise SystemExit(
            f"{config_path}: the plain script builds recurrent models only, not model.cell={config.model.cell!r}"
        )
    prepared = Prepared(config, data_dir, lambda line: None)
    if prepared.num_classes != 2:
        raise SystemExit(
            f"{config_path}: the plain script is a binary classifier; this dataset has {prepared.num_classes} classes"
        )
    path = folder / "arrays.npz"
    np.savez(path, x=prepared.x_train, y=prepared.y_train, xv=prepared.x_validation, yv=prepared.y_validation)
    settings = {
        "cell": config.model.cell,
        "maxlen": config.data.maxlen,
        "num_words": config.data.num_words,
        "embedding_dim": config.model.embedding_dim,
        "units": config.model.units,
        "dense_units": config.model.dense_units,
        "learning_rate": config.train.learning_rate,
        "batch_size": config.train.batch_size,
        "epochs": config.train.epochs,
        "seed": config.train.seed,
        "train_rows": int(len(prepared.y_train)),
        "default_backend": config.backend,
    }
    if (
        config.model.layers != 1
        or config.model.bidirectional
        or config.model.dropout
        or config.train.optimizer != "adam"
    ):
        raise SystemExit(f"{config_path}: the plain script covers one layer, no dropout, Adam; pick a simpler config")
    return path, settings


def run_plain(arrays: Path, settings: dict, backend: str) -> dict:
    environment = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    completed = subprocess.run(
        [sys.executable, "-c", PLAIN_SCRIPT, str(arrays), json.dumps(settings)],
        capture_output=True,
        text=True,
        env=environment,
    )
    if completed.returncode != 0:
        raise SystemExit(f"plain Keras ({backend}) failed:\n{completed.stderr[-2000:]}")
    return json.loads(completed.stdout.splitlines()[-1])


def run_rnnbench(config_path: str, runs_dir: Path, backend: str | None, data_dir: str, epochs: int) -> dict:
    command = [
        sys.executable,
        "-m",
        "rnnbench",
        "run",
        config_path,
        "--force",
        "--runs-dir",
        str(runs_dir),
        "--data-dir",
        data_dir,
        "--set",
        f"train.epochs={epochs}",
    ]
    environment = {key: value for key, value in os.environ.items() if key != "KERAS_BACKEND"}
    if backend:
        command += ["--backend", backend]
    completed = subprocess.run(command, capture_output=True, text=True, env=environment)
    if completed.returncode != 0:
        raise SystemExit(f"rnnbench run failed:\n{completed.stdout[-2000:]}{completed.stderr[-2000:]}")
    from rnnbench import results

    record = results.read_runs(runs_dir)[-1]
    return {
        "train_seconds": record["result"]["train_seconds"],
        "best_val_accuracy": record["result"]["best_val_accuracy"],
        "backend": record["backend"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/lecture/gru.yaml")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per arm (default 3; the config's own is ignored)")
    parser.add_argument("--repeats", type=int, default=5, help="repeats of the two arms on the default backend")
    parser.add_argument("--reference-repeats", type=int, default=1, help="repeats of the TensorFlow arms")
    parser.add_argument("--data-dir", default=os.environ.get("RNNBENCH_DATA_DIR"))
    parser.add_argument("--skip-rnnbench-tensorflow", action="store_true", help="leave out the fourth arm")
    parser.add_argument("--json", help="also write the measurements here")
    arguments = parser.parse_args()
    if not arguments.data_dir:
        raise SystemExit("set RNNBENCH_DATA_DIR or --data-dir")

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        os.environ.setdefault("RNNBENCH_CACHE_DIR", str(Path.home() / ".cache" / "rnnbench"))
        arrays, settings = prepare(arguments.config, arguments.data_dir, folder)
        settings["epochs"] = arguments.epochs
        default = settings["default_backend"]
        arms = {
            f"rnnbench, {default} (default)": lambda: run_rnnbench(
                arguments.config, folder / "runs", None, arguments.data_dir, arguments.epochs
            ),
            f"plain Keras, {default}": lambda: run_plain(arrays, settings, default),
            "plain Keras, tensorflow": lambda: run_plain(arrays, settings, "tensorflow"),
        }
        if not arguments.skip_rnnbench_tensorflow and default != "tensorflow":
            arms["rnnbench, tensorflow"] = lambda: run_rnnbench(
                arguments.config, folder / "runs", "tensorflow", arguments.data_dir, arguments.epochs
            )
        references = {"plain Keras, tensorflow", "rnnbench, tensorflow"} if default != "tensorflow" else set()
        measured: dict[str, list[dict]] = {name: [] for name in arms}
        started = time.perf_counter()
        for repeat in range(arguments.repeats):
            for name, arm in arms.items():
                if name in references and repeat >= arguments.reference_repeats:
                    continue
                measured[name].append(arm())
                print(
                    f"repeat {repeat + 1}, {name}: {measured[name][-1]['train_seconds']:.1f} s",
                    file=sys.stderr,
                    flush=True,
                )

    samples = settings["train_rows"] * arguments.epochs
    median = {
        name: statistics.median(entry["train_seconds"] for entry in entries) for name, entries in measured.items()
    }
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; {arguments.config}:"
        f" {settings['cell']}, maxlen {settings['maxlen']}, batch {settings['batch_size']}, {settings['train_rows']:,} training rows,"
        f" {arguments.epochs} epochs; median of interleaved repeats ({time.perf_counter() - started:.0f} s in all)"
    )
    print()
    print("| arm | repeats | training s (median) | each repeat | samples/s | best val acc |")
    print("|---|---:|---:|---|---:|---|")
    for name, entries in measured.items():
        accuracies = ", ".join(sorted({f"{entry['best_val_accuracy']:.4f}" for entry in entries}))
        each = ", ".join(f"{entry['train_seconds']:.1f}" for entry in entries)
        print(
            f"| {name} | {len(entries)} | {median[name]:.1f} | {each} | {samples / median[name]:,.0f} | {accuracies} |"
        )
    print()
    rnnbench_default, plain_same = f"rnnbench, {default} (default)", f"plain Keras, {default}"
    overhead = median[plain_same] / median[rnnbench_default]
    speedup = median["plain Keras, tensorflow"] / median[rnnbench_default]
    print(f"overhead ratio (rnnbench throughput / plain Keras, both {default}): {overhead:.3f}  (goal >= 0.97)")
    print(f"speed-up of rnnbench's default over plain TensorFlow Keras: {speedup:.2f}x  (goal >= 1.5)")
    if "rnnbench, tensorflow" in median:
        print(
            f"overhead ratio on tensorflow (rnnbench / plain): {median['plain Keras, tensorflow'] / median['rnnbench, tensorflow']:.3f}"
        )
    if arguments.json:
        Path(arguments.json).write_text(json.dumps({"settings": settings, "measured": measured}, indent=2))


if __name__ == "__main__":
    main()
