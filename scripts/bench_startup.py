"""Benchmark: start-up time of `rnnbench --help` and `rnnbench compare` (goal: under 0.5 s, without importing TensorFlow).

    python scripts/bench_startup.py [--repeats 5] [--runs-dir runs]

Each command runs as a fresh subprocess, as a user would start it, and its wall time is the
median over --repeats runs, all commands side by side in each repeat. `compare` reads an
empty temporary runs folder, and also each --runs-dir given (read only: `compare` opens the
index in SQLite's read-only mode). A separate run of each command under `python -X importtime`
lists the heavy frameworks it imported (TensorFlow, Keras, JAX, PyTorch) and its slowest
top-level imports.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL_SECONDS = 0.5
HEAVY_PACKAGES = ("tensorflow", "keras", "jax", "torch")
# Runs the click group in-process so that -X importtime sees every import the command makes.
IMPORT_CHECK = """
import sys
from rnnbench.cli import main
try:
    main(sys.argv[1:], standalone_mode=False)
except SystemExit:
    pass
"""


def rnnbench_command() -> list[str]:
    """The console script beside this Python (what a user runs), or `python -m rnnbench`."""
    script = Path(sys.executable).with_name("rnnbench")
    if script.exists():
        return [str(script)]
    found = shutil.which("rnnbench")
    return [found] if found else [sys.executable, "-m", "rnnbench"]


def wall_seconds(command: list[str]) -> float:
    started = time.perf_counter()
    finished = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - started
    if finished.returncode != 0:
        raise SystemExit(
            f"{' '.join(command)} failed with exit code {finished.returncode}: {finished.stderr.strip()[-500:]}"
        )
    return seconds


def imports(arguments: list[str]) -> tuple[list[str], list[tuple[str, float]]]:
    """The heavy packages a command imports, and its three slowest top-level imports (name, seconds)."""
    finished = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", IMPORT_CHECK, *arguments],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    imported = set()
    top_level = []
    for line in finished.stderr.splitlines():
        # "import time: self [us] | cumulative | imported package", nested imports indented.
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|", 2)
        if not cumulative.strip().isdigit():
            continue  # The header line.
        imported.add(name.strip().split(".")[0])
        if not name[1:].startswith(" "):
            top_level.append((name.strip(), int(cumulative) / 1e6))
    heavy = [package for package in HEAVY_PACKAGES if package in imported]
    return heavy, sorted(top_level, key=lambda entry: -entry[1])[:3]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--runs-dir",
        action="append",
        default=[],
        help="also time `compare` on this runs folder (repeatable), e.g. runs",
    )
    arguments = parser.parse_args()
    if arguments.repeats < 1:
        parser.error("--repeats must be at least 1")

    program = rnnbench_command()
    with tempfile.TemporaryDirectory(prefix="bench_startup_runs_") as empty_runs:
        commands = {
            "rnnbench --help": ["--help"],
            "rnnbench compare (empty runs folder)": ["compare", "--runs-dir", empty_runs],
        }
        for runs_dir in arguments.runs_dir:
            if not Path(runs_dir).is_dir():
                parser.error(f"--runs-dir {runs_dir}: not a folder")
            commands[f"rnnbench compare --runs-dir {runs_dir}"] = ["compare", "--runs-dir", runs_dir]

        timings: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(arguments.repeats):
            for name, command_arguments in commands.items():
                timings[name].append(wall_seconds(program + command_arguments))
        checks = {name: imports(command_arguments) for name, command_arguments in commands.items()}

    print(f"machine: {os.cpu_count()} cores; Python {sys.version.split()[0]}; program: {' '.join(program)}")
    print(f"goal: under {GOAL_SECONDS} s (median of {arguments.repeats}), no TensorFlow or Keras import")
    print()
    print("| command | median s | best s | heavy imports | slowest top-level imports | goal |")
    print("| --- | ---: | ---: | --- | --- | --- |")
    for name, seconds in timings.items():
        median = statistics.median(seconds)
        heavy, slowest = checks[name]
        slow = ", ".join(f"{module} {cumulative:.2f} s" for module, cumulative in slowest)
        met = median < GOAL_SECONDS and not {"tensorflow", "keras"} & set(heavy)
        print(
            f"| {name} | {median:.3f} | {min(seconds):.3f} | {', '.join(heavy) or 'none'} | {slow} | {'met' if met else 'NOT met'} |"
        )


if __name__ == "__main__":
    main()
