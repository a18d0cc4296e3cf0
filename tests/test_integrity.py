"""The runner's side of an honest verdict: every run recorded once, with what could make it mean
less than it seems (a collapsed model, merged labels), and nothing half-made left behind."""

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import write_tsv
from rnnbench import data, results, train
from rnnbench.cli import main
from rnnbench.config import config_from_mapping
from rnnbench.errors import RunInterrupted
from rnnbench.executor import check_data, run_all
from rnnbench.train import run_experiment

COLLAPSE = (
    "the best epoch's model predicts 'positive' for every validation row (a collapsed model: check train.learning_rate)"
)


def tiny_config(data_settings=(), **train_settings):
    return config_from_mapping(
        {
            "name": "tiny",
            "model": {"cell": "ann", "dense_units": 8},
            "data": {"num_words": 40, "maxlen": 16, **dict(data_settings)},
            "train": {"epochs": 1, "seed": 3, **train_settings},
        }
    )


def run_folders(runs: Path) -> list[Path]:
    return sorted(path for path in runs.iterdir() if path.is_dir()) if runs.exists() else []


def test_a_collapsed_model_is_flagged_and_warned_about(tiny_data_dir, tmp_path):
    # SGD at learning rate 5 sends this model to one class in its first epoch, with a finite loss.
    lines = []
    runs = tmp_path / "runs"
    record = run_experiment(
        tiny_config(optimizer="sgd", learning_rate=5.0), str(tiny_data_dir), runs, "test", echo=lines.append
    )
    assert record.status == "completed"
    assert record.result.collapsed is True
    assert record.warnings == (COLLAPSE,)
    assert f"warning: {COLLAPSE}" in lines
    written = json.loads(Path(record.run_dir, "result.json").read_text())
    assert written["warnings"] == [COLLAPSE] and written["result"]["collapsed"] is True
    [indexed] = results.read_records(runs)
    assert indexed.warnings == (COLLAPSE,) and indexed.result.collapsed is True


@pytest.mark.slow
def test_merged_labels_are_a_warning_recorded_with_the_run(tiny_data_dir, tmp_path, monkeypatch):
    merged = {"1": ["1", "1.0", "01"], "true": ["True", "true"]}
    expected = "label spellings merged into one class each: '1', '1.0', '01' as '1'; 'True', 'true' as 'true' (check that each set means one class)"
    real_load = data.load_dataset

    def load_with_notes(settings, data_dir=None):
        dataset = real_load(settings, data_dir)
        dataset.notes.update(merged_labels=merged, test_texts_in_training=2)
        return dataset

    monkeypatch.setattr(data, "load_dataset", load_with_notes)
    lines = []
    record = run_experiment(tiny_config(), str(tiny_data_dir), tmp_path / "runs", "test", echo=lines.append)
    assert record.warnings == (expected,)
    assert f"warning: {expected}" in lines
    # The notes themselves travel with the data summary; only the merge is a warning.
    assert record.data["merged_labels"] == merged and record.data["test_texts_in_training"] == 2
    assert json.loads(Path(record.run_dir, "config.json").read_text())["warnings"] == [expected]
    assert results.read_records(tmp_path / "runs")[0].warnings == (expected,)


def test_only_notes_that_deserve_one_make_a_warning():
    assert train.note_warnings({}) == []
    assert (
        train.note_warnings({"skipped_empty_texts": {"a.tsv": 3}, "test_texts_in_training": 4, "merged_labels": {}})
        == []
    )
    assert train.note_warnings({"merged_labels": {"0": ["0", "0.0"]}}) == [
        "label spellings merged into one class each: '0', '0.0' as '0' (check that each set means one class)"
    ]


def test_every_runs_data_is_read_before_any_trains(tiny_data_dir, tmp_path):
    write_tsv(tiny_data_dir / "reviews.tsv.gz", [("a fine film", 1), ("a dull film", 0)] * 40)
    config = tmp_path / "sweep.yaml"
    config.write_text(
        "name: files\nmodel: {cell: ann, dense_units: 8}\ntrain: {epochs: 1}\n"
        "data: {dataset: files, files: {train: reviews.tsv.gz}, num_words: 40, maxlen: 16}\n"
        "sweep:\n  variants:\n    good: {data.files.train: reviews.tsv.gz}\n    bad: {data.files.train: missing.tsv.gz}\n"
    )
    runs = tmp_path / "runs"
    outcome = CliRunner().invoke(main, ["run", str(config), "--data-dir", str(tiny_data_dir), "--runs-dir", str(runs)])
    assert outcome.exit_code == 2, outcome.output
    assert outcome.output.splitlines()[-1].startswith("Error: data.files.train: missing.tsv.gz not found ")
    assert "checking the data of 2 runs before any trains: 2 sources" in outcome.output
    assert "epoch 1/1" not in outcome.output
    assert run_folders(runs) == []


def test_the_data_of_a_sweep_is_read_once_per_source(tiny_data_dir, monkeypatch):
    read = []
    monkeypatch.setattr(data, "load_dataset", lambda settings, data_dir=None: read.append(settings.model_dump()))
    configs = [tiny_config(seed=seed) for seed in (1, 2)] + [
        tiny_config({"num_words": 30}),
        tiny_config({"limit": 100}),
    ]
    lines = []
    check_data(configs, str(tiny_data_dir), lines.append)
    # Seeds and num_words change nothing that is read; a limit does.
    assert [settings["limit"] for settings in read] == [None, 100]
    assert lines == ["checking the data of 4 runs before any trains: 2 sources"]


def test_ctrl_c_before_the_run_exists_names_no_run(tiny_data_dir, tmp_path, monkeypatch):
    def interrupted(settings, data_dir=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(data, "load_dataset", interrupted)
    with pytest.raises(KeyboardInterrupt) as caught:
        run_experiment(tiny_config(), str(tiny_data_dir), tmp_path / "runs", "test", echo=lambda line: None)
    assert not isinstance(caught.value, RunInterrupted)
    assert run_folders(tmp_path / "runs") == []


def test_ctrl_c_during_training_names_the_interrupted_run(tiny_data_dir, tmp_path, monkeypatch):
    def interrupted(self, run, network):
        raise KeyboardInterrupt

    monkeypatch.setattr(train.Checkpoint, "save", interrupted)  # At the end of the first epoch.
    runs = tmp_path / "runs"
    with pytest.raises(RunInterrupted) as caught:
        run_experiment(tiny_config(epochs=2), str(tiny_data_dir), runs, "test", echo=lambda line: None)
    [folder] = run_folders(runs)
    assert isinstance(caught.value, KeyboardInterrupt)
    assert caught.value.run_dir == str(folder)
    [record] = results.read_records(runs, statuses=None)
    assert (record.run_id, record.status) == (folder.name, "interrupted")


def test_a_run_that_cant_be_indexed_leaves_no_folder(tiny_data_dir, tmp_path, monkeypatch):
    def unwritable(*arguments):
        raise results.ResultsError("cannot update index.sqlite: attempt to write a readonly database")

    monkeypatch.setattr(results, "index_run", unwritable)
    runs = tmp_path / "runs"
    with pytest.raises(results.ResultsError, match="readonly database"):
        run_experiment(tiny_config(), str(tiny_data_dir), runs, "test", echo=lambda line: None)
    assert runs.is_dir() and run_folders(runs) == []


def test_the_index_is_checked_before_anything_is_read_or_trained(tiny_data_dir, tmp_path, monkeypatch):
    def unwritable(runs_dir):
        raise results.ResultsError(f"cannot write {runs_dir / 'index.sqlite'}: attempt to write a readonly database")

    def never(*arguments):
        raise AssertionError("data read before the index was checked")

    monkeypatch.setattr(results, "check_writable", unwritable, raising=False)
    monkeypatch.setattr(data, "load_dataset", never)
    runs = tmp_path / "runs"
    with pytest.raises(results.ResultsError, match="readonly database"):
        run_all([tiny_config(seed=1), tiny_config(seed=2)], str(tiny_data_dir), runs, "test", echo=lambda line: None)
    assert run_folders(runs) == []


@pytest.mark.slow
def test_a_sweep_naming_one_run_twice_trains_it_once(tiny_data_dir, tmp_path):
    lines = []
    first, second = run_all(
        [tiny_config(), tiny_config()], str(tiny_data_dir), tmp_path / "runs", "test", echo=lines.append
    )
    assert first.run_dir == second.run_dir
    assert (
        f"[2/2] tiny, seed 3: already completed in {first.run_dir}; reused, not retrained (--force trains it again)"
        in lines
    )
    assert len(run_folders(tmp_path / "runs")) == 1
    # The run's lock file went with its last holder.
    assert sorted(os.listdir(tmp_path / "runs")) == sorted(["index.sqlite", Path(first.run_dir).name])


def test_report_warns_of_each_run_whose_history_or_folder_is_gone(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    for name, seed in (("gru", 1), ("gru", 2), ("lstm", 1), ("lstm", 2)):
        run_id = f"run-{name}-{seed}"
        (runs / run_id).mkdir()
        history = [
            {"epoch": epoch, "loss": 0.5, "accuracy": 0.8, "val_loss": 0.5, "val_accuracy": 0.8 + 0.01 * seed}
            for epoch in (1, 2)
        ]
        (runs / run_id / "history.jsonl").write_text("".join(json.dumps(entry) + "\n" for entry in history))
        results.index_run(
            runs,
            run_id,
            name,
            "completed",
            {
                "name": name,
                "parameters": 1000,
                "backend": "tensorflow",
                "device": "CPU: test",
                "data": {"dataset": "imdb"},
                "config": {"name": name, "model": {"cell": name}, "train": {"seed": seed}},
                "result": {
                    "best_val_accuracy": 0.8 + 0.01 * seed,
                    "best_epoch": 2,
                    "test_accuracy": 0.79 + 0.01 * seed,
                    "mean_epoch_seconds": 1.0,
                },
            },
        )
    (runs / "run-gru-2" / "history.jsonl").unlink()
    import shutil

    shutil.rmtree(runs / "run-lstm-1")
    index = (runs / results.INDEX_FILE).read_bytes()
    out = tmp_path / "report"
    outcome = CliRunner().invoke(main, ["report", "--runs-dir", str(runs), "--out", str(out)])
    # Still a report, of all four runs (the index holds their results), and a line for each loss.
    assert outcome.exit_code == 0, outcome.output
    assert outcome.stdout == f"wrote {out / 'report.md'} and {out / 'report.html'} with 5 pictures\n"
    assert outcome.stderr.splitlines() == [
        f"warning: run run-gru-2 (gru, seed 2): {runs / 'run-gru-2' / 'history.jsonl'} is missing, so the report has its results but no learning curve of it",
        f"warning: run run-lstm-1 (lstm, seed 1): its folder {runs / 'run-lstm-1'} is missing, so the report has its results but no learning curve of it",
    ]
    assert "4 completed runs in 2 configs" in (out / "report.md").read_text()
    # Nothing in the runs folder was rewritten or made.
    assert (runs / results.INDEX_FILE).read_bytes() == index
    assert sorted(path.name for path in runs.iterdir()) == ["index.sqlite", "run-gru-1", "run-gru-2", "run-lstm-2"]
    assert sorted(path.name for path in (runs / "run-gru-2").iterdir()) == []
