"""Benchmark: what writing TensorBoard events (rnnbench/tensorboard_events.py) costs a run.

    python scripts/bench_tensorboard.py [--epochs 100] [--repeats 5] [--epoch-seconds 0.4]
    RNNBENCH_DATA_DIR=/path/to/data python scripts/bench_tensorboard.py --config configs/lecture/pretrained.yaml

Without --config, the observer alone: --repeats runs of --epochs epochs (opened, one epoch_ended
per epoch with a history line of seven numbers, closed as completed) into a temporary folder,
each epoch's write and flush timed; the mean is set beside --epoch-seconds, by default the
fastest epoch of any shipped config (configs/lecture/pretrained.yaml, 0.4 s/epoch). Also, in a
fresh process that has already imported NumPy (as every training process has): the one-off cost
of the first `opened`, which imports tensorboard's protocol buffers (and must import neither
TensorFlow nor tensorboard.summary, which is checked).

With --config, a real run of that config (its own epochs, --force'd into a temporary runs
folder) with the observer's every call timed inside it, set beside the run's own mean epoch time.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

HISTORY_LINE = {
    "loss": 0.3412,
    "accuracy": 0.8571,
    "val_loss": 0.3723,
    "val_accuracy": 0.8402,
    "learning_rate": 0.001,
    "seconds": 0.41,
}
RECORD = {"command": "rnnbench run bench.yaml", "config": {"name": "bench", "model": {"cell": "gru"}}}

FIRST_OPEN = """
import numpy, sys, tempfile, time
from pathlib import Path
from rnnbench.tensorboard_events import TensorBoardEvents
started = time.perf_counter()
TensorBoardEvents().opened(Path(tempfile.mkdtemp()), {record!r}, [])
print(time.perf_counter() - started, "tensorflow" in sys.modules or "tensorboard.summary" in sys.modules)
"""


def observer_alone(epochs: int, repeats: int) -> list[float]:
    """Seconds of each epoch_ended call (write and flush), over every repeat."""
    from rnnbench.tensorboard_events import TensorBoardEvents

    timings = []
    with tempfile.TemporaryDirectory() as folder:
        for repeat in range(repeats):
            run_dir = Path(folder, f"run{repeat}")
            run_dir.mkdir()
            events = TensorBoardEvents(warn=lambda line: sys.exit(line))
            events.opened(run_dir, RECORD, [])
            for epoch in range(1, epochs + 1):
                started = time.perf_counter()
                events.epoch_ended({"epoch": epoch, **HISTORY_LINE}, [])
                timings.append(time.perf_counter() - started)
            events.closed(
                {
                    "status": "completed",
                    "result": {"best_val_accuracy": 0.84, "test_accuracy": 0.83, "epochs_run": epochs},
                }
            )
    return timings


def first_open() -> tuple[float, bool]:
    """Seconds of a fresh process's first `opened`, and whether it imported TensorFlow or tensorboard.summary."""
    completed = subprocess.run(
        [sys.executable, "-c", FIRST_OPEN.format(record=RECORD)], cwd=ROOT, capture_output=True, text=True, check=True
    )
    seconds, tensorflow = completed.stdout.split()
    return float(seconds), tensorflow == "True"


class _Timed:
    """Times every call of the observer it wraps."""

    def __init__(self, observer):
        self.observer, self.seconds = observer, {"opened": [], "epoch_ended": [], "closed": []}

    def __getattr__(self, method):
        def timed(*arguments):
            started = time.perf_counter()
            getattr(self.observer, method)(*arguments)
            self.seconds[method].append(time.perf_counter() - started)

        return timed


def in_a_real_run(config_path: str) -> None:
    from rnnbench import backend, config as config_module, observers

    config = config_module.load_config(config_path)
    backend.select_backend(config.backend)
    from rnnbench import train
    from rnnbench.tensorboard_events import TensorBoardEvents

    timed = _Timed(TensorBoardEvents())
    observers.for_run = lambda runs_dir: [timed]
    with tempfile.TemporaryDirectory() as runs:
        record = train.run_experiment(config, os.environ.get("RNNBENCH_DATA_DIR"), Path(runs), "bench", echo=print)
    epoch_seconds = record["result"]["mean_epoch_seconds"]
    per_epoch = statistics.mean(timed.seconds["epoch_ended"])
    print(
        f"\n{config_path} on {record['backend']}: {record['result']['epochs_run']} epochs of {epoch_seconds:.3f} s on average"
    )
    print(
        f"events per epoch: mean {per_epoch * 1e3:.3f} ms = {per_epoch / epoch_seconds:.4%} of an epoch;"
        f" opened {timed.seconds['opened'][0] * 1e3:.1f} ms, closed {timed.seconds['closed'][0] * 1e3:.2f} ms once per run"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--epoch-seconds",
        type=float,
        default=0.4,
        help="the epoch to compare with (default: configs/lecture/pretrained.yaml's 0.4 s, the fastest shipped)",
    )
    parser.add_argument("--config", help="instead, time the observer inside a real run of this config")
    arguments = parser.parse_args()
    if arguments.config:
        in_a_real_run(arguments.config)
        return
    timings = observer_alone(arguments.epochs, arguments.repeats)
    median, mean, slowest = statistics.median(timings), statistics.mean(timings), max(timings)
    opening, imported_tensorflow = min(first_open() for _ in range(3))
    print(
        json.dumps(
            {
                "epochs_timed": len(timings),
                "median_ms_per_epoch": round(median * 1e3, 4),
                "mean_ms_per_epoch": round(mean * 1e3, 4),
                "slowest_ms": round(slowest * 1e3, 4),
                "first_open_ms": round(opening * 1e3, 1),
                "first_open_imports_tensorflow_or_summary": imported_tensorflow,
            }
        )
    )
    print(
        f"events per epoch: median {median * 1e3:.3f} ms, mean {mean * 1e3:.3f} ms (slowest {slowest * 1e3:.3f} ms) ="
        f" {mean / arguments.epoch_seconds:.4%} of a {arguments.epoch_seconds} s epoch on average;"
        f" once per run, the first open (imports included) {opening * 1e3:.0f} ms;"
        f" TensorFlow or tensorboard.summary imported: {'yes' if imported_tensorflow else 'no'}"
    )


if __name__ == "__main__":
    main()
