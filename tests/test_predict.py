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
    raw = {
        "name": name,
        "model": {"embedding_dim": 8, "units": 8, "dense_units": 8, **model},
        "data": {"num_words": 50, "maxlen": 24, **dict(data_settings)},
        "train": {"epochs": 2, "batch_size": 32, "seed": 3},
    }
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
@pytest.mark.slow
def test_predicting_a_runs_own_test_rows_gives_its_recorded_test_accuracy(
    tiny_data_dir, tmp_path, model, data_settings
):
    record = tiny_run(tiny_data_dir, tmp_path / "runs", "tiny", model, data_settings)
    run, note = predict.find_run(Path(record.run_dir).name, tmp_path / "runs")
    assert note is None and run.class_names == ("negative", "positive")
    texts, labels = raw_test_split(tiny_data_dir)
    probabilities = predict.predict(run, texts)
    assert probabilities.shape == (200, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)
    predicted = np.array([run.class_names.index(name) for name in predict.predicted_names(run, probabilities)])
    assert float(np.mean(predicted == labels)) == record.result.test_accuracy


@pytest.mark.slow
def test_the_command_line_finds_a_config_by_name_and_writes_each_format(tiny_data_dir, tmp_path):
    runs = tmp_path / "runs"
    first = tiny_run(tiny_data_dir, runs, "tiny_gru", {"cell": "gru"})
    run_id = Path(first.run_dir).name
    runner = CliRunner()
    outcome = runner.invoke(
        main,
        [
            "predict",
            "tiny_gru",
            "a wonderful moving film",
            "boring and dull",
            "--runs-dir",
            str(runs),
            "--format",
            "csv",
        ],
    )
    assert outcome.exit_code == 0, outcome.output
    assert outcome.stderr.startswith(
        f"tiny_gru: the best of its 1 completed run by validation accuracy, {run_id} (seed 3, "
    )
    lines = outcome.stdout.splitlines()
    assert lines[0] == "text,predicted,p(negative),p(positive)"
    assert [line.split(",")[0] for line in lines[1:]] == ["a wonderful moving film", "boring and dull"]
    assert all(line.split(",")[1] in ("negative", "positive") for line in lines[1:])
    # A folder given as the run, texts from a JSONL file's column.
    jsonl = tmp_path / "texts.jsonl"
    jsonl.write_text(
        json.dumps({"review": "loved it, brilliant"}) + "\n" + json.dumps({"review": "hated it"}) + "\n",
        encoding="utf-8",
    )
    outcome = runner.invoke(
        main, ["predict", str(runs / run_id), "--file", str(jsonl), "--text-column", "review", "--format", "jsonl"]
    )
    assert outcome.exit_code == 0, outcome.output
    rows = [json.loads(line) for line in outcome.stdout.splitlines()]
    assert [row["text"] for row in rows] == ["loved it, brilliant", "hated it"]
    assert all(set(row["probabilities"]) == {"negative", "positive"} for row in rows)
    assert all(abs(sum(row["probabilities"].values()) - 1.0) < 1e-6 for row in rows)
    # Standard input, one text per line.
    outcome = runner.invoke(main, ["predict", run_id, "--runs-dir", str(runs)], input="great film\nawful film\n")
    assert outcome.exit_code == 0, outcome.output
    assert outcome.stdout.splitlines()[0].split()[:2] == ["text", "predicted"] and len(outcome.stdout.splitlines()) == 4


@pytest.mark.slow
def test_bad_input_is_one_line_and_exit_code_2(tiny_data_dir, tmp_path):
    runs = tmp_path / "runs"
    record = tiny_run(tiny_data_dir, runs, "tiny_ann", {"cell": "ann"})
    runner = CliRunner()

    def error_of(*arguments, input=None):
        outcome = runner.invoke(main, ["predict", *arguments, "--runs-dir", str(runs)], input=input)
        assert outcome.exit_code == 2, outcome.output
        assert len(outcome.stderr.strip().splitlines()) == 1
        return outcome.stderr.strip()

    assert (
        error_of("nosuch", "text")
        == f"Error: no run folder, run id or config name 'nosuch' in {runs} (completed configs: tiny_ann)"
    )
    assert error_of("tiny_ann", "fine", "") == "Error: the command line: text 2 is empty"
    csv_file = tmp_path / "texts.csv"
    csv_file.write_text("review,stars\ngood,5\n", encoding="utf-8")
    assert error_of("tiny_ann", "--file", str(csv_file)) == (
        f"Error: {csv_file}: no column 'text' for --text-column; the columns are review, stars"
    )
    assert (
        error_of("tiny_ann", "a text", "--file", str(csv_file))
        == "Error: give texts as arguments or with --file, not both"
    )
    unfinished = runs / "20990101-000000-unfinished-000000"
    unfinished.mkdir()
    (unfinished / "config.json").write_text(json.dumps({"status": "interrupted"}), encoding="utf-8")
    assert (
        error_of(str(unfinished), "text")
        == f"Error: {unfinished}: the run did not complete (interrupted), so it has no model to predict with"
    )
    assert record.status == "completed"


@pytest.mark.slow
def test_many_texts_report_progress_by_tenths_outside_a_terminal(tiny_data_dir, tmp_path):
    runs = tmp_path / "runs"
    tiny_run(tiny_data_dir, runs, "tiny_ann", {"cell": "ann"})
    texts = "".join(f"a wonderful film number {number}\n" for number in range(600))
    outcome = CliRunner().invoke(main, ["predict", "tiny_ann", "--runs-dir", str(runs), "--format", "csv"], input=texts)
    assert outcome.exit_code == 0, outcome.output
    assert outcome.stderr.splitlines()[1:] == ["predicted 512 of 600 texts", "predicted 600 of 600 texts"]
    assert len(outcome.stdout.splitlines()) == 601


def korean_data(root: Path) -> Path:
    """A data folder whose one file, ko/all.tsv, holds short Korean texts labelled by their cue word."""
    positive, negative, neutral = (
        ["좋아요", "행복해", "고마워"],
        ["싫어요", "슬퍼", "최악이야"],
        ["오늘", "정말", "너무", "그냥", "나는"],
    )
    rows = []
    for index in range(200):
        words = [neutral[(index + offset) % len(neutral)] for offset in range(3)] + [
            (positive if index % 2 else negative)[index % 3]
        ]
        rows.append(f"{' '.join(words)}\t{index % 2}")
    (root / "ko").mkdir(parents=True)
    (root / "ko" / "all.tsv").write_text("text\tlabel\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return root


@pytest.mark.slow
def test_texts_whose_words_the_run_never_saw_are_predicted_with_a_warning(tmp_path):
    runs = tmp_path / "runs"
    tiny_run(
        korean_data(tmp_path / "data"),
        runs,
        "korean",
        {"cell": "ann"},
        {"dataset": "files", "files": {"train": "ko/all.tsv"}},
    )
    runner = CliRunner()
    english = runner.invoke(main, ["predict", "korean", "this is a good film", "--runs-dir", str(runs)])
    assert english.exit_code == 0, english.output
    assert english.stderr.splitlines()[1:] == [
        "warning: text 1: 0 of 5 words known to the run's vocabulary, so its predicted class is a guess"
    ]
    assert len(english.stdout.splitlines()) == 3  # Still predicted: header, rule, the text.

    mixed = runner.invoke(
        main, ["predict", "korean", "this is a good film", "정말 좋아요", "!!!", "그냥 bad", "--runs-dir", str(runs)]
    )
    assert mixed.exit_code == 0, mixed.output
    assert mixed.stderr.splitlines()[1:] == [
        "warning: 2 of 4 texts have no word known to the run's vocabulary (text 1: 0 of 5 words known; text 3: no words at all),"
        " so their predicted classes are guesses"
    ]
    # Texts the vocabulary knows a word of get no warning.
    known = runner.invoke(main, ["predict", "korean", "정말 좋아요", "--runs-dir", str(runs)])
    assert known.exit_code == 0 and len(known.stderr.splitlines()) == 1  # The note saying which run was chosen.


@pytest.mark.slow
def test_a_run_whose_model_file_is_damaged_or_missing_is_one_line(tiny_data_dir, tmp_path):
    import shutil

    runs = tmp_path / "runs"
    folder = Path(tiny_run(tiny_data_dir, runs, "tiny_ann", {"cell": "ann"}).run_dir)
    runner = CliRunner()

    def error_of(run: Path) -> tuple[int, str]:
        outcome = runner.invoke(main, ["predict", str(run), "a film", "--runs-dir", str(runs)])
        return outcome.exit_code, outcome.stderr

    advice = "train the run again with rnnbench run CONFIG.yaml --force"
    # Keras itself says "File not found" of a model file that is there but is not a zip archive.
    for name, damage in (
        ("noise", bytes(range(256)) * 12),
        ("truncated", (folder / "model.keras").read_bytes()[:2000]),
    ):
        damaged = tmp_path / name
        shutil.copytree(folder, damaged)
        (damaged / "model.keras").write_bytes(damage)
        assert error_of(damaged) == (
            2,
            f"Error: {damaged / 'model.keras'}: the model file is damaged (it is not the zip archive a .keras file is); {advice}\n",
        )
        assert (damaged / "model.keras").read_bytes() == damage  # Left as it was.
    # A zip archive, but not of a Keras model.
    import zipfile

    foreign = tmp_path / "foreign"
    shutil.copytree(folder, foreign)
    with zipfile.ZipFile(foreign / "model.keras", "w") as archive:
        archive.writestr("notes.txt", "not a model")
    code, stderr = error_of(foreign)
    assert (
        code == 2
        and stderr.startswith(f"Error: {foreign / 'model.keras'}: the model file is damaged (")
        and stderr.endswith(f"); {advice}\n")
    )
    assert stderr.count("\n") == 1

    missing = tmp_path / "missing"
    shutil.copytree(folder, missing)
    (missing / "model.keras").unlink()
    assert error_of(missing) == (
        2,
        (
            f"Error: {missing}: the run completed, but its model file model.keras is missing, so there is no model to predict with;"
            " train it again with rnnbench run CONFIG.yaml --force\n"
        ),
    )


@pytest.mark.slow
def test_texts_that_are_not_utf8_are_one_line(tiny_data_dir, tmp_path):
    import os
    import subprocess
    import sys

    runs = tmp_path / "runs"
    tiny_run(tiny_data_dir, runs, "tiny_ann", {"cell": "ann"})
    # The bytes reach a real process's standard input and arguments undecoded, so a process it is.
    command = [sys.executable, "-m", "rnnbench", "predict", "tiny_ann", "--runs-dir", str(runs)]
    environment = {**os.environ, "LC_ALL": "C.UTF-8"}
    for arguments, given in (([], b"a fine film\n\xff\xfe random bytes\n"), ([os.fsdecode(b"dull \xe9 film")], None)):
        completed = subprocess.run(command + arguments, input=given, capture_output=True, env=environment, timeout=600)
        source, number, byte, at = ("standard input", 2, "0xff", 1) if given else ("the command line", 1, "0xe9", 6)
        assert (completed.returncode, completed.stdout) == (2, b"")
        assert (
            completed.stderr.decode()
            == f"Error: {source}: text {number} is not UTF-8 text (byte {byte} at character {at})\n"
        )
