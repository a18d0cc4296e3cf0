"""Benchmark: training samples/s of the lecture's LSTM and GRU models on each installed Keras backend, and in plain PyTorch.

    RNNBENCH_DATA_DIR=/path/to/data python scripts/bench_backends.py [--repeats 2] [--cells lstm gru] [--device cpu]
    RNNBENCH_DATA_DIR=/path/to/data python scripts/bench_backends.py --device gpu --maxlen 200 --batch-size 256 --repeats 1

The model is the lecture's: Embedding(10000, 50) -> cell(50) -> Dense(32, relu) -> Dense(1,
sigmoid), binary cross-entropy, Adam(1e-3), compiled with the accuracy metric as rnnbench
compiles it. The inputs are real IMDB token ids, made once here by rnnbench's own pipeline
(word tokens, a 10,000-word vocabulary counted on the 25,000 training reviews, 'pre' padding
to --maxlen) and handed to the measurements in a temporary .npz file.

Each measurement runs in a fresh subprocess, because KERAS_BACKEND must be set before Keras
is imported: it builds and compiles the model, warms up on a few batches (the full batch
size and the last, partial one, so that no tracing or compilation falls into the timed
part), then times one `fit` epoch over all --samples rows with shuffling. Plain PyTorch is
nn.Embedding -> nn.LSTM / nn.GRU / nn.RNN (batch_first) -> last hidden state ->
Linear(50, 32) -> ReLU -> Linear(32, 1) with BCEWithLogitsLoss and torch.optim.Adam, the data
held on the device and indexed by a shuffled permutation each epoch (cuDNN on a GPU).
Repeats run side by side: each repeat measures every configuration once (in alternating
order), so a noisy machine slows all of them alike. The table gives the median samples/s
and its ratio to Keras on TensorFlow for the same cell (or, without TensorFlow, to the
fastest implementation of that cell, as the output says).

--device cpu hides every GPU from the measurements; --device gpu requires each one to see a
GPU (Keras' JAX and PyTorch backends and TensorFlow use it by themselves; plain PyTorch moves
to cuda) and records a configuration that does not as failed.
"""

import argparse
import importlib.metadata
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

NUM_WORDS = 10_000
EMBEDDING_DIM = 50
UNITS = 50
DENSE_UNITS = 32
LEARNING_RATE = 1e-3
SEED = 1
CELLS = ("simple_rnn", "lstm", "gru")
# Implementation name -> (worker kind, Keras backend or None, the module that must be installed).
IMPLEMENTATIONS = {
    "tensorflow": ("keras", "tensorflow", "tensorflow"),
    "jax": ("keras", "jax", "jax"),
    "torch": ("keras", "torch", "torch"),
    "pytorch": ("pytorch", None, "torch"),
}
LABELS = {
    "tensorflow": "Keras 3, TensorFlow backend",
    "jax": "Keras 3, JAX backend",
    "torch": "Keras 3, PyTorch backend",
    "pytorch": "plain PyTorch",
}
REFERENCE = "tensorflow"
PACKAGES = ("rnnbench", "keras", "tensorflow", "jax", "jaxlib", "torch", "numpy")


# ---------------------------------------------------------------------------------------------
# Workers: one measurement each, in their own process; they print one JSON line.


def keras_worker(arguments: argparse.Namespace, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    # The backend must be chosen before the first `import keras`.
    os.environ["KERAS_BACKEND"] = arguments.backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    from keras import layers

    device = keras_device(arguments.backend)
    require_device(arguments.device, device)
    recurrent_layers = {"simple_rnn": layers.SimpleRNN, "lstm": layers.LSTM, "gru": layers.GRU}
    keras.utils.set_random_seed(SEED)
    model = keras.Sequential(
        [
            keras.Input(shape=(x.shape[1],), dtype="int32"),
            layers.Embedding(NUM_WORDS, EMBEDDING_DIM),
            recurrent_layers[arguments.cell](UNITS),
            layers.Dense(DENSE_UNITS, activation="relu"),
            layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=LEARNING_RATE), loss="binary_crossentropy", metrics=["accuracy"]
    )

    warmup = warmup_rows(len(x), arguments.batch_size, arguments.warmup_batches)
    model.fit(x[:warmup], y[:warmup], batch_size=arguments.batch_size, epochs=1, shuffle=True, verbose=0)
    started = time.perf_counter()
    history = model.fit(x, y, batch_size=arguments.batch_size, epochs=1, shuffle=True, verbose=0)
    # Reading the loss back waits for the last step on an asynchronous device.
    loss = float(history.history["loss"][-1])
    seconds = time.perf_counter() - started
    versions = {"keras": keras.__version__, arguments.backend: package_version(arguments.backend)}
    return measurement(len(x), seconds, loss, device, versions)


def keras_device(backend: str) -> str:
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        return (
            f"GPU: {tf.config.experimental.get_device_details(gpus[0]).get('device_name', gpus[0].name)}"
            if gpus
            else "CPU"
        )
    if backend == "jax":
        import jax

        first = jax.devices()[0]
        return f"GPU: {first.device_kind}" if first.platform == "gpu" else "CPU"
    return torch_device_description()


def torch_device_description() -> str:
    import torch

    return f"GPU: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "CPU"


def pytorch_worker(arguments: argparse.Namespace, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    import torch
    from torch import nn

    device_description = torch_device_description()
    require_device(arguments.device, device_description)
    device = torch.device("cuda" if arguments.device == "gpu" else "cpu")
    recurrent_layers = {"simple_rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}

    class Classifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embedding = nn.Embedding(NUM_WORDS, EMBEDDING_DIM)
            self.recurrent = recurrent_layers[arguments.cell](EMBEDDING_DIM, UNITS, batch_first=True)
            self.head = nn.Sequential(nn.Linear(UNITS, DENSE_UNITS), nn.ReLU(), nn.Linear(DENSE_UNITS, 1))

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            _, state = self.recurrent(self.embedding(tokens))
            # An LSTM's state is (hidden, cell); the hidden state of the last layer is the output.
            hidden = state[0] if isinstance(state, tuple) else state
            return self.head(hidden[-1]).squeeze(-1)

    torch.manual_seed(SEED)
    model = Classifier().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    loss_function = nn.BCEWithLogitsLoss()
    inputs = torch.as_tensor(x, dtype=torch.long, device=device)
    labels = torch.as_tensor(y, dtype=torch.float32, device=device)

    def epoch(rows: int) -> torch.Tensor:
        order = torch.randperm(rows, device=device)
        loss = torch.zeros((), device=device)
        for start in range(0, rows, arguments.batch_size):
            batch = order[start : start + arguments.batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_function(model(inputs[batch]), labels[batch])
            loss.backward()
            optimizer.step()
        return loss

    model.train()
    epoch(warmup_rows(len(x), arguments.batch_size, arguments.warmup_batches))
    synchronize(device)
    started = time.perf_counter()
    loss = float(epoch(len(x)).item())
    synchronize(device)
    seconds = time.perf_counter() - started
    return measurement(len(x), seconds, loss, device_description, {"torch": torch.__version__})


def synchronize(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def warmup_rows(rows: int, batch_size: int, full_batches: int) -> int:
    """A few full batches plus the epoch's last, partial batch, so that both shapes are compiled before timing."""
    return min(rows, full_batches * batch_size + rows % batch_size)


def require_device(wanted: str, found: str) -> None:
    if wanted == "gpu" and not found.startswith("GPU"):
        raise RuntimeError(f"--device gpu, but this implementation sees no GPU (it would run on {found})")


def measurement(rows: int, seconds: float, loss: float, device: str, versions: dict[str, str]) -> dict[str, Any]:
    return {
        "samples": rows,
        "seconds": seconds,
        "samples_per_second": rows / seconds,
        "loss": loss,
        "device": device,
        "versions": versions,
    }


def run_worker(arguments: argparse.Namespace) -> None:
    with np.load(arguments.npz) as stored:
        x, y = stored["x"], stored["y"]
    try:
        worker = keras_worker if arguments.worker == "keras" else pytorch_worker
        result = worker(arguments, x, y)
    except Exception as error:  # Reported to the parent as a failed configuration, not a traceback.
        print(json.dumps({"error": f"{type(error).__name__}: {error}"}), flush=True)
        sys.exit(3)
    print(json.dumps(result), flush=True)


# ---------------------------------------------------------------------------------------------
# The parent: data once, then every configuration side by side.


def prepare_data(data_dir: str, samples: int, maxlen: int, folder: Path) -> tuple[Path, dict[str, Any]]:
    """Real IMDB token ids from rnnbench's own pipeline, saved for the workers."""
    from rnnbench import data, tokenize

    started = time.perf_counter()
    dataset = data.load_imdb(data_dir)
    if samples > len(dataset.train_texts):
        raise SystemExit(f"--samples {samples} is more than the {len(dataset.train_texts):,} training reviews")
    corpus = tokenize.tokenize(dataset.train_texts)
    vocabulary = tokenize.build_vocabulary(corpus, np.arange(len(dataset.train_texts)), NUM_WORDS)
    x = tokenize.encode(corpus, vocabulary, np.arange(samples), maxlen)
    y = dataset.train_labels[:samples].astype(np.float32)
    path = folder / "imdb.npz"
    np.savez(path, x=x, y=y)
    return path, {"source": dataset.source, "rows": samples, "maxlen": maxlen, "seconds": time.perf_counter() - started}


def measure(arguments: argparse.Namespace, implementation: str, cell: str, npz: Path) -> dict[str, Any]:
    worker, backend, _ = IMPLEMENTATIONS[implementation]
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--worker",
        worker,
        "--cell",
        cell,
        "--npz",
        str(npz),
        "--batch-size",
        str(arguments.batch_size),
        "--device",
        arguments.device,
        "--warmup-batches",
        str(arguments.warmup_batches),
    ] + (["--backend", backend] if backend else [])
    environment = dict(os.environ)
    if arguments.device == "cpu":
        # Hide every GPU, so that no framework picks one by itself.
        environment.update(CUDA_VISIBLE_DEVICES="", JAX_PLATFORMS="cpu")
    try:
        finished = subprocess.run(
            command, capture_output=True, text=True, env=environment, timeout=arguments.worker_timeout
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {arguments.worker_timeout} s"}
    lines = [line for line in finished.stdout.splitlines() if line.startswith("{")]
    if lines:
        result = json.loads(lines[-1])
        if "error" not in result:
            return result
        return {"error": result["error"]}
    tail = " | ".join(finished.stderr.strip().splitlines()[-3:])
    return {"error": f"exit code {finished.returncode}: {tail}"}


def machine_description(device: str) -> dict[str, Any]:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), cpu)
    except OSError:
        pass
    described = {"cpu": cpu, "cores": os.cpu_count()}
    if device == "gpu" and shutil.which("nvidia-smi"):
        query = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"], capture_output=True, text=True
        )
        described["gpu"] = query.stdout.strip() or "nvidia-smi gave no GPU"
    return described


def package_version(name: str) -> Optional[str]:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def summarize(
    measurements: list[dict[str, Any]], configurations: list[tuple[str, str]]
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The median per configuration, and each one's ratio to the reference of its cell."""
    rows = []
    for implementation, cell in configurations:
        speeds = [
            entry["samples_per_second"]
            for entry in measurements
            if entry.get("implementation") == implementation and entry["cell"] == cell and "samples_per_second" in entry
        ]
        if speeds:
            rows.append(
                {"implementation": implementation, "cell": cell, "median": statistics.median(speeds), "runs": speeds}
            )
    references = {}
    for cell in dict.fromkeys(cell for _, cell in configurations):
        in_cell = [row for row in rows if row["cell"] == cell]
        if not in_cell:
            continue
        preferred = [row for row in in_cell if row["implementation"] == REFERENCE]
        reference = preferred[0] if preferred else max(in_cell, key=lambda row: row["median"])
        references[cell] = reference["implementation"]
        for row in in_cell:
            row["ratio"] = row["median"] / reference["median"]
    return rows, references


def write_json(
    arguments: argparse.Namespace,
    machine: dict[str, Any],
    versions: dict[str, str],
    data_summary: dict[str, Any],
    skipped: dict[str, str],
    failed: dict[tuple[str, str], str],
    measurements: list[dict[str, Any]],
    configurations: list[tuple[str, str]],
    complete: bool,
) -> None:
    """The whole report as JSON; rewritten after every measurement, so a stopped run keeps what it measured."""
    rows, references = summarize(measurements, configurations)
    report = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine,
        "devices": sorted({entry["device"] for entry in measurements if "device" in entry}),
        "versions": versions,
        "settings": {
            name: getattr(arguments, name)
            for name in ("samples", "maxlen", "batch_size", "repeats", "cells", "device", "warmup_batches")
        },
        "data": data_summary,
        "skipped": skipped,
        "failed": [
            {"implementation": implementation, "cell": cell, "error": error}
            for (implementation, cell), error in failed.items()
        ],
        "complete": complete,
        "references": references,
        "rows": [{**row, "label": LABELS[row["implementation"]]} for row in rows],
        "measurements": measurements,
    }
    temporary = Path(f"{arguments.json}.partial")
    temporary.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    temporary.replace(arguments.json)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=25_000, help="training rows per timed epoch (at most 25,000)")
    parser.add_argument("--maxlen", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--cells", nargs="+", choices=CELLS, default=["lstm", "gru"])
    parser.add_argument(
        "--implementations",
        nargs="+",
        choices=list(IMPLEMENTATIONS),
        default=list(IMPLEMENTATIONS),
        help="default: every installed one",
    )
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument(
        "--data-dir",
        default=os.environ.get("RNNBENCH_DATA_DIR"),
        help="folder holding imdb/train.tsv.gz (default: RNNBENCH_DATA_DIR)",
    )
    parser.add_argument("--json", help="write the measurements and the table to this file")
    parser.add_argument("--warmup-batches", type=int, default=3, help="full batches in the untimed warm-up fit")
    parser.add_argument(
        "--worker-timeout", type=float, default=900, help="seconds after which one measurement is abandoned"
    )
    # Internal: one measurement in this process (the parent starts these).
    parser.add_argument("--worker", choices=("keras", "pytorch"), help=argparse.SUPPRESS)
    parser.add_argument("--backend", choices=("tensorflow", "jax", "torch"), help=argparse.SUPPRESS)
    parser.add_argument("--cell", choices=CELLS, help=argparse.SUPPRESS)
    parser.add_argument("--npz", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.worker:
        run_worker(arguments)
        return
    for name in ("samples", "maxlen", "batch_size", "repeats"):
        if getattr(arguments, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if not arguments.data_dir:
        # Without a data folder rnnbench would download IMDB through Keras; a benchmark should not.
        parser.error("give --data-dir or set RNNBENCH_DATA_DIR to a folder holding imdb/train.tsv.gz")

    skipped = []
    if importlib.util.find_spec("keras") is None:
        skipped += [
            (name, "keras is not installed")
            for name, (worker, _, _) in IMPLEMENTATIONS.items()
            if worker == "keras" and name in arguments.implementations
        ]
    skipped += [
        (name, f"{module} is not installed")
        for name, (_, _, module) in IMPLEMENTATIONS.items()
        if name in arguments.implementations and importlib.util.find_spec(module) is None
    ]
    skipped_names = {name for name, _ in skipped}
    implementations = [name for name in arguments.implementations if name not in skipped_names]
    for name, reason in dict(skipped).items():
        print(f"skipped {LABELS[name]}: {reason}")
    configurations = [(implementation, cell) for cell in arguments.cells for implementation in implementations]
    if not configurations:
        raise SystemExit("nothing to measure: none of the chosen implementations is installed")

    machine = machine_description(arguments.device)
    versions = {
        "python": sys.version.split()[0],
        **{name: package_version(name) or "not installed" for name in PACKAGES},
    }
    measurements: list[dict[str, Any]] = []
    failed: dict[tuple[str, str], str] = {}
    with tempfile.TemporaryDirectory(prefix="bench_backends_") as folder:
        npz, data_summary = prepare_data(arguments.data_dir, arguments.samples, arguments.maxlen, Path(folder))
        print(
            f"data: {data_summary['rows']:,} IMDB training reviews at maxlen {arguments.maxlen} from {data_summary['source']} ({data_summary['seconds']:.1f} s)",
            flush=True,
        )
        for repeat in range(arguments.repeats):
            # Alternating the order keeps a slow drift of the machine from favouring one end.
            for implementation, cell in configurations if repeat % 2 == 0 else configurations[::-1]:
                if (implementation, cell) in failed:
                    continue
                result = {
                    "implementation": implementation,
                    "cell": cell,
                    "repeat": repeat + 1,
                    **measure(arguments, implementation, cell, npz),
                }
                measurements.append(result)
                if "error" in result:
                    failed[(implementation, cell)] = result["error"]
                    print(
                        f"repeat {repeat + 1}/{arguments.repeats}: {LABELS[implementation]}, {cell}: FAILED: {result['error']}",
                        flush=True,
                    )
                else:
                    print(
                        f"repeat {repeat + 1}/{arguments.repeats}: {LABELS[implementation]}, {cell}: {result['samples_per_second']:,.0f} samples/s"
                        f" ({result['seconds']:.1f} s, loss {result['loss']:.3f}, {result['device']})",
                        flush=True,
                    )
                if arguments.json:
                    write_json(
                        arguments,
                        machine,
                        versions,
                        data_summary,
                        dict(skipped),
                        failed,
                        measurements,
                        configurations,
                        complete=False,
                    )

    rows, references = summarize(measurements, configurations)
    devices = sorted({entry["device"] for entry in measurements if "device" in entry})

    print()
    print(
        f"machine: {machine['cpu']}, {machine['cores']} cores"
        + (f"; GPU: {machine['gpu']}" if "gpu" in machine else "")
    )
    print(f"devices used: {', '.join(devices) or 'none'}")
    print("versions: " + ", ".join(f"{name} {version}" for name, version in versions.items()))
    print(
        f"settings: {arguments.samples:,} samples, maxlen {arguments.maxlen}, batch size {arguments.batch_size}, "
        f"{arguments.repeats} repeat(s), device {arguments.device}; one timed epoch per measurement after a warm-up"
    )
    print()
    print("| implementation | cell | samples/s (median) | s/epoch | each repeat | vs reference |")
    print("| --- | --- | ---: | ---: | --- | ---: |")
    for row in rows:
        each = ", ".join(f"{speed:,.0f}" for speed in row["runs"])
        print(
            f"| {LABELS[row['implementation']]} | {row['cell']} | {row['median']:,.0f} | {arguments.samples / row['median']:.1f} | {each} | {row['ratio']:.2f}x |"
        )
    print()
    for cell, reference in references.items():
        note = (
            "" if reference == REFERENCE else " (Keras on TensorFlow was not measured, so the fastest is the reference)"
        )
        print(f"reference for {cell}: {LABELS[reference]}{note}")
    for (implementation, cell), error in failed.items():
        print(f"failed: {LABELS[implementation]}, {cell}: {error}")

    if arguments.json:
        write_json(
            arguments,
            machine,
            versions,
            data_summary,
            dict(skipped),
            failed,
            measurements,
            configurations,
            complete=True,
        )
        print(f"wrote {arguments.json}")


if __name__ == "__main__":
    main()
