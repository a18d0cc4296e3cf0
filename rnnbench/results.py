"""Recorded runs: one never-overwritten directory per run, plus an index that `compare` reads.

    runs/<run id>/config.json      the resolved config and the run's settings, written before training
    runs/<run id>/history.jsonl    one JSON object per finished epoch, rewritten after each epoch
    runs/<run id>/result.json      the final metrics, written once at the end
    runs/<run id>/model.keras      the best epoch's model, with vocabulary.json beside it
    runs/<run id>/test_predictions.npz  that model's class probabilities for every test row, and the labels
    runs/<run id>/checkpoint.npz   while unfinished: weights, optimizer state and progress after the last epoch
    runs/index.sqlite              one row per run: its status and its record, updated in transactions

Every file is written to a temporary name in the same folder and renamed into place, so a
crash leaves either the old file or the new one, never half of one; files get the permissions
a plain `open()` would give them (0666 less the umask), so a shared runs folder stays readable.

`RunDirectory` is the one place that knows these file names: every reader and writer of a run's
files goes through it. The index is checked as it is read (`read_records`, each row a
`record.RunRecord`): a file that is not a SQLite database, or a row whose record is not JSON or
lacks a field that `compare` and `report` read (or has it with the wrong type), is one line
naming the index file and the run. A 0-byte index is a new, empty one. This module
imports nothing heavy: `compare` must answer instantly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import errno
import fcntl
import io
import json
import os
import secrets
import socket
import sqlite3
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

from rnnbench.errors import InputError, RnnbenchError

# RECORD_FIELDS stays readable here, beside the index whose rows it checks.
from rnnbench.record import RECORD_FIELDS as RECORD_FIELDS, STATUSES, RecordError, RunRecord

INDEX_FILE = "index.sqlite"
CONFIG_FILE = "config.json"
HISTORY_FILE = "history.jsonl"
RESULT_FILE = "result.json"
MODEL_FILE = "model.keras"
VOCABULARY_FILE = "vocabulary.json"
CHECKPOINT_FILE = "checkpoint.npz"
TEST_PREDICTIONS_FILE = "test_predictions.npz"
# Not stored: how `read_records` reports a `running` run whose process is gone (killed, crashed).
INCOMPLETE = "incomplete"


class ResultsError(RnnbenchError):
    """Runs that can't be written or read, described in one line."""


class FolderError(ResultsError, InputError):
    """A folder given on the command line that can never be one (a symlink loop, a symlink to
    nothing): the input is wrong, exit code 2."""


def check_folder(path: Path, role: str) -> None:
    """Raise FolderError when `path`, or a folder on the way to it, is a symlink loop or a
    symlink to nothing: creating the folder would fail with "File exists" and reading it with
    "Too many levels of symbolic links", neither of which says what is wrong. `role` names the
    folder in the message ("the runs folder")."""
    steps = [*reversed(path.parents), path]
    for step in steps:
        if str(step) in (".", "/") or not step.is_symlink():
            continue
        try:
            os.stat(step)
        except OSError as error:
            where = f"{role} {path}" + ("" if step == path else f" lies under {step}, which")
            if error.errno == errno.ELOOP:
                raise FolderError(
                    f"{where} is a symlink loop (it leads back to itself); remove the link or give another folder"
                ) from None
            if error.errno == errno.ENOENT:
                raise FolderError(
                    f"{where} is a symlink to {os.readlink(step)}, which does not exist; create that folder or give another one"
                ) from None


def now(timespec: str = "seconds") -> str:
    """Now, in UTC, as ISO 8601 to `timespec` (datetime.isoformat's: "seconds", "microseconds")."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec=timespec)


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file and a rename; the old file stays whole on failure."""
    try:
        descriptor, temporary = _create_temporary(path)
    except OSError as error:
        raise ResultsError(f"cannot write {path}: {error.strerror or error}") from None
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise ResultsError(f"cannot write {path}: {error.strerror or error}") from None
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _create_temporary(path: Path) -> tuple[int, Path]:
    """A new file beside `path`, created with mode 0666 so that the umask decides, as for `open()`
    (`tempfile.mkstemp` would make it 0600, unreadable to anyone else sharing the runs folder)."""
    while True:
        temporary = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), temporary
        except FileExistsError:
            continue


def write_json(path: Path, value: Any) -> None:
    write_atomic(path, (json.dumps(value, indent=2, sort_keys=False) + "\n").encode("utf-8"))


class RunDirectory:
    """The files of one run."""

    def __init__(self, path: Path):
        self.path = path
        self.run_id = path.name

    def write_config(self, record: dict[str, Any]) -> None:
        write_json(self.path / CONFIG_FILE, record)

    def read_config(self) -> Any:
        """config.json as JSON: the run's record before training. OSError or ValueError if it
        can't be read (the caller words what that means for it)."""
        return json.loads((self.path / CONFIG_FILE).read_text(encoding="utf-8"))

    def read_record(self) -> RunRecord:
        """config.json as a RunRecord: OSError or ValueError if it is not JSON, RecordError if it
        lacks a field readers need."""
        return RunRecord.from_json(self.read_config())

    def has_config(self) -> bool:
        """Whether this is a run folder at all: config.json is its first file."""
        return (self.path / CONFIG_FILE).is_file()

    def write_history(self, epochs: Iterable[dict[str, Any]]) -> None:
        lines = "".join(json.dumps(epoch) + "\n" for epoch in epochs)
        write_atomic(self.path / HISTORY_FILE, lines.encode("utf-8"))

    @property
    def history_path(self) -> Path:
        return self.path / HISTORY_FILE

    def read_history(self, required: Iterable[str] = ()) -> list[dict[str, Any]]:
        """The run's epochs, one JSON object per line ([] without a history file); each line must
        hold a number for every key of `required` (a history written before a key was added may
        lack the others). A damaged file is a one-line ResultsError."""
        path = self.history_path
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError) as error:
            raise ResultsError(f"cannot read {path}: {getattr(error, 'strerror', None) or error}") from None
        history = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except (json.JSONDecodeError, RecursionError):
                raise ResultsError(
                    f"{path}: line {number} is not valid JSON; restore the file or remove the run"
                ) from None
            if not isinstance(entry, dict):
                raise ResultsError(f"{path}: line {number} is not a JSON object; restore the file or remove the run")
            for key in required:
                if isinstance(entry.get(key), bool) or not isinstance(entry.get(key), (int, float)):
                    raise ResultsError(f"{path}: line {number} has no number {key}; restore the file or remove the run")
            history.append(entry)
        return history

    def write_result(self, result: dict[str, Any]) -> None:
        write_json(self.path / RESULT_FILE, result)

    def has_result(self) -> bool:
        """Whether the run completed: result.json is written once, at the end."""
        return (self.path / RESULT_FILE).is_file()

    def read_result(self) -> RunRecord:
        """result.json, the completed run's whole record, as a RunRecord: OSError or ValueError
        if it is not JSON, RecordError if it lacks a field readers need."""
        return RunRecord.from_json(json.loads((self.path / RESULT_FILE).read_text(encoding="utf-8")))

    def write_vocabulary(
        self, words: Iterable[str], first_bigram_index: Optional[int] = None, bigrams: Iterable[tuple[str, str]] = ()
    ) -> None:
        stored: dict[str, Any] = {"padding_index": 0, "oov_index": 1, "first_word_index": 2, "words": list(words)}
        if first_bigram_index is not None:
            # model.ngrams 2: pairs of adjacent words, bigrams[i] having index first_bigram_index + i.
            stored.update(first_bigram_index=first_bigram_index, bigrams=[list(pair) for pair in bigrams])
        write_json(self.path / VOCABULARY_FILE, stored)

    def read_vocabulary(self) -> dict[str, Any]:
        """vocabulary.json as `write_vocabulary` stored it; OSError or ValueError if it can't be read."""
        return json.loads((self.path / VOCABULARY_FILE).read_text(encoding="utf-8"))

    def write_test_predictions(self, probabilities: Any, predicted: Any, labels: Any) -> None:
        """The best epoch's class probabilities for every test row (float16, compressed), the classes
        it predicted (exact: a float16 probability can round onto the 0.5 threshold) and the rows'
        labels, in the test split's order: what the verdict's multi-bootstrap resamples."""
        import numpy as np

        buffer = io.BytesIO()
        np.savez_compressed(
            buffer,
            probabilities=np.asarray(probabilities, dtype=np.float16),
            predicted=np.asarray(predicted, dtype=np.int32),
            labels=np.asarray(labels, dtype=np.int32),
        )
        write_atomic(self.path / TEST_PREDICTIONS_FILE, buffer.getvalue())

    def read_test_correct(self) -> Optional[Any]:
        """Per test row, whether the best epoch's model predicted its label (a bool array in the test
        split's order), or None for a run recorded before predictions were saved; a damaged file is
        one line."""
        import numpy as np

        path = self.path / TEST_PREDICTIONS_FILE
        if not path.exists():
            return None
        try:
            with np.load(path) as archive:
                return archive["predicted"] == archive["labels"]
        except (OSError, ValueError, KeyError) as error:
            raise ResultsError(f"cannot read {path}: {error}; train the run again with --force") from None

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

    def files(self, checkpoint: bool = False) -> dict[str, bytes]:
        """The run's files by their path in the folder (the checkpoint only if asked): what a
        worker that trained the run on another machine sends back."""
        return {
            path.relative_to(self.path).as_posix(): path.read_bytes()
            for path in sorted(self.path.rglob("*"))
            if path.is_file() and not path.name.endswith(".tmp") and (checkpoint or path.name != CHECKPOINT_FILE)
        }

    def write_files(self, files: dict[str, bytes]) -> None:
        """Write `files`, as `files()` gives them, into this folder, each atomically."""
        for name, data in files.items():
            path = self.path / name
            if Path(name).is_absolute() or ".." in Path(name).parts:
                raise ResultsError(f"{self.path}: refused a run file outside the folder: {name!r}")
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise ResultsError(f"cannot write {path}: {error.strerror or error}") from None
            write_atomic(path, data)

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE

    def has_model(self) -> bool:
        return self.model_path.is_file()

    def save_model(self, model: Any) -> None:
        # Keras insists on the .keras suffix, so the temporary name keeps it.
        temporary = self.path / ".model.tmp.keras"
        try:
            model.save(temporary)
            os.replace(temporary, self.model_path)
        except OSError as error:
            temporary.unlink(missing_ok=True)
            raise ResultsError(f"cannot write {self.model_path}: {error.strerror or error}") from None


def run_directory(runs_dir: Path, record: RunRecord) -> RunDirectory:
    """The folder of a run read from the index."""
    if record.run_id is None:
        raise ValueError(f"the record of {record.name} was not read from an index, so it names no run folder")
    return RunDirectory(runs_dir / record.run_id)


def missing_history(runs_dir: Path, record: RunRecord) -> Optional[str]:
    """What is gone of a recorded run that its learning curve is drawn from (its folder, or its
    history.jsonl), in words; None when nothing is. The index keeps the run's results either way."""
    run = run_directory(runs_dir, record)
    if not run.path.is_dir():
        return f"its folder {run.path} is missing"
    if not run.history_path.is_file():
        return f"{run.history_path} is missing"
    return None


def lock_path(runs_dir: Path, fingerprint: str) -> Path:
    """The file whose lock a process holds while it decides and trains the run of `fingerprint`."""
    return runs_dir / f".{fingerprint}.lock"


@contextlib.contextmanager
def run_lock(runs_dir: Path, fingerprint: str, waiting: Callable[[], None]) -> Iterator[None]:
    """Hold the lock of the run of `fingerprint`; while another process has it, call `waiting` once and wait.

    The holder removes the file before letting go, so runs/ keeps no lock files; a waiter that
    then gets the lock of a removed file opens the path again.
    """
    path = lock_path(runs_dir, fingerprint)
    waited = False
    while True:
        try:
            runs_dir.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as error:
            raise ResultsError(f"cannot lock {path}: {error.strerror or error}") from None
        try:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not waited:
                    waiting()
                    waited = True
                fcntl.flock(descriptor, fcntl.LOCK_EX)
            if _same_file(descriptor, path):
                break
        except BaseException:
            os.close(descriptor)
            raise
        os.close(descriptor)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):  # A lock file left behind is harmless: the next holder takes it.
            path.unlink()
        os.close(descriptor)


def _same_file(descriptor: int, path: Path) -> bool:
    try:
        named = path.stat()
    except FileNotFoundError:
        return False
    held = os.fstat(descriptor)
    return (held.st_dev, held.st_ino) == (named.st_dev, named.st_ino)


def new_run_id(name: str) -> str:
    """A new run's folder name: the time, the config's name and a random suffix, so no two are alike."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{name}-{secrets.token_hex(3)}"


def create_run(runs_dir: Path, name: str, run_id: Optional[str] = None) -> RunDirectory:
    """A new, empty directory for a run, named `run_id` when a driver chose it; an existing one is never reused."""
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
        path = runs_dir / (run_id or new_run_id(name))
        path.mkdir()
    except OSError as error:
        raise ResultsError(f"cannot create a run directory in {runs_dir}: {error.strerror or error}") from None
    return RunDirectory(path)


def _connect(runs_dir: Path, read_only: bool = False) -> sqlite3.Connection:
    path = runs_dir / INDEX_FILE
    if read_only:
        # A URI, so that SQLite opens the file read-only; `as_uri` escapes the characters that
        # a URI reads as its own (%, ?, #), which a folder name may hold.
        return sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True, timeout=30)
    connection = sqlite3.connect(path, timeout=30)
    try:
        connection.execute(
            "CREATE TABLE IF NOT EXISTS runs ("
            " run_id TEXT PRIMARY KEY, name TEXT NOT NULL, status TEXT NOT NULL,"
            " started TEXT NOT NULL, updated TEXT NOT NULL, record TEXT NOT NULL)"
        )
    except sqlite3.Error:
        connection.close()
        raise
    return connection


def check_writable(runs_dir: Path) -> None:
    """Create the runs folder and its index if needed and prove that a run can be recorded there,
    before any run folder is made: a row is written in a transaction that is rolled back."""
    path = runs_dir / INDEX_FILE
    check_folder(runs_dir, "the runs folder")
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ResultsError(f"cannot write {path}: {error.strerror or error}") from None
    try:
        connection = _connect(runs_dir)
        try:
            # BEGIN IMMEDIATE alone succeeds on a read-only database; only a written page (and
            # the journal file it needs beside the index) proves that a run can be recorded.
            connection.execute("BEGIN IMMEDIATE")
            connection.execute(
                "INSERT INTO runs (run_id, name, status, started, updated, record) VALUES (?, '', '', '', '', '')",
                (f".probe-{secrets.token_hex(4)}",),
            )
            connection.rollback()
        finally:
            connection.close()
    except sqlite3.Error as error:
        raise ResultsError(f"cannot write {path}: {error}") from None


def index_run(runs_dir: Path, run_id: str, name: str, status: str, record: dict[str, Any]) -> None:
    """Insert or update a run's row in one transaction."""
    if status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
    stamp = now()
    try:
        connection = _connect(runs_dir)
        try:
            with connection:
                connection.execute(
                    "INSERT INTO runs (run_id, name, status, started, updated, record) VALUES (?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT(run_id) DO UPDATE SET status = excluded.status, updated = excluded.updated,"
                    " record = excluded.record",
                    (run_id, name, status, stamp, stamp, json.dumps(record)),
                )
        finally:
            connection.close()
    except sqlite3.Error as error:
        raise ResultsError(f"cannot update {runs_dir / INDEX_FILE}: {error}") from None


def this_process() -> dict[str, Any]:
    """Stored with a running run, so that a reader can tell whether its process still lives."""
    return {"pid": os.getpid(), "host": socket.gethostname()}


def process_gone(process: Optional[dict[str, Any]]) -> bool:
    """Whether the process `this_process` described has ended (a running run's, a tuning trial's)."""
    if not process or process.get("host") != socket.gethostname():
        return False  # Another machine's process can't be checked from here.
    if not isinstance(process.get("pid"), int) or process["pid"] <= 0:
        return False  # Nor can one recorded without a usable process id.
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


def read_records(runs_dir: Path, statuses: Optional[Iterable[str]] = ("completed",)) -> list[RunRecord]:
    """Records of the indexed runs with one of `statuses` (all runs if None), oldest first.

    A run still marked `running` whose process is gone is reported as `incomplete`. Each record
    returned has been checked against `RECORD_FIELDS`; a damaged index or row raises ResultsError.
    """
    path = runs_dir / INDEX_FILE
    try:
        if path.stat().st_size == 0:
            return []  # Created, never written: a new index, as SQLite itself treats it.
    except FileNotFoundError:
        return []
    except OSError as error:
        check_folder(runs_dir, "the runs folder")
        raise ResultsError(f"cannot read {path}: {error.strerror or error}") from None
    try:
        connection = _connect(runs_dir, read_only=True)
        try:
            # Bytes, decoded below row by row, so that a row of damaged text is named by its run.
            connection.text_factory = bytes
            if (
                connection.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'runs'").fetchone()
                is None
            ):
                return []  # A database that no run has been recorded in yet.
            rows = connection.execute(
                "SELECT run_id, name, status, started, updated, record FROM runs ORDER BY started, run_id"
            ).fetchall()
        finally:
            connection.close()
    except sqlite3.Error as error:
        raise ResultsError(f"cannot read {path}: {error}") from None
    wanted = None if statuses is None else set(statuses)
    records = []
    for row in rows:
        run_id, name, status, started, updated, record = (_text(value) for value in row)
        if wanted is not None and status not in wanted and status != "running":
            continue  # Not wanted, whatever the record holds (a `running` run may turn out incomplete).
        try:
            entry = RunRecord.from_row(path, run_id, name, status, started, updated, record)
        except RecordError as error:
            raise ResultsError(str(error)) from None
        if entry.status == "running" and process_gone(entry.process):
            entry = dataclasses.replace(entry, status=INCOMPLETE)
        if wanted is None or entry.status in wanted:
            records.append(entry)
    return records


def _text(value: Any) -> Optional[str]:
    """A column's value as text; None for NULL or bytes that are not UTF-8."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return None
    return None if value is None else str(value)
