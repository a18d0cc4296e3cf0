import datetime
import json
import re
from pathlib import Path

import keras
import numpy as np
import pytest

from rnnbench import results
from rnnbench.config import config_from_mapping
from rnnbench.train import run_experiment
from conftest import untimed_history


def tiny_config(cell: str = "ann", **sections):
    raw = {
        "name": f"tiny_{cell}",
        "model": {"cell": cell, "embedding_dim": 8, "units": 8, "dense_units": 8},
        "data": {"num_words": 50, "maxlen": 24},
        "train": {"epochs": 3, "batch_size": 32, "seed": 3},
    }
    for section, values in sections.items():
        raw[section].update(values)
    return config_from_mapping(raw)


@pytest.mark.slow
def test_each_epoch_records_when_it_started_and_ended(tiny_data_dir, tmp_path):
    before = datetime.datetime.now(datetime.timezone.utc)
    record = run_experiment(tiny_config(), str(tiny_data_dir), tmp_path / "runs", "test", echo=lambda line: None)
    after = datetime.datetime.now(datetime.timezone.utc)
    history = [json.loads(line) for line in Path(record.run_dir, "history.jsonl").read_text().splitlines()]
    times = []
    for entry in history:
        for key in ("started_at", "ended_at"):
            # UTC, ISO 8601 with microseconds: 2026-12-04T12:21:33.123456+00:00.
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00", entry[key]), entry[key]
            times.append(datetime.datetime.fromisoformat(entry[key]))
        spanned = (times[-1] - times[-2]).total_seconds()
        # The wall clock spans the epoch that `seconds` times, give or take the clock's reading.
        assert spanned == pytest.approx(entry["seconds"], abs=0.5)
    assert len(times) == 2 * len(history) == 6
    assert before <= times[0] and times == sorted(times) and times[-1] <= after


@pytest.mark.slow
def test_run_writes_exactly_the_expected_files(tiny_data_dir, tmp_path):
    runs_dir = tmp_path / "runs"
    lines = []
    record = run_experiment(
        tiny_config("gru"), str(tiny_data_dir), runs_dir, "rnnbench run tiny.yaml", echo=lines.append
    )
    run_dir = runs_dir / record.run_dir.split("/")[-1]
    assert sorted(path.name for path in runs_dir.iterdir()) == sorted(["index.sqlite", run_dir.name])
    assert sorted(path.name for path in run_dir.iterdir()) == [
        "config.json",
        "history.jsonl",
        "model.keras",
        "result.json",
        "tensorboard",
        "test_predictions.npz",
        "vocabulary.json",
    ]

    config = json.loads((run_dir / "config.json").read_text())
    assert config["config"]["model"]["cell"] == "gru"
    assert config["command"] == "rnnbench run tiny.yaml"
    assert config["backend"] == "tensorflow" and config["device"].startswith("CPU: ")
    assert (
        config["data"]["train_rows"] == 320
        and config["data"]["validation_rows"] == 80
        and config["data"]["test_rows"] == 200
    )
    assert set(config["versions"]) >= {"python", "keras", "numpy", "tensorflow"}

    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    assert [entry["epoch"] for entry in history] == [1, 2, 3]
    assert set(history[0]) == {
        "epoch",
        "loss",
        "accuracy",
        "val_loss",
        "val_accuracy",
        "learning_rate",
        "seconds",
        "started_at",
        "ended_at",
    }
    assert [entry["learning_rate"] for entry in history] == [0.001, 0.001, 0.001]

    result = json.loads((run_dir / "result.json").read_text())["result"]
    accuracies = [entry["val_accuracy"] for entry in history]
    # Best is the maximum over epochs (the first of equal maxima), never simply the last epoch.
    assert result["best_val_accuracy"] == max(accuracies)
    assert result["best_epoch"] == 1 + int(np.argmax(accuracies))
    assert result["epochs_run"] == 3 and result["stopped_early"] is False
    # A model that learned the synthetic cues predicts both classes: not collapsed, no warnings.
    assert result["collapsed"] is False and record.warnings == ()
    assert result["mean_epoch_seconds"] == pytest.approx(np.mean([entry["seconds"] for entry in history]))
    assert record.parameters == 50 * 8 + 3 * 8 * (8 + 8 + 2) + 8 * 8 + 8 + 9

    vocabulary = json.loads((run_dir / "vocabulary.json").read_text())
    # The synthetic reviews hold 24 distinct words, fewer than the 48 that num_words=50 allows.
    assert vocabulary["padding_index"] == 0 and vocabulary["oov_index"] == 1 and len(vocabulary["words"]) == 24
    assert record.data["distinct_training_tokens"] == 24

    # The saved model is the best epoch's: its validation accuracy is the recorded best.
    indexed = results.read_records(runs_dir)
    assert [(entry.run_id, entry.status) for entry in indexed] == [(run_dir.name, "completed")]
    assert indexed[0].result.to_json() == result
    assert any("(best so far)" in line for line in lines)


@pytest.mark.slow
def test_saved_model_is_the_best_epoch(tiny_data_dir, tmp_path):
    from rnnbench.encoded import EncodedData

    config = tiny_config("ann", train={"epochs": 4})
    record = run_experiment(config, str(tiny_data_dir), tmp_path / "runs", "test", echo=lambda line: None)
    model = keras.models.load_model(record.run_dir + "/model.keras")
    prepared = EncodedData.prepare(config, str(tiny_data_dir), echo=lambda line: None)
    _, validation_accuracy = model.evaluate(prepared.x_validation, prepared.y_validation, verbose=0)
    _, test_accuracy = model.evaluate(prepared.x_test, prepared.y_test, verbose=0)
    assert validation_accuracy == pytest.approx(record.result.best_val_accuracy, abs=1e-6)
    assert test_accuracy == pytest.approx(record.result.test_accuracy, abs=1e-6)
    # Its per-row test predictions are saved for the verdict's multi-bootstrap, in the test split's order.
    correct = results.RunDirectory(Path(record.run_dir)).read_test_correct()
    assert correct.shape == (len(prepared.y_test),) and correct.mean() == pytest.approx(
        record.result.test_accuracy, abs=1e-12
    )
    with np.load(Path(record.run_dir) / "test_predictions.npz") as saved:
        assert (saved["labels"] == prepared.y_test).all() and saved["probabilities"].dtype == np.float16


@pytest.mark.slow
def test_validation_on_the_test_split(tiny_data_dir, tmp_path):
    config = tiny_config("ann", data={"validation": "test"}, train={"epochs": 1})
    record = run_experiment(config, str(tiny_data_dir), tmp_path / "runs", "test", echo=lambda line: None)
    assert record.data["validation_rows"] == 200 and record.data["train_rows"] == 400
    assert record.data["validated_on"] == "the test split"
    assert record.result.best_val_accuracy == pytest.approx(record.result.test_accuracy, abs=1e-6)
    assert record.data["validation_rows_sharing_a_group"] is None


@pytest.mark.slow
@pytest.mark.parametrize("hold_out, validated_on", [("groups", ", whole authors"), ("rows", ", rows at random")])
def test_the_record_says_how_many_validation_rows_share_a_group_with_training(tmp_path, hold_out, validated_on):
    from conftest import synthetic_reviews

    path = tmp_path / "grouped.tsv"
    rows = synthetic_reviews(300, seed=4)
    path.write_text(
        "text\tlabel\tauthor\n"
        + "".join(f"{text}\t{label}\ta{index % 30}\n" for index, (text, label) in enumerate(rows)),
        encoding="utf-8",
    )
    config = tiny_config(
        "ann",
        data={"dataset": "files", "files": {"train": str(path), "group_column": "author"}, "hold_out": hold_out},
        train={"epochs": 1},
    )
    record = run_experiment(config, None, tmp_path / "runs", "test", echo=lambda line: None)
    assert record.data["validated_on"] == f"0.2 of the training split{validated_on}"
    sharing = record.data["validation_rows_sharing_a_group"]
    assert sharing == 0.0 if hold_out == "groups" else sharing == 1.0


@pytest.mark.slow
def test_each_run_gets_a_new_directory(tiny_data_dir, tmp_path):
    config = tiny_config("ann", train={"epochs": 1})
    first = run_experiment(config, str(tiny_data_dir), tmp_path / "runs", "test", echo=lambda line: None)
    second = run_experiment(config, str(tiny_data_dir), tmp_path / "runs", "test", echo=lambda line: None)
    assert first.run_dir != second.run_dir
    assert len(results.read_records(tmp_path / "runs")) == 2


@pytest.mark.slow
def test_a_diverging_run_is_never_a_best_result(tiny_data_dir, tmp_path, monkeypatch):
    from rnnbench import model as model_factory

    def not_a_number(labels, predictions):
        return keras.ops.mean(predictions) * float("nan")

    monkeypatch.setattr(model_factory, "loss_for", lambda num_classes: not_a_number)
    lines = []
    record = run_experiment(
        tiny_config("ann", train={"epochs": 3}), str(tiny_data_dir), tmp_path / "runs", "test", echo=lines.append
    )
    assert record.status == "diverged"
    assert record.result.to_json() == {"epochs_run": 1}
    assert "epoch 1/3: the loss is not finite; stopping (recorded as diverged)" in lines
    assert results.read_records(tmp_path / "runs") == []
    assert [entry.status for entry in results.read_records(tmp_path / "runs", statuses=None)] == ["diverged"]


@pytest.mark.slow
def test_same_seed_same_history_on_cpu(tiny_data_dir, tmp_path):
    config = tiny_config("gru", model={"dropout": 0.3})
    first = run_experiment(config, str(tiny_data_dir), tmp_path / "a", "test", echo=lambda line: None)
    second = run_experiment(config, str(tiny_data_dir), tmp_path / "b", "test", echo=lambda line: None)

    def history(record):
        return untimed_history(record.run_dir)

    assert history(first) == history(second)
    assert first.result.test_accuracy == second.result.test_accuracy
    other = run_experiment(
        tiny_config("gru", model={"dropout": 0.3}, train={"seed": 4}),
        str(tiny_data_dir),
        tmp_path / "c",
        "test",
        echo=lambda line: None,
    )
    assert history(other) != history(first)


def test_unwritable_runs_folder_is_one_line(tiny_data_dir, tmp_path):
    from click.testing import CliRunner

    from rnnbench.cli import main

    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the runs folder should be")
    config = tmp_path / "tiny.yaml"
    config.write_text("model: {cell: ann, dense_units: 8}\ndata: {num_words: 40, maxlen: 16}\ntrain: {epochs: 1}\n")
    outcome = CliRunner().invoke(
        main, ["run", str(config), "--data-dir", str(tiny_data_dir), "--runs-dir", str(blocker / "runs")]
    )
    # Found before anything is read or trained: the index can't be created there.
    assert outcome.exit_code == 1
    assert (
        outcome.output.splitlines()[-1] == f"Error: cannot write {blocker / 'runs' / 'index.sqlite'}: Not a directory"
    )
    assert blocker.read_text() == "a file where the runs folder should be"


@pytest.mark.slow
def test_real_imdb_slice_learns(real_data_dir, tmp_path):
    # The bag-of-words baseline on 3,000 real reviews: far above chance after two epochs.
    config = config_from_mapping(
        {"name": "slice", "model": {"cell": "ann"}, "data": {"limit": 3000}, "train": {"epochs": 2}}
    )
    record = run_experiment(config, str(real_data_dir), tmp_path / "runs", "test", echo=lambda line: None)
    assert record.data["train_rows"] == 2400 and record.data["test_rows"] == 25_000
    assert 0.75 <= record.result.best_val_accuracy <= 0.95
    assert 0.75 <= record.result.test_accuracy <= 0.95


@pytest.mark.slow
def test_a_full_disk_while_saving_is_one_line_and_keeps_earlier_records(tiny_data_dir, tmp_path, monkeypatch):
    import errno

    from click.testing import CliRunner

    from rnnbench.cli import main

    config = tmp_path / "tiny.yaml"
    config.write_text("model: {cell: ann, dense_units: 8}\ndata: {num_words: 40, maxlen: 16}\ntrain: {epochs: 2}\n")
    arguments = ["run", str(config), "--data-dir", str(tiny_data_dir), "--runs-dir", str(tmp_path / "runs")]
    assert CliRunner().invoke(main, arguments).exit_code == 0
    before = results.read_records(tmp_path / "runs")

    real_fdopen = results.os.fdopen

    class FullDisk:
        def __init__(self, descriptor, mode):
            self.handle = real_fdopen(descriptor, mode)

        def __enter__(self):
            return self

        def __exit__(self, *exception):
            self.handle.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(results.os, "fdopen", FullDisk)
    outcome = CliRunner().invoke(main, [*arguments, "--set", "train.seed=2"])
    assert outcome.exit_code == 1
    assert outcome.output.splitlines()[-1].startswith("Error: cannot write ")
    assert outcome.output.splitlines()[-1].endswith(": No space left on device")
    assert "Traceback" not in outcome.output
    monkeypatch.undo()
    # The earlier run is untouched, and no temporary file was left behind.
    assert results.read_records(tmp_path / "runs") == before
    assert not list((tmp_path / "runs").rglob("*.tmp"))


@pytest.mark.slow
def test_default_bag_of_words_trains_as_before(tiny_data_dir, tmp_path):
    # Losses and validation accuracies of this run on the commit before model.ngrams and
    # model.ngram_weighting existed (94b0f59), TensorFlow on a CPU.
    record = run_experiment(tiny_config("ann"), str(tiny_data_dir), tmp_path / "runs", "test", echo=lambda line: None)
    history = [json.loads(line) for line in (Path(record.run_dir) / "history.jsonl").read_text().splitlines()]
    assert record.parameters == 417
    assert [entry["loss"] for entry in history] == pytest.approx(
        [0.6754664778709412, 0.6526379585266113, 0.6352899074554443], abs=1e-5
    )
    assert [entry["val_accuracy"] for entry in history] == pytest.approx(
        [0.550000011920929, 0.637499988079071, 0.675000011920929]
    )
    assert "bigrams" not in json.loads((Path(record.run_dir) / "vocabulary.json").read_text())


@pytest.mark.slow
def test_bag_of_bigrams_with_tfidf_records_its_bigrams_and_weights(tiny_data_dir, tmp_path):
    from rnnbench import tokenize
    from rnnbench.encoded import EncodedData

    config = tiny_config("ann", model={"ngrams": 2, "ngram_weighting": "tfidf"}, train={"epochs": 2})
    record = run_experiment(config, str(tiny_data_dir), tmp_path / "runs", "test", echo=lambda line: None)
    assert record.parameters == 100 + 100 * 8 + 8 + 9
    vocabulary = json.loads((Path(record.run_dir) / "vocabulary.json").read_text())
    assert vocabulary["first_bigram_index"] == 50 and 0 < len(vocabulary["bigrams"]) <= 50
    prepared = EncodedData.prepare(config, str(tiny_data_dir), echo=lambda line: None)
    assert prepared.x_train.shape[1] == 24 + 23
    assert [list(pair) for pair in prepared.vocabulary.bigrams] == vocabulary["bigrams"]
    model = keras.models.load_model(record.run_dir + "/model.keras")
    idf = keras.ops.convert_to_numpy(model.get_layer("tfidf").idf)
    np.testing.assert_allclose(idf, tokenize.inverse_document_frequencies(prepared.x_train, 100))
    assert np.all(prepared.token_weights == idf)
    _, test_accuracy = model.evaluate(prepared.x_test, prepared.y_test, verbose=0)
    assert test_accuracy == pytest.approx(record.result.test_accuracy, abs=1e-6)
