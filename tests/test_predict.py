"""rnnbench predict: a run's saved model on texts, read as the run read its own."""

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from rnnbench import predict
from rnnbench.cli import main
from rnnbench.config import config_from_mapping
from rnnbench.train import run_experiment


def tiny_run(data_dir, runs_dir, name, model, data_settings=()):
    raw = {"name": name, "model": {"embedding_dim": 8, "units": 8, "dense_units": 8, **model},
           "data": {"num_words": 50, "maxlen": 24, **dict(data_settings)}, "train": {"epochs": 2, "batch_size": 32, "seed": 3}}
    return run_experiment(config_from_mapping(raw), str(data_dir), runs_dir, "test", echo=lambda line: None)


def raw_test_split(data_dir):
    # As written in the file: <br /> tags and all, which predict must strip as the run's reader did.
    with gzip.open(data_dir / "imdb" / "test.tsv.gz", "rt", encoding="utf-8") as lines:
        rows = [line.rstrip("\n").split("\t") for line in lines][1:]
    return [text for text, _ in rows], np.array([int(label) for _, label in rows])


@pytest.mark.parametrize(
    "model, data_settings",
    [
        ({"cell": "gru", "bidirectional": True, "pooling": "max_mean", "mask_padding": True}, {"padding": "post"}),
        ({"cell": "ann", "ngrams": 2, "ngram_weighting": "tfidf"}, {}),
    ],
    ids=["masked-pooled-bigru", "tfidf-bigrams"],
)
def test_predicting_a_runs_own_test_rows_gives_its_recorded_test_accuracy(tiny_data_dir, tmp_path, model, data_settings):
    record = tiny_run(tiny_data_dir, tmp_path / "runs", "tiny", model, data_settings)
    run, note = predict.find_run(Path(record["run_dir"]).name, tmp_path / "runs")
    assert note is None and run.class_names == ("negative", "positive")
    texts, labels = raw_test_split(tiny_data_dir)
    probabilities = predict.predict(run, texts)
    assert probabilities.shape == (200, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)
    predicted = np.array([run.class_names.index(name) for name in predict.predicted_names(run, probabilities)])
    assert float(np.mean(predicted == labels)) == record["result"]["test_accuracy"]


def test_the_command_line_finds_a_config_by_name_and_writes_each_format(tiny_data_dir, tmp_path):
    runs = tmp_path / "runs"
    first = tiny_run(tiny_data_dir, runs, "tiny_gru", {"cell": "gru"})
    run_id = Path(first["run_dir"]).name
    runner = CliRunner()
    outcome = runner.invoke(main, ["predict", "tiny_gru", "a wonderful moving film", "boring and dull", "--runs-dir", str(runs), "--format", "csv"])
    assert outcome.exit_code == 0, outcome.output
    assert outcome.stderr.startswith(f"tiny_gru: the best of its 1 completed run by validation accuracy, {run_id} (seed 3, ")
    lines = outcome.stdout.splitlines()
    assert lines[0] == "text,predicted,p(negative),p(positive)"
    assert [line.split(",")[0] for line in lines[1:]] == ["a wonderful moving film", "boring and dull"]
    assert all(line.split(",")[1] in ("negative", "positive") for line in lines[1:])
    # A folder given as the run, texts from a JSONL file's column.
    jsonl = tmp_path / "texts.jsonl"
    jsonl.write_text(json.dumps({"review": "loved it, brilliant"}) + "\n" + json.dumps({"review": "hated it"}) + "\n", encoding="utf-8")
    outcome = runner.invoke(main, ["predict", str(runs / run_id), "--file", str(jsonl), "--text-column", "review", "--format", "jsonl"])
    assert outcome.exit_code == 0, outcome.output
    rows = [json.loads(line) for line in outcome.stdout.splitlines()]
    assert [row["text"] for row in rows] == ["loved it, brilliant", "hated it"]
    assert all(set(row["probabilities"]) == {"negative", "positive"} for row in rows)
    assert all(abs(sum(row["probabilities"].values()) - 1.0) < 1e-6 for row in rows)
    # Standard input, one text per line.
    outcome = runner.invoke(main, ["predict", run_id, "--runs-dir", str(runs)], input="great film\nawful film\n")
    assert outcome.exit_code == 0, outcome.output
    assert outcome.stdout.splitlines()[0].split()[:2] == ["text", "predicted"] and len(outcome.stdout.splitlines()) == 4


def test_bad_input_is_one_line_and_exit_code_2(tiny_data_dir, tmp_path):
    runs = tmp_path / "runs"
    record = tiny_run(tiny_data_dir, runs, "tiny_ann", {"cell": "ann"})
    runner = CliRunner()

    def error_of(*arguments, input=None):
        outcome = runner.invoke(main, ["predict", *arguments, "--runs-dir", str(runs)], input=input)
        assert outcome.exit_code == 2, outcome.output
        assert len(outcome.stderr.strip().splitlines()) == 1
        return outcome.stderr.strip()

    assert error_of("nosuch", "text") == f"Error: no run folder, run id or config name 'nosuch' in {runs} (completed configs: tiny_ann)"
    assert error_of("tiny_ann", "fine", "") == "Error: the command line: text 2 is empty"
    csv_file = tmp_path / "texts.csv"
    csv_file.write_text("review,stars\ngood,5\n", encoding="utf-8")
    assert error_of("tiny_ann", "--file", str(csv_file)) == (
        f"Error: {csv_file}: no column 'text' for --text-column; the columns are review, stars"
    )
    assert error_of("tiny_ann", "a text", "--file", str(csv_file)) == "Error: give texts as arguments or with --file, not both"
    unfinished = runs / "20990101-000000-unfinished-000000"
    unfinished.mkdir()
    (unfinished / "config.json").write_text(json.dumps({"status": "interrupted"}), encoding="utf-8")
    assert error_of(str(unfinished), "text") == f"Error: {unfinished}: the run did not complete (interrupted), so it has no model to predict with"
    assert record["status"] == "completed"


def test_many_texts_report_progress_by_tenths_outside_a_terminal(tiny_data_dir, tmp_path):
    runs = tmp_path / "runs"
    tiny_run(tiny_data_dir, runs, "tiny_ann", {"cell": "ann"})
    texts = "".join(f"a wonderful film number {number}\n" for number in range(600))
    outcome = CliRunner().invoke(main, ["predict", "tiny_ann", "--runs-dir", str(runs), "--format", "csv"], input=texts)
    assert outcome.exit_code == 0, outcome.output
    assert outcome.stderr.splitlines()[1:] == ["predicted 512 of 600 texts", "predicted 600 of 600 texts"]
    assert len(outcome.stdout.splitlines()) == 601
