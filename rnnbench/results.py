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

The index is checked as it is read: a file that is not a SQLite database, or a row whose record
is not JSON or lacks a field that `compare` and `report` read (or has it with the wrong type),
is one line naming the index file and the run. A 0-byte index is a new, empty one. This module
imports nothing heavy: `compare` must answer instantly.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import io
import json
import math
import os
import secrets
import socket
import sqlite3
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

from rnnbench.errors import InputError, RnnbenchError

INDEX_FILE = "index.sqlite"
CHECKPOINT_FILE = "checkpoint.npz"
TEST_PREDICTIONS_FILE = "test_predictions.npz"
STATUSES = ("running", "completed", "failed", "interrupted", "diverged", "pruned")
# Not stored: how `read_runs` reports a `running` run whose process is gone (killed, crashed).
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


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


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
        write_json(self.path / "config.json", record)

    def write_history(self, epochs: Iterable[dict[str, Any]]) -> None:
        lines = "".join(json.dumps(epoch) + "\n" for epoch in epochs)
        write_atomic(self.path / "history.jsonl", lines.encode("utf-8"))

    def write_result(self, result: dict[str, Any]) -> None:
        write_json(self.path / "result.json", result)

    def write_vocabulary(
        self, words: Iterable[str], first_bigram_index: Optional[int] = None, bigrams: Iterable[tuple[str, str]] = ()
    ) -> None:
        stored: dict[str, Any] = {"padding_index": 0, "oov_index": 1, "first_word_index": 2, "words": list(words)}
        if first_bigram_index is not None:
            # model.ngrams 2: pairs of adjacent words, bigrams[i] having index first_bigram_index + i.
            stored.update(first_bigram_index=first_bigram_index, bigrams=[list(pair) for pair in bigrams])
        write_json(self.path / "vocabulary.json", stored)

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

    def save_model(self, model: Any) -> None:
        # Keras insists on the .keras suffix, so the temporary name keeps it.
        temporary = self.path / ".model.tmp.keras"
        try:
            model.save(temporary)
            os.replace(temporary, self.path / "model.keras")
        except OSError as error:
            temporary.unlink(missing_ok=True)
            raise ResultsError(f"cannot write {self.path / 'model.keras'}: {error.strerror or error}") from None


def missing_history(runs_dir: Path, record: dict[str, Any]) -> Optional[str]:
    """What is gone of a recorded run that its learning curve is drawn from (its folder, or its
    history.jsonl), in words; None when nothing is. The index keeps the run's results either way."""
    folder = runs_dir / record["run_id"]
    if not folder.is_dir():
        return f"its folder {folder} is missing"
    if not (folder / "history.jsonl").is_file():
        return f"{folder / 'history.jsonl'} is missing"
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


def read_runs(runs_dir: Path, statuses: Optional[Iterable[str]] = ("completed",)) -> list[dict[str, Any]]:
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
        entry = _checked_record(path, run_id, name, status, started, updated, record)
        if entry["status"] == "running" and process_gone(entry.get("process")):
            entry["status"] = INCOMPLETE
        if wanted is None or entry["status"] in wanted:
            records.append(entry)
    return records


# Every field of a record that `compare`, `report` and the runner's reuse read, with its kind (see _KINDS).
# A present field must have its kind; `always` fields must be present in every record, and
# `completed` ones in completed runs (an unfinished run needs only its config to be resumed).
RECORD_FIELDS: list[tuple[str, str, str]] = [
    ("name", "text", "always"),
    ("config", "mapping", "always"),
    ("config.model", "mapping", "always"),
    ("config.model.cell", "text", "always"),
    ("config.model.layers", "integer", "optional"),
    ("config.model.embedding_dim", "integer", "optional"),
    ("config.model.units", "integer", "optional"),
    ("config.model.bidirectional", "flag", "optional"),
    ("config.train", "mapping", "always"),
    ("config.train.seed", "integer", "always"),
    ("group", "text", "optional"),
    ("parameters", "integer", "completed"),
    ("backend", "text", "completed"),
    ("device", "text", "completed"),
    ("run_dir", "text", "optional"),
    ("data", "mapping", "optional"),
    ("data.dataset", "text", "optional"),
    ("versions", "mapping of texts", "optional"),
    ("warnings", "list of texts", "optional"),
    ("process", "mapping", "optional"),
    ("process.pid", "integer", "optional"),
    ("process.host", "text", "optional"),
    ("result", "mapping", "completed"),
    ("result.best_val_accuracy", "share", "completed"),
    ("result.best_epoch", "integer", "optional"),
    ("result.val_macro_f1", "share", "optional"),
    ("result.test_accuracy", "share", "optional"),
    ("result.mean_epoch_seconds", "seconds", "optional"),
    ("result.train_seconds", "seconds", "optional"),
    ("result.wall_seconds", "seconds", "optional"),
    ("result.epochs_run", "integer", "optional"),
    ("result.collapsed", "flag", "optional"),
]


def _is_number(value: Any, low: float, high: float) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value) and low <= value <= high
    except OverflowError:  # An integer too large for a float.
        return False


_KINDS = {
    "text": ("a string", lambda value: isinstance(value, str)),
    # 64 bits, as SQLite stores them; parameter counts and seeds are far below.
    "integer": (
        "an integer",
        lambda value: isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63,
    ),
    "share": ("a number from 0 to 1", lambda value: _is_number(value, 0.0, 1.0)),
    # A year of seconds is far more than any run takes; larger numbers are damage, and would break the charts.
    "seconds": ("a number of seconds from 0 to 31536000", lambda value: _is_number(value, 0.0, 31_536_000.0)),
    "flag": ("true or false", lambda value: isinstance(value, bool)),
    "mapping": ("a JSON object", lambda value: isinstance(value, dict)),
    "mapping of texts": (
        "a JSON object of strings",
        lambda value: isinstance(value, dict) and all(isinstance(item, str) for item in value.values()),
    ),
    "list of texts": (
        "a list of strings",
        lambda value: isinstance(value, list) and all(isinstance(item, str) for item in value),
    ),
}


def _text(value: Any) -> Optional[str]:
    """A column's value as text; None for NULL or bytes that are not UTF-8."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return None
    return None if value is None else str(value)


def _checked_record(
    path: Path,
    run_id: Optional[str],
    name: Optional[str],
    status: Optional[str],
    started: Optional[str],
    updated: Optional[str],
    text: Optional[str],
) -> dict[str, Any]:
    """The row's record with its run id, status and times, or ResultsError naming the run and the damage."""

    def damaged(problem: str) -> ResultsError:
        shown = run_id if run_id is not None and run_id.isprintable() else json.dumps(run_id)
        return ResultsError(f"{path}: run {shown}: {problem}; remove the row or restore the file")

    if run_id is None or started is None or updated is None:
        raise damaged("its run id or times are not text")
    if status not in STATUSES:
        raise damaged(f"its status {_brief(status)} is not one of {', '.join(STATUSES)}")
    if text is None:
        raise damaged("the record is not UTF-8 text")
    try:
        record = json.loads(text)
    except json.JSONDecodeError as error:
        raise damaged(f"the record is not valid JSON (line {error.lineno}, column {error.colno})") from None
    except RecursionError:
        raise damaged("the record is not valid JSON (nested too deeply)") from None
    if not isinstance(record, dict):
        raise damaged("the record is not a JSON object")
    if "name" not in record and name is not None:
        record["name"] = name  # Records that leave it to the row's own column.
    for key, kind, required in RECORD_FIELDS:
        parent, _, last = key.rpartition(".")
        container = _lookup(record, parent) if parent else record
        if not isinstance(container, dict) or last not in container:
            if required == "always" or (required == "completed" and status == "completed"):
                raise damaged(f"the record has no {key}")
            continue
        description, fits = _KINDS[kind]
        if not fits(container[last]):
            raise damaged(f"{key} is {_brief(container[last])}, not {description}")
    record.update(run_id=run_id, status=status, started=started, updated=updated)
    return record


def _lookup(record: dict[str, Any], dotted: str) -> Any:
    value: Any = record
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _brief(value: Any) -> str:
    """A value as JSON on one line, cut short."""
    try:
        shown = json.dumps(value, ensure_ascii=True)
    except (RecursionError, ValueError):
        shown = f"a {type(value).__name__}"
    return shown if len(shown) <= 40 else shown[:37] + "..."
