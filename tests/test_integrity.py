"""The runner's side of an honest verdict: every run recorded once, with what could make it mean
less than it seems (a collapsed model, merged labels), and nothing half-made left behind."""

from pathlib import Path

import pytest

from rnnbench import data, results, train
from rnnbench.config import config_from_mapping
from rnnbench.train import run_experiment


def tiny_config(data_settings=(), **train_settings):
    return config_from_mapping({
        "name": "tiny", "model": {"cell": "ann", "dense_units": 8}, "data": {"num_words": 40, "maxlen": 16, **dict(data_settings)},
        "train": {"epochs": 1, "seed": 3, **train_settings},
    })


def run_folders(runs: Path) -> list[Path]:
    return sorted(path for path in runs.iterdir() if path.is_dir()) if runs.exists() else []


def test_ctrl_c_before_the_run_exists_names_no_run(tiny_data_dir, tmp_path, monkeypatch):
    def interrupted(settings, data_dir=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(data, "load_dataset", interrupted)
    with pytest.raises(KeyboardInterrupt) as caught:
        run_experiment(tiny_config(), str(tiny_data_dir), tmp_path / "runs", "test", echo=lambda line: None)
    assert not hasattr(caught.value, "run_dir")
    assert run_folders(tmp_path / "runs") == []


def test_ctrl_c_during_training_names_the_interrupted_run(tiny_data_dir, tmp_path, monkeypatch):
    def interrupted(self, run, network):
        raise KeyboardInterrupt

    monkeypatch.setattr(train._Progress, "save", interrupted)  # At the end of the first epoch.
    runs = tmp_path / "runs"
    with pytest.raises(KeyboardInterrupt) as caught:
        run_experiment(tiny_config(epochs=2), str(tiny_data_dir), runs, "test", echo=lambda line: None)
    [folder] = run_folders(runs)
    assert caught.value.run_dir == str(folder)
    [record] = results.read_runs(runs, statuses=None)
    assert (record["run_id"], record["status"]) == (folder.name, "interrupted")


def test_a_run_that_cant_be_indexed_leaves_no_folder(tiny_data_dir, tmp_path, monkeypatch):
    def unwritable(*arguments):
        raise results.ResultsError("cannot update index.sqlite: attempt to write a readonly database")

    monkeypatch.setattr(results, "index_run", unwritable)
    runs = tmp_path / "runs"
    with pytest.raises(results.ResultsError, match="readonly database"):
        run_experiment(tiny_config(), str(tiny_data_dir), runs, "test", echo=lambda line: None)
    assert runs.is_dir() and run_folders(runs) == []