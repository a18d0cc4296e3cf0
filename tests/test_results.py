"""The run index and run files: damaged, empty, read-only and oddly named indexes, and file permissions."""

import json
import os
import sqlite3
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rnnbench import results
from rnnbench.cli import main


def completed_record(name: str = "gru", seed: int = 1, accuracy: float = 0.85) -> dict:
    return {
        "name": name,
        "data": {"dataset": "imdb"},
        "config": {
            "model": {"cell": "gru", "layers": 1, "embedding_dim": 50, "units": 50, "bidirectional": False},
            "train": {"seed": seed},
        },
        "parameters": 516_965,
        "backend": "tensorflow",
        "device": "CPU: test",
        "result": {
            "best_val_accuracy": accuracy,
            "best_epoch": 2,
            "test_accuracy": accuracy - 0.01,
            "mean_epoch_seconds": 3.0,
        },
    }


def put_row(runs_dir: Path, run_id, record, status="completed", name="gru") -> None:
    """A row written as it is, bypassing `index_run`: how a damaged index looks to a reader."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    results.index_run(runs_dir, "run-good", "gru", "completed", completed_record())
    connection = sqlite3.connect(runs_dir / results.INDEX_FILE)
    with connection:
        connection.execute(
            "INSERT INTO runs (run_id, name, status, started, updated, record) VALUES (?, ?, ?, ?, ?, ?)",
            (run_id, name, status, "2026-11-28T10:00:00+00:00", "2026-11-28T10:00:00+00:00", record),
        )
    connection.close()


def without(record: dict, dotted: str) -> dict:
    record = json.loads(json.dumps(record))
    *parents, last = dotted.split(".")
    container = record
    for part in parents:
        container = container[part]
    del container[last]
    return record


def replaced(record: dict, dotted: str, value) -> dict:
    record = json.loads(json.dumps(record))
    *parents, last = dotted.split(".")
    container = record
    for part in parents:
        container = container[part]
    container[last] = value
    return record


DAMAGED_ROWS = [
    ("{not json", "the record is not valid JSON (line 1, column 2)"),
    (b"\xff\xfe binary", "the record is not UTF-8 text"),
    ("[1, 2]", "the record is not a JSON object"),
    (json.dumps(without(completed_record(), "config.train.seed")), "the record has no config.train.seed"),
    (json.dumps(without(completed_record(), "result")), "the record has no result"),
    (json.dumps(without(completed_record(), "result.best_val_accuracy")), "the record has no result.best_val_accuracy"),
    (json.dumps(without(completed_record(), "device")), "the record has no device"),
    (json.dumps(replaced(completed_record(), "config.train.seed", "1")), 'config.train.seed is "1", not an integer'),
    (json.dumps(replaced(completed_record(), "parameters", 5.5)), "parameters is 5.5, not an integer"),
    (
        json.dumps(replaced(completed_record(), "result.best_val_accuracy", None)),
        "result.best_val_accuracy is null, not a number from 0 to 1",
    ),
    (json.dumps(replaced(completed_record(), "config.model", "gru")), 'config.model is "gru", not a JSON object'),
    (
        json.dumps(replaced(completed_record(), "result.best_val_accuracy", 1.5)),
        "result.best_val_accuracy is 1.5, not a number from 0 to 1",
    ),
    (
        json.dumps(replaced(completed_record(), "result.mean_epoch_seconds", 1e300)),
        "result.mean_epoch_seconds is 1e+300, not a number of seconds from 0 to 31536000",
    ),
    (
        json.dumps(replaced(completed_record(), "parameters", 10**30)),
        "parameters is 1000000000000000000000000000000, not an integer",
    ),
    (
        json.dumps(replaced(completed_record(), "warnings", "collapsed")),
        'warnings is "collapsed", not a list of strings',
    ),
    (
        json.dumps(replaced(completed_record(), "result.test_accuracy", "x" * 60)),
        'result.test_accuracy is "' + "x" * 36 + "..., not a number from 0 to 1",
    ),
]


@pytest.mark.parametrize("record, problem", DAMAGED_ROWS)
def test_a_damaged_row_is_one_line_naming_the_index_and_the_run(tmp_path, record, problem):
    runs_dir = tmp_path / "runs"
    put_row(runs_dir, "20261128-100000-gru-ab12cd", record)
    expected = (
        f"{runs_dir / 'index.sqlite'}: run 20261128-100000-gru-ab12cd: {problem}; remove the row or restore the file"
    )
    with pytest.raises(results.ResultsError) as raised:
        results.read_records(runs_dir)
    assert str(raised.value) == expected
    for command in (
        ["compare"],
        ["compare", "--all"],
        ["compare", "--format", "json"],
        ["report", "--out", str(tmp_path / "report")],
    ):
        outcome = CliRunner().invoke(main, [*command, "--runs-dir", str(runs_dir)])
        assert (outcome.exit_code, outcome.output) == (1, f"Error: {expected}\n"), command
    assert not (tmp_path / "report").exists()


def test_an_unfinished_run_needs_only_its_config(tmp_path):
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    minimal = {"config": {"model": {"cell": "gru"}, "train": {"seed": 3}}}
    results.index_run(runs_dir, "run-interrupted", "gru", "interrupted", minimal)
    [record] = results.read_records(runs_dir, statuses=None)
    # The name comes from the row when the record leaves it out.
    assert (record.name, record.status, record.config) == ("gru", "interrupted", minimal["config"])
    listing = CliRunner().invoke(main, ["compare", "--all", "--runs-dir", str(runs_dir)]).output.splitlines()
    assert listing[2].split() == [
        "gru",
        "-",
        "gru",
        "-",
        "-",
        "-",
        "-",
        "-",
        "-",
        "-",
        "-",
        "-",
        "-",
        "-",
        "interrupted",
        "run-interrupted",
    ]


def test_a_run_id_that_is_not_printable_is_shown_as_json(tmp_path):
    runs_dir = tmp_path / "runs"
    put_row(runs_dir, "run\nwith a newline", "{}")
    with pytest.raises(results.ResultsError) as raised:
        results.read_records(runs_dir)
    assert (
        str(raised.value)
        == f'{runs_dir / "index.sqlite"}: run "run\\nwith a newline": the record has no config; remove the row or restore the file'
    )


def test_a_bad_status_is_named(tmp_path):
    runs_dir = tmp_path / "runs"
    put_row(runs_dir, "run-odd", json.dumps(completed_record()), status="finished")
    with pytest.raises(results.ResultsError) as raised:
        results.read_records(runs_dir, statuses=None)
    assert str(raised.value) == (
        f'{runs_dir / "index.sqlite"}: run run-odd: its status "finished" is not one of running, completed, failed,'
        " interrupted, diverged, pruned; remove the row or restore the file"
    )


def test_an_index_that_is_not_a_database_is_one_line(tmp_path):
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    (runs_dir / "index.sqlite").write_bytes(b"this is not a SQLite database, but some other file" * 100)
    for command in (["compare"], ["report", "--out", str(tmp_path / "report")]):
        outcome = CliRunner().invoke(main, [*command, "--runs-dir", str(runs_dir)])
        assert (outcome.exit_code, outcome.output) == (
            1,
            f"Error: cannot read {runs_dir / 'index.sqlite'}: file is not a database\n",
        )


def test_an_empty_index_file_is_a_new_index(tmp_path):
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    (runs_dir / "index.sqlite").write_bytes(b"")
    assert results.read_records(runs_dir, statuses=None) == []
    outcome = CliRunner().invoke(main, ["compare", "--runs-dir", str(runs_dir)])
    assert (outcome.exit_code, outcome.output) == (
        0,
        f"No completed runs in {runs_dir}/ yet; train one with: rnnbench run CONFIG.yaml\n",
    )
    results.check_writable(runs_dir)
    results.index_run(runs_dir, "run-1", "gru", "completed", completed_record())
    assert [record.run_id for record in results.read_records(runs_dir)] == ["run-1"]


def test_a_database_without_the_runs_table_has_no_runs(tmp_path):
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    sqlite3.connect(runs_dir / "index.sqlite").execute("CREATE TABLE other (a)").connection.close()
    assert results.read_records(runs_dir, statuses=None) == []


def test_check_writable_creates_the_folder_and_the_index(tmp_path):
    runs_dir = tmp_path / "new" / "runs"
    results.check_writable(runs_dir)
    assert [path.name for path in runs_dir.iterdir()] == ["index.sqlite"]
    # The probe row was rolled back.
    assert results.read_records(runs_dir, statuses=None) == []
    results.check_writable(runs_dir)


def test_check_writable_fails_in_one_line_on_a_read_only_index(tmp_path, monkeypatch):
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    results.index_run(runs_dir, "run-1", "gru", "completed", completed_record())
    # The tests run as root, whom chmod does not stop; SQLite's own read-only mode gives the same error.
    connect = sqlite3.connect
    monkeypatch.setattr(
        sqlite3, "connect", lambda path, **options: connect(f"{Path(path).absolute().as_uri()}?mode=ro", uri=True)
    )
    with pytest.raises(results.ResultsError) as raised:
        results.check_writable(runs_dir)
    assert str(raised.value) == f"cannot write {runs_dir / 'index.sqlite'}: attempt to write a readonly database"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to a read-only file")
def test_check_writable_fails_on_a_chmod_444_index(tmp_path):
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    results.index_run(runs_dir, "run-1", "gru", "completed", completed_record())
    (runs_dir / "index.sqlite").chmod(0o444)
    with pytest.raises(results.ResultsError) as raised:
        results.check_writable(runs_dir)
    assert str(raised.value) == f"cannot write {runs_dir / 'index.sqlite'}: attempt to write a readonly database"


def test_check_writable_where_the_folder_cannot_be_made(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the runs folder should be")
    with pytest.raises(results.ResultsError) as raised:
        results.check_writable(blocker / "runs")
    assert str(raised.value) == f"cannot write {blocker / 'runs' / 'index.sqlite'}: Not a directory"


def test_a_runs_folder_named_like_a_uri_reads_its_own_index(tmp_path):
    runs_dir = tmp_path / "a%3Fb?c#d"
    runs_dir.mkdir()
    results.index_run(runs_dir, "run-1", "gru", "completed", completed_record())
    # What a URI built without escaping would have opened instead: a folder named `a?b`.
    (tmp_path / "a?b").mkdir()
    results.index_run(tmp_path / "a?b", "run-other", "other", "completed", completed_record("other"))
    before = sorted(path.relative_to(tmp_path) for path in tmp_path.rglob("*"))
    outcome = CliRunner().invoke(main, ["compare", "--per-run", "--format", "csv", "--runs-dir", str(runs_dir)])
    assert outcome.exit_code == 0, outcome.output
    assert [line.split(",")[0] for line in outcome.output.splitlines()] == ["name", "gru"]
    assert sorted(path.relative_to(tmp_path) for path in tmp_path.rglob("*")) == before


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_follow_the_umask(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        run = results.create_run(tmp_path / "runs", "gru")
        run.write_config({"name": "gru"})
        run.write_history([{"epoch": 1}])
    finally:
        os.umask(previous)
    for name in ("config.json", "history.jsonl"):
        assert (run.path / name).stat().st_mode & 0o777 == mode
    assert [path.name for path in run.path.iterdir() if path.name.startswith(".")] == []


# Damaged rows for the property test: anything a broken disk, an older or newer version, or a
# hand edit could leave in the index.
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8,
)
FIELDS = [key for key, _, _ in results.RECORD_FIELDS]


@st.composite
def damaged_records(draw):
    kind = draw(st.sampled_from(["bytes", "text", "json", "missing", "wrong type"]))
    if kind == "bytes":
        return draw(st.binary(max_size=40))
    if kind == "text":
        return draw(st.text(max_size=40))
    if kind == "json":
        return json.dumps(draw(JSON_VALUES))
    record = completed_record()
    key = draw(st.sampled_from(FIELDS))
    *parents, last = key.split(".")
    container = record
    for part in parents:
        container = container.setdefault(part, {})
    if kind == "missing":
        container.pop(last, None)
    else:
        container[last] = draw(JSON_VALUES)
    return json.dumps(record)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(
    record=damaged_records(),
    run_id=st.text(min_size=1, max_size=12),
    status=st.sampled_from([*results.STATUSES, "odd", ""]),
    garbage=st.one_of(st.none(), st.binary(max_size=300)),
)
@pytest.mark.slow
def test_any_damaged_index_is_exit_0_or_one_line(tmp_path_factory, record, run_id, status, garbage):
    root = tmp_path_factory.mktemp("damaged")
    runs_dir = root / "runs"
    if garbage is None:
        put_row(runs_dir, run_id if run_id != "run-good" else "run-other", record, status=status)
    else:
        runs_dir.mkdir()
        (runs_dir / "index.sqlite").write_bytes(garbage)
    for command in (
        ["compare"],
        ["compare", "--all"],
        ["compare", "--format", "json"],
        ["report", "--out", str(root / "report")],
    ):
        started = time.perf_counter()
        outcome = CliRunner().invoke(main, [*command, "--runs-dir", str(runs_dir)])
        assert time.perf_counter() - started < 20, command
        assert outcome.exception is None or isinstance(outcome.exception, SystemExit), (command, outcome.output)
        assert outcome.exit_code in (0, 1), (command, outcome.output)
        if outcome.exit_code == 1:
            assert outcome.stderr.startswith("Error: ") and outcome.stderr.count("\n") == 1, (command, outcome.stderr)
            assert outcome.stdout == ""


def index_rows(runs_dir: Path) -> list[tuple]:
    connection = sqlite3.connect(runs_dir / results.INDEX_FILE)
    try:
        return connection.execute("SELECT run_id, name, status, started, updated, record FROM runs").fetchall()
    finally:
        connection.close()


@pytest.mark.slow
def test_real_records_read_and_write_back_unchanged(tiny_data_dir, tmp_path):
    """A trained run's index row, config.json and result.json, read as RunRecords and written back
    with to_json, are the same JSON, byte for byte; the runner writes their keys in the order they always had."""
    config = tmp_path / "tiny.yaml"
    config.write_text(
        "model: {cell: gru, embedding_dim: 8, units: 8}\ndata: {num_words: 40, maxlen: 16}\ntrain: {epochs: 2}\n"
    )
    runs_dir = tmp_path / "runs"
    arguments = ["--data-dir", str(tiny_data_dir), "--runs-dir", str(runs_dir)]
    outcome = CliRunner().invoke(main, ["run", str(config), *arguments])
    assert outcome.exit_code == 0, outcome.output
    [(run_id, name, status, started, updated, text)] = index_rows(runs_dir)
    from_row = results.RunRecord.from_row(runs_dir / results.INDEX_FILE, run_id, name, status, started, updated, text)
    assert from_row.to_json() == {
        **json.loads(text),
        "run_id": run_id,
        "status": status,
        "started": started,
        "updated": updated,
    }
    assert json.dumps(results.RunRecord.from_json(json.loads(text)).to_json()) == text
    run = results.RunDirectory(runs_dir / run_id)
    for path, read in ((run.path / "result.json", run.read_result), (run.path / "config.json", run.read_record)):
        written = tmp_path / "written.json"
        results.write_json(written, read().to_json())
        assert written.read_bytes() == path.read_bytes(), path.name
    config_keys = [
        *("name", "config", "fingerprint", "group", "command", "backend", "backend_choice", "device", "versions"),
        *("parameters", "kernels", "data", "warnings", "run_dir"),
    ]
    assert list(json.loads((run.path / "config.json").read_text())) == config_keys
    assert list(json.loads((run.path / "result.json").read_text())) == [*config_keys, "result", "status"]
    assert list(json.loads(text)) == [*config_keys, "result", "status"]
    assert list(json.loads((run.path / "result.json").read_text())["result"]) == [
        *("best_val_accuracy", "best_epoch", "best_val_loss", "val_macro_f1", "test_accuracy", "test_loss"),
        *("test_macro_f1", "val_confusion", "test_confusion", "epochs_run", "stopped_early", "mean_epoch_seconds"),
        *("train_seconds", "wall_seconds", "collapsed"),
    ]
    [record] = results.read_records(runs_dir)
    # The typed fields hold what readers read.
    assert (record.run_id, record.name, record.status, record.cell, record.seed, record.dataset) == (
        run_id,
        "tiny",
        "completed",
        "gru",
        1,
        "imdb",
    )
    assert record.result.test_accuracy == json.loads(text)["result"]["test_accuracy"]
    assert record.result.epochs_run == 2 and record.warnings == () and record.extra.keys() == set()
    assert run.read_history(required=("epoch", "val_accuracy"))[-1]["epoch"] == 2
    assert run.read_vocabulary()["padding_index"] == 0 and run.has_model() and run.read_test_correct() is not None


def test_old_records_without_later_keys_still_read():
    old = {
        "name": "gru",
        "config": {"model": {"cell": "gru"}, "train": {"seed": 1}},
        "parameters": 10,
        "backend": "tensorflow",
        "device": "CPU",
        "status": "completed",
        "result": {"best_val_accuracy": 0.8, "best_epoch": 2},
        "a key of a later version": [1, {"x": None}],
    }
    record = results.RunRecord.from_json(old)
    assert record.to_json() == old and list(record.to_json()) == list(old)
    assert (record.group, record.warnings, record.result.test_accuracy, record.run_id, record.updated) == (
        None,
        (),
        None,
        None,
        None,
    )
    assert record.extra == {"a key of a later version": [1, {"x": None}]}
    # A value of another kind than its field's stays as it was, in `extra`.
    odd = results.RunRecord.from_json({**old, "kernels": "none", "result": {**old["result"], "test_loss": "x"}})
    assert (odd.kernels, odd.extra["kernels"], odd.result.test_loss, odd.result.extra) == (
        None,
        "none",
        None,
        {"test_loss": "x"},
    )
    assert odd.to_json() == {**old, "kernels": "none", "result": {**old["result"], "test_loss": "x"}}
    # Frozen, and a copy: changing what it was made from, or what to_json gave, changes nothing.
    with pytest.raises(AttributeError):
        record.status = "failed"
    old["config"]["model"]["cell"] = "lstm"
    record.to_json()["config"]["train"]["seed"] = 9
    assert (record.cell, record.seed) == ("gru", 1)


def test_from_json_checks_what_readers_need_in_one_line():
    with pytest.raises(results.RecordError, match="^the record has no config.train.seed$"):
        results.RunRecord.from_json({"name": "gru", "config": {"model": {"cell": "gru"}, "train": {}}})
    with pytest.raises(results.RecordError, match="^the record has no parameters$"):
        results.RunRecord.from_json(
            {"name": "gru", "status": "completed", "config": {"model": {"cell": "gru"}, "train": {"seed": 1}}}
        )
