"""Recorded runs: one never-overwritten directory per run, plus an index that `compare` reads.

    runs/<run id>/config.json      the resolved config and the run's settings, written before training
    runs/<run id>/history.jsonl    one JSON object per finished epoch, rewritten after each epoch
    runs/<run id>/result.json      the final metrics, written once at the end
    runs/<run id>/model.keras      the best epoch's model, with vocabulary.json beside it
    runs/<run id>/checkpoint.npz   while unfinished: weights, optimizer state and progress after the last epoch
    runs/index.sqlite              one row per run: its status and its record, updated in transactions

Every file is written to a temporary name in the same folder and renamed into place, so a
crash leaves either the old file or the new one, never half of one. This module imports
nothing heavy: `compare` must answer instantly.
"""

from __future__ import annotations

import datetime
import fcntl
import io
import json
import os
import secrets
import socket
import sqlite3
import tempfile
from pathlib import Path
from typing import Any, Iterable, Optional

from rnnbench.errors import RnnbenchError

INDEX_FILE = "index.sqlite"
CHECKPOINT_FILE = "checkpoint.npz"
LOCK_FILE = ".lock"
STATUSES = ("running", "completed", "failed", "interrupted", "diverged")
# Not stored: how `read_runs` reports a `running` run whose process is gone (killed, crashed).
INCOMPLETE = "incomplete"


class ResultsError(RnnbenchError):
    """Runs that can't be written or read, described in one line."""


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file and a rename; the old file stays whole on failure."""
    try:
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise ResultsError(f"cannot write {path}: {error.strerror or error}") from None
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        raise ResultsError(f"cannot write {path}: {error.strerror or error}") from None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_json(path: Path, value: Any) -> None:
    write_atomic(path, (json.dumps(value, indent=2, sort_keys=False) + "\n").encode("utf-8"))


class RunDirectory:
    """The files of one run."""

    def __init__(self, path: Path):
        self.path = path
        self.run_id = path.name

    def write_config(self, record: dict[str, Any]) -> None:
        write_json(self.path / "config.json", record)

    def write_history(self, epochs: Iterable[dict[str, Any]]) -> None:
        lines = "".join(json.dumps(epoch) + "\n" for epoch in epochs)
        write_atomic(self.path / "history.jsonl", lines.encode("utf-8"))

    def write_result(self, result: dict[str, Any]) -> None:
        write_json(self.path / "result.json", result)

    def write_vocabulary(self, words: Iterable[str]) -> None:
        write_json(self.path / "vocabulary.json", {"padding_index": 0, "oov_index": 1, "first_word_index": 2, "words": list(words)})

    def write_checkpoint(self, arrays: dict[str, Any]) -> None:
        import numpy as np

        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        write_atomic(self.path / CHECKPOINT_FILE, buffer.getvalue())

    def read_checkpoint(self) -> dict[str, Any]:
        import numpy as np

        path = self.path / CHECKPOINT_FILE
        try:
            with np.load(path) as archive:
                return {key: archive[key] for key in archive.files}
        except (OSError, ValueError) as error:
            raise ResultsError(f"cannot read {path}: {error}; start afresh with --no-resume") from None

    def has_checkpoint(self) -> bool:
        return (self.path / CHECKPOINT_FILE).exists()

    def remove_checkpoint(self) -> None:
        (self.path / CHECKPOINT_FILE).unlink(missing_ok=True)

    def lock(self) -> bool:
        """Take this run for this process (until it exits); False if another process has it."""
        try:
            descriptor = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise ResultsError(f"cannot lock {self.path}: {error.strerror or error}") from None
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            return False
        # The descriptor stays open on purpose: the lock lasts as long as this process.
        self._lock_descriptor = descriptor
        return True

    def unlock(self) -> None:
        descriptor = getattr(self, "_lock_descriptor", None)
        if descriptor is not None:
            if not self.has_checkpoint():
                # Finished: nothing is left to resume. A process still holding the old file checks
                # for the checkpoint after taking the lock, so removing it here is safe.
                (self.path / LOCK_FILE).unlink(missing_ok=True)
            os.close(descriptor)
            self._lock_descriptor = None

    def save_model(self, model: Any) -> None:
        # Keras insists on the .keras suffix, so the temporary name keeps it.
        temporary = self.path / ".model.tmp.keras"
        try:
            model.save(temporary)
            os.replace(temporary, self.path / "model.keras")
        except OSError as error:
            temporary.unlink(missing_ok=True)
            raise ResultsError(f"cannot write {self.path / 'model.keras'}: {error.strerror or error}") from None


def create_run(runs_dir: Path, name: str) -> RunDirectory:
    """A new, empty directory for a run; an existing one is never reused."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
        path = runs_dir / f"{stamp}-{name}-{secrets.token_hex(3)}"
        path.mkdir()
    except OSError as error:
        raise ResultsError(f"cannot create a run directory in {runs_dir}: {error.strerror or error}") from None
    return RunDirectory(path)


def _connect(runs_dir: Path, read_only: bool = False) -> sqlite3.Connection:
    path = runs_dir / INDEX_FILE
    if read_only:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    else:
        connection = sqlite3.connect(path, timeout=30)
        connection.execute(
            "CREATE TABLE IF NOT EXISTS runs ("
            " run_id TEXT PRIMARY KEY, name TEXT NOT NULL, status TEXT NOT NULL,"
            " started TEXT NOT NULL, updated TEXT NOT NULL, record TEXT NOT NULL)"
        )
    return connection


def index_run(runs_dir: Path, run_id: str, name: str, status: str, record: dict[str, Any]) -> None:
    """Insert or update a run's row in one transaction."""
    if status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
    stamp = now()
    try:
        connection = _connect(runs_dir)
        with connection:
            connection.execute(
                "INSERT INTO runs (run_id, name, status, started, updated, record) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(run_id) DO UPDATE SET status = excluded.status, updated = excluded.updated,"
                " record = excluded.record",
                (run_id, name, status, stamp, stamp, json.dumps(record)),
            )
        connection.close()
    except sqlite3.Error as error:
        raise ResultsError(f"cannot update {runs_dir / INDEX_FILE}: {error}") from None


def this_process() -> dict[str, Any]:
    """Stored with a running run, so that a reader can tell whether its process still lives."""
    return {"pid": os.getpid(), "host": socket.gethostname()}


def _process_gone(process: Optional[dict[str, Any]]) -> bool:
    if not process or process.get("host") != socket.gethostname():
        return False  # Another machine's process can't be checked from here.
    try:
        os.kill(int(process["pid"]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError, OverflowError):
        return False
    # A killed process that no parent has reaped yet still answers signals, as a zombie.
    try:
        with open(f"/proc/{int(process['pid'])}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def read_runs(runs_dir: Path, statuses: Optional[Iterable[str]] = ("completed",)) -> list[dict[str, Any]]:
    """Records of the indexed runs with one of `statuses` (all runs if None), oldest first.

    A run still marked `running` whose process is gone is reported as `incomplete`.
    """
    if not (runs_dir / INDEX_FILE).exists():
        return []
    try:
        connection = _connect(runs_dir, read_only=True)
        rows = connection.execute("SELECT run_id, status, started, updated, record FROM runs ORDER BY started, run_id").fetchall()
        connection.close()
    except sqlite3.Error as error:
        raise ResultsError(f"cannot read {runs_dir / INDEX_FILE}: {error}") from None
    wanted = None if statuses is None else set(statuses)
    records = []
    for run_id, status, started, updated, record in rows:
        entry = json.loads(record)
        if status == "running" and _process_gone(entry.get("process")):
            status = INCOMPLETE
        if wanted is not None and status not in wanted:
            continue
        entry.update(run_id=run_id, status=status, started=started, updated=updated)
        records.append(entry)
    return records
