"""The run record: what the index row and result.json hold of one run, as a typed, frozen value.

    JSON (an index row, result.json, a runner's record) -> RunRecord.from_json / from_row -> RunRecord
    RunRecord.to_json() -> the same JSON, key for key and in the same order

The fields that readers use are typed attributes (`record.result.test_accuracy`, `record.seed`);
every other key, and a key whose value has not the type its field needs, is kept in `extra`, so
`to_json` gives back exactly the JSON that was read and nothing is lost. A record is checked once,
as it is made: a field that `compare`, `report` and the runner's reuse read must be present where
`RECORD_FIELDS` says and have its kind, or one line says which field and what it holds instead.
This module imports nothing heavy: `compare` must answer instantly.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from rnnbench.errors import RnnbenchError

STATUSES = ("running", "completed", "failed", "interrupted", "diverged", "pruned")


class RecordError(RnnbenchError):
    """A record that lacks a field readers need, or has one of the wrong kind, in one line."""


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


def _is_any_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_integer(value: Any) -> bool:
    # 64 bits, as SQLite stores them; parameter counts and seeds are far below.
    return isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63


_KINDS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "text": ("a string", lambda value: isinstance(value, str)),
    "integer": ("an integer", _is_integer),
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
    # Kinds of fields that are typed but not checked (no reader needs them to hold): a value of
    # another kind stays in `extra` rather than in the field.
    "number": ("a number", _is_any_number),
    "list of mappings": (
        "a list of JSON objects",
        lambda value: isinstance(value, list) and all(isinstance(item, dict) for item in value),
    ),
    "matrix": (
        "a list of lists of integers",
        lambda value: (
            isinstance(value, list) and all(isinstance(row, list) and all(map(_is_integer, row)) for row in value)
        ),
    ),
}


def _frozen(value: Any) -> Any:
    """A JSON value as a field keeps it: lists as tuples (all the way down), objects as copies."""
    if isinstance(value, list):
        return tuple(_frozen(item) for item in value)
    return copy.deepcopy(value) if isinstance(value, dict) else value


def _thawed(value: Any) -> Any:
    """A field's value as JSON again: tuples as lists, objects as copies the caller may change."""
    if isinstance(value, tuple):
        return [_thawed(item) for item in value]
    return copy.deepcopy(value) if isinstance(value, dict) else value


def _split(value: Mapping[str, Any], kinds: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """`value`'s keys as (typed fields, extra): a key with a field of its kind goes to the fields."""
    typed, extra = {}, {}
    for key, item in value.items():
        if key in kinds and _KINDS[kinds[key]][1](item):
            typed[key] = _frozen(item)
        else:
            extra[key] = copy.deepcopy(item)
    return typed, extra


def _to_json(value: Any, kinds: Mapping[str, str]) -> dict[str, Any]:
    """A record's or result's JSON: its keys in the order read, then fields set since (by
    `dataclasses.replace`) and not read."""
    defaults = {item.name: item.default for item in dataclasses.fields(value)}
    out: dict[str, Any] = {}
    for key in value.key_order:
        out[key] = copy.deepcopy(value.extra[key]) if key in value.extra else _json_of(getattr(value, key))
    for key in kinds:
        if key not in out and getattr(value, key) != defaults[key]:
            out[key] = _json_of(getattr(value, key))
    for key, item in value.extra.items():
        out.setdefault(key, copy.deepcopy(item))
    return out


def _json_of(value: Any) -> Any:
    return value.to_json() if isinstance(value, RunResult) else _thawed(value)


# The typed fields of a run's result, with their kinds (see _KINDS).
RESULT_KINDS = {
    "best_val_accuracy": "share",
    "best_epoch": "integer",
    "best_val_loss": "number",
    "val_macro_f1": "share",
    "test_accuracy": "share",
    "test_loss": "number",
    "test_macro_f1": "number",
    "val_confusion": "matrix",
    "test_confusion": "matrix",
    "epochs_run": "integer",
    "stopped_early": "flag",
    "mean_epoch_seconds": "seconds",
    "train_seconds": "seconds",
    "wall_seconds": "seconds",
    "collapsed": "flag",
}


@dataclass(frozen=True)
class RunResult:
    """A run's final metrics (result.json's `result`). Every field is None where the record has
    none: runs recorded before a metric existed, and diverged or pruned runs (epochs_run alone)."""

    best_val_accuracy: Optional[float] = None
    best_epoch: Optional[int] = None
    best_val_loss: Optional[float] = None
    val_macro_f1: Optional[float] = None
    # At the best-validation epoch, scored once on the test split.
    test_accuracy: Optional[float] = None
    test_loss: Optional[float] = None
    test_macro_f1: Optional[float] = None
    # Rows are true classes and columns predicted ones, in the order of data.class_names.
    val_confusion: Optional[tuple[tuple[int, ...], ...]] = None
    test_confusion: Optional[tuple[tuple[int, ...], ...]] = None
    epochs_run: Optional[int] = None
    stopped_early: Optional[bool] = None
    mean_epoch_seconds: Optional[float] = None
    train_seconds: Optional[float] = None
    wall_seconds: Optional[float] = None
    collapsed: Optional[bool] = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    key_order: tuple[str, ...] = field(default=(), repr=False)

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> "RunResult":
        typed, extra = _split(value, RESULT_KINDS)
        return cls(**typed, extra=extra, key_order=tuple(value))

    def to_json(self) -> dict[str, Any]:
        return _to_json(self, RESULT_KINDS)

    def value(self, key: str) -> Any:
        """The metric named `key` (an outcome such as "test_accuracy", given as a setting), None if absent."""
        return self.extra[key] if key in self.extra or key not in RESULT_KINDS else getattr(self, key)


# The typed fields of a run record, with their kinds (see _KINDS); `result` is a RunResult.
RECORD_KINDS = {
    "run_id": "text",
    "name": "text",
    "status": "text",
    "started": "text",
    "updated": "text",
    "config": "mapping",
    "fingerprint": "text",
    "group": "text",
    "command": "text",
    "backend": "text",
    "backend_choice": "text",
    "device": "text",
    "versions": "mapping of texts",
    "parameters": "integer",
    "kernels": "list of mappings",
    "data": "mapping",
    "warnings": "list of texts",
    "embedding": "mapping",
    "encoder": "mapping",
    "run_dir": "text",
    "resumed": "list of mappings",
    "process": "mapping",
    "result": "mapping",
    "error": "text",
    "history": "list of mappings",
}


@dataclass(frozen=True)
class RunRecord:
    """One run as the index and result.json hold it. Make one with `from_json` or `from_row`,
    which check it; `to_json` gives back its JSON unchanged.

    `run_id`, `started` and `updated` are None in a record the runner has just returned (not read
    back from the index), `status` in a run's config.json. Mappings (config, data, ...) are typed
    read-only; lists are tuples.
    """

    name: str
    # The resolved config as `Config.to_dict` wrote it; `cell`, `seed` and the like read it.
    config: Mapping[str, Any]
    run_id: Optional[str] = None
    status: Optional[str] = None
    started: Optional[str] = None
    updated: Optional[str] = None
    fingerprint: Optional[str] = None
    # The config's fingerprint without its seed, as the version that trained the run computed it.
    group: Optional[str] = None
    command: Optional[str] = None
    backend: Optional[str] = None
    backend_choice: Optional[str] = None
    device: Optional[str] = None
    versions: Optional[Mapping[str, str]] = None
    parameters: Optional[int] = None
    kernels: Optional[tuple[Mapping[str, Any], ...]] = None
    # The data summary: dataset, class names, split sizes.
    data: Optional[Mapping[str, Any]] = None
    # One line each, about what could make the result mean less than it seems.
    warnings: tuple[str, ...] = ()
    embedding: Optional[Mapping[str, Any]] = None
    # The pretrained language model the encoder started from (model.pretrained_encoder), and its cost.
    encoder: Optional[Mapping[str, Any]] = None
    run_dir: Optional[str] = None
    resumed: Optional[tuple[Mapping[str, Any], ...]] = None
    # A running run's process (pid, host), so that a reader can tell whether it still lives.
    process: Optional[Mapping[str, Any]] = None
    result: Optional[RunResult] = None
    # Why a failed run failed, or what ended a pruned one.
    error: Optional[str] = None
    # The epochs of an interrupted or failed run (a finished run's are in its history.jsonl).
    history: Optional[tuple[Mapping[str, Any], ...]] = None
    # Every other key, and a key whose value is not of its field's kind, as read.
    extra: Mapping[str, Any] = field(default_factory=dict)
    key_order: tuple[str, ...] = field(default=(), repr=False)

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> "RunRecord":
        """The record `value` holds (a copy: changing `value` later changes nothing here), checked
        against RECORD_FIELDS, with `completed` fields required when its status is completed;
        RecordError says what is missing or wrong."""
        if not isinstance(value, Mapping):
            raise RecordError("the record is not a JSON object")
        problem = check_fields(value, value.get("status"))
        if problem:
            raise RecordError(problem)
        return cls._checked(value)

    @classmethod
    def from_row(
        cls,
        path: Path,
        run_id: Optional[str],
        name: Optional[str],
        status: Optional[str],
        started: Optional[str],
        updated: Optional[str],
        text: Optional[str],
    ) -> "RunRecord":
        """The record of an index row (its columns as text, None where NULL or not UTF-8), with its
        run id, status and times; RecordError names the index file, the run and the damage."""

        def damaged(problem: str) -> RecordError:
            shown = run_id if run_id is not None and run_id.isprintable() else json.dumps(run_id)
            return RecordError(f"{path}: run {shown}: {problem}; remove the row or restore the file")

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
        problem = check_fields(record, status)
        if problem:
            raise damaged(problem)
        record.update(run_id=run_id, status=status, started=started, updated=updated)
        return cls._checked(record)

    @classmethod
    def _checked(cls, value: Mapping[str, Any]) -> "RunRecord":
        typed, extra = _split(value, RECORD_KINDS)
        if "result" in typed:
            typed["result"] = RunResult.from_json(typed["result"])
        return cls(**typed, extra=extra, key_order=tuple(value))

    def to_json(self) -> dict[str, Any]:
        """The record as JSON, exactly as it was read (a fresh copy, the caller's to change)."""
        return _to_json(self, RECORD_KINDS)

    def changed(self, **changes: Any) -> "RunRecord":
        """`dataclasses.replace(self, **changes)`, whose JSON has the keys set here for the first
        time after the record's own, in the order given, as a dict that had them set would: the
        runner writes a run's files from its record and they keep the order they always had."""
        new_keys = tuple(key for key in changes if key not in self.key_order)
        extra = {key: value for key, value in self.extra.items() if key not in changes}
        return dataclasses.replace(self, **changes, extra=extra, key_order=self.key_order + new_keys)

    @property
    def cell(self) -> str:
        return self.config["model"]["cell"]

    @property
    def seed(self) -> int:
        return self.config["train"]["seed"]

    @property
    def layers(self) -> Optional[int]:
        return self.config["model"].get("layers")

    @property
    def units(self) -> Optional[int]:
        return self.config["model"].get("units")

    @property
    def embedding_dim(self) -> Optional[int]:
        return self.config["model"].get("embedding_dim")

    @property
    def bidirectional(self) -> bool:
        return self.config["model"].get("bidirectional") is True

    @property
    def dataset(self) -> Optional[str]:
        return None if self.data is None else self.data.get("dataset")

    @property
    def class_names(self) -> tuple[str, ...]:
        """The classes in the order of the model's outputs (KeyError in a record without them)."""
        return tuple((self.data or {})["class_names"])

    def metric(self, key: str) -> Any:
        """The result's metric named `key` (see RunResult.value), None without a result."""
        return None if self.result is None else self.result.value(key)


def check_fields(record: Mapping[str, Any], status: Optional[str]) -> Optional[str]:
    """What is wrong with `record` by RECORD_FIELDS, in words, or None."""
    for key, kind, required in RECORD_FIELDS:
        parent, _, last = key.rpartition(".")
        container = _lookup(record, parent) if parent else record
        if not isinstance(container, Mapping) or last not in container:
            if required == "always" or (required == "completed" and status == "completed"):
                return f"the record has no {key}"
            continue
        description, fits = _KINDS[kind]
        if not fits(container[last]):
            return f"{key} is {_brief(container[last])}, not {description}"
    return None


def _lookup(record: Mapping[str, Any], dotted: str) -> Any:
    value: Any = record
    for part in dotted.split("."):
        if not isinstance(value, Mapping):
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
