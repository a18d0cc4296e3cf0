"""Benchmark: one sweep trained three ways, side by side in one run: in this process (sequential),
with `--jobs 2` (two worker processes), and with `--cluster local` (a private Ray on this machine).

    RNNBENCH_DATA_DIR=../shared/data python scripts/bench_executors.py [--config configs/sweeps/lecture_table.yaml]

Each way trains every run of the sweep from scratch in a fresh runs folder of its own, as a
fresh `rnnbench run` subprocess, so the wall time includes starting Python, Keras and (for the
cluster) Ray. The tokenized corpus cache is warmed first, so no way pays for tokenizing. It
prints each way's wall time, its ratio to sequential, and checks that the three ways recorded
the same best validation accuracies (runs are deterministic on a CPU).
"""

import argparse
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WAYS = {"sequential": [], "--jobs 2": ["--jobs", "2"], "--cluster local": ["--cluster", "local"]}


def train(config: str, runs_dir: Path, options: list[str], limit: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "rnnbench", "run", config, "--runs-dir", str(runs_dir), *limit, *options],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def accuracies(runs_dir: Path) -> dict[tuple[str, int], float]:
    with sqlite3.connect(runs_dir / "index.sqlite") as connection:
        rows = connection.execute("SELECT name, record FROM runs WHERE status = 'completed'").fetchall()
    found = {}
    for name, text in rows:
        record = json.loads(text)
        found[(name, record["config"]["train"]["seed"])] = record["result"]["best_val_accuracy"]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/sweeps/lecture_table.yaml")
    parser.add_argument("--limit", type=int, help="data.limit for every run (a quicker check)")
    arguments = parser.parse_args()
    limit = ["--set", f"data.limit={arguments.limit}"] if arguments.limit else []
    with tempfile.TemporaryDirectory() as scratch:
        # Warm the tokenized-corpus cache with one short run, so no way below tokenizes.
        train(arguments.config, Path(scratch) / "warm", ["--set", "train.epochs=1", "--set", "train.seeds=[1]"], limit)
        seconds, recorded = {}, {}
        for way, options in WAYS.items():
            runs_dir = Path(scratch) / way.strip("-").replace(" ", "_")
            seconds[way] = train(arguments.config, runs_dir, options, limit)
            recorded[way] = accuracies(runs_dir)
            print(f"{way}: {len(recorded[way])} runs in {seconds[way]:.1f} s", flush=True)
    print()
    print(f"{'way':<18}{'wall s':>9}{'x sequential':>14}")
    for way, wall in seconds.items():
        print(f"{way:<18}{wall:>9.1f}{seconds['sequential'] / wall:>13.2f}x")
    same = all(recorded[way] == recorded["sequential"] for way in WAYS)
    print(f"\nthe same best val_accuracy for every run in all three ways: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
