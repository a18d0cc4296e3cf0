"""Claiming a config's run: reuse a completed run of it, go on with an unfinished one, or train anew.

A driver (rnnbench.executor) claims each run under the lock of its config's fingerprint before
it hands the run to a worker, so that a run trains once however many processes ask for it. This
module reads the runs folder's index and imports no Keras: a cluster's driver claims runs
without the runner.
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Callable, Iterator, Optional

from rnnbench import results
from rnnbench.config import Config, recorded_config
from rnnbench.record import RunRecord

# Unfinished runs that a new `rnnbench run` of the same config goes on with.
RESUMABLE = ("interrupted", results.INCOMPLETE, "failed")


def completed_runs(runs_dir: Path) -> dict[str, RunRecord]:
    """Completed runs by the fingerprint of their config (re-validated, so older records match too)."""
    found = {}
    for record in results.read_records(runs_dir):
        try:
            found[recorded_config(record.config).fingerprint()] = record
        except ValueError:
            continue  # A record from an incompatible version: it can't be reused.
    return found


def unfinished_runs(runs_dir: Path) -> dict[str, list[Path]]:
    """Folders of runs that stopped before their last epoch and kept a checkpoint, newest first, by fingerprint."""
    found: dict[str, list[Path]] = {}
    for record in reversed(results.read_records(runs_dir, RESUMABLE)):
        run = results.run_directory(runs_dir, record)
        if not run.has_checkpoint():
            continue
        try:
            fingerprint = recorded_config(record.config).fingerprint()
        except ValueError:
            continue
        found.setdefault(fingerprint, []).append(run.path)
    return found


@dataclasses.dataclass(frozen=True)
class Claim:
    """What the run of a config does, decided under its lock: reuse `completed` (a completed
    run's record), or train, going on from `unfinished` (a run folder with a checkpoint) if any."""

    completed: Optional[RunRecord] = None
    unfinished: Optional[Path] = None


@contextlib.contextmanager
def claim(config: Config, runs_dir: Path, reuse: bool, resume: bool, say: Callable[[str], None]) -> Iterator[Claim]:
    """Hold the lock of `config`'s run while deciding what it does and for as long as the block
    trains it, so that the run trains once however many processes ask for it. While another
    process holds the lock, `say` says so once and this one waits; a reused run is said too."""
    fingerprint = config.fingerprint()
    with results.run_lock(
        runs_dir, fingerprint, lambda: say("the same run is being trained by another process; waiting for it to finish")
    ):
        completed = completed_runs(runs_dir).get(fingerprint) if reuse else None
        if completed is not None:
            say(reuse_note(completed))
            yield Claim(completed=completed)
            return
        unfinished = unfinished_runs(runs_dir).get(fingerprint, []) if resume else []
        yield Claim(unfinished=unfinished[0] if unfinished else None)


def reuse_note(record: RunRecord) -> str:
    """What a sweep says of a run it reuses."""
    return f"already completed in {record.run_dir}; reused, not retrained (--force trains it again)"
