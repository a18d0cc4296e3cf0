"""Several runs at once (`rnnbench run --jobs N`), each in a process of its own.

This module imports no Keras: a worker process must choose its backend (and how it takes GPU
memory) before Keras is imported, and the pool imports this module first in every worker.
"""

from __future__ import annotations

import concurrent.futures
import concurrent.futures.process
import multiprocessing
import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from rnnbench.errors import RnnbenchError


class WorkerError(RnnbenchError):
    """A worker process that died without a result (killed, out of memory), in one line."""


def _start_worker(backend_name: str) -> None:
    # Runs share one GPU: each takes memory as it needs it, instead of JAX's 75% or TensorFlow's
    # all of it up front, which would leave nothing for the second run.
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    from rnnbench.backend import select_backend

    select_backend(backend_name)


def _train(config: dict[str, Any], data_dir: Optional[str], runs_dir: Path, command: str, label: str, reuse: bool, resume: bool) -> dict[str, Any]:
    from rnnbench.config import Config
    from rnnbench.train import train_one

    # Progress bars from several processes would overwrite each other, so there are none.
    try:
        return train_one(
            Config.model_validate(config), data_dir, runs_dir, command, label, False, labelled_echo(label),
            progress_bar=False, reuse=reuse, resume=resume,
        )
    except KeyboardInterrupt:
        # The run, if one had started, is recorded as interrupted by now. Leave the pool, rather than
        # go on to the next queued run: Ctrl-C stops the whole sweep.
        sys.stdout.flush()
        os._exit(130)


def labelled_echo(label: str) -> Callable[[str], None]:
    """A worker's `echo`: every line names its run, since several runs print at once, and goes to
    standard output in one write, so that lines from several processes never mix within a line."""

    def echo(line: str) -> None:
        whole = f"{label} {line}\n".encode(sys.stdout.encoding or "utf-8", errors="backslashreplace")
        written = os.write(1, whole)
        while written < len(whole):  # Only a signal can cut a write to a pipe or terminal short.
            written += os.write(1, whole[written:])

    return echo


def train_many(
    pending: list[tuple[int, str, Any]],
    data_dir: Optional[str],
    runs_dir: Path,
    command: str,
    jobs: int,
    echo: Callable[[str], None],
    reuse: bool = True,
    resume: bool = True,
) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """Train (position, label, config) entries on `jobs` processes with `train.train_one`; yields each as it finishes."""
    backend_name = pending[0][2].backend
    context = multiprocessing.get_context("spawn")
    echo(f"training {len(pending)} runs, {jobs} at a time")
    with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context, initializer=_start_worker, initargs=(backend_name,)) as pool:
        futures = {
            pool.submit(_train, config.to_dict(), data_dir, runs_dir, command, label, reuse, resume): (position, label)
            for position, label, config in pending
        }
        try:
            for future in concurrent.futures.as_completed(futures):
                position, label = futures[future]
                try:
                    record = future.result()
                except concurrent.futures.process.BrokenProcessPool:
                    raise WorkerError(
                        f"a worker process died during {label} (killed, or out of memory); finished runs are"
                        " recorded: run the same command again to continue"
                    ) from None
                yield position, label, record
        except BaseException:
            # Ctrl-C reaches the workers too: each records its run as interrupted and exits.
            pool.shutdown(wait=False, cancel_futures=True)
            raise
