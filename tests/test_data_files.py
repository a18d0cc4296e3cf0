"""Datasets described by files in a config: formats, labels, splits and every kind of bad input."""

import csv
import gzip
import json
import random
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from rnnbench import data, results
from rnnbench.cli import main
from rnnbench.config import config_from_mapping
from rnnbench.data import DataError, load_dataset, read_labelled

TOPICS = {
    "deportes": ["partido", "gol", "equipo", "liga", "jugador"],
    "cocina": ["receta", "horno", "sal", "tomate", "cena"],
    "viajes": ["playa", "vuelo", "hotel", "maleta", "mapa"],
}
FILLER = ["el", "la", "un", "muy", "hoy", "con", "y", "de"]


def spanish_rows(count: int, seed: int) -> list[tuple[str, str]]:
    generator = random.Random(seed)
    rows = []
    for index in range(count):
        topic = list(TOPICS)[index % 3]
        words = [generator.choice(FILLER) for _ in range(generator.randint(3, 8))] + generator.sample(TOPICS[topic], 2)
        generator.shuffle(words)
        # Commas and quotes inside the text exercise CSV quoting.
        rows.append((f'"{words[0]}", ' + " ".join(words[1:]), topic))
    return rows


def files_config(train: str, **files) -> dict:
    return {
        "name": "files_run",
        "model": {"cell": "gru", "embedding_dim": 8, "units": 8, "dense_units": 8},
        "data": {"dataset": "files", "files": {"train": train, **files}, "num_words": 60, "maxlen": 12},
        "train": {"epochs": 2, "seed": 2},
    }


def write_csv(path: Path, rows, header=("texto", "tema")) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.mark.slow
def test_multiclass_csv_with_string_labels_runs_from_a_config_alone(tmp_path):
    write_csv(tmp_path / "temas.csv", spanish_rows(300, seed=1))
    config = tmp_path / "temas.yaml"
    raw = files_config("temas.csv", text_column="texto", label_column="tema")
    config.write_text(json.dumps(raw), encoding="utf-8")  # JSON is YAML too
    outcome = CliRunner().invoke(
        main, ["run", str(config), "--data-dir", str(tmp_path), "--runs-dir", str(tmp_path / "runs")]
    )
    assert outcome.exit_code == 0, outcome.output
    assert "3 classes" in outcome.output
    record = results.read_records(tmp_path / "runs")[0]
    assert record.data["class_names"] == ["cocina", "deportes", "viajes"]
    assert (record.data["train_rows"], record.data["validation_rows"], record.data["test_rows"]) == (
        192,
        48,
        60,
    )
    result = record.result.to_json()
    assert np.array(result["test_confusion"]).shape == (3, 3) and np.sum(result["test_confusion"]) == 60
    assert 0.0 <= result["val_macro_f1"] <= 1.0 and "test_macro_f1" in result
    assert record.parameters == 60 * 8 + 3 * 8 * (8 + 8 + 2) + 8 * 8 + 8 + 8 * 3 + 3


@pytest.mark.slow
def test_class_folder_tree_with_separate_test_folder(tmp_path):
    for split, count, seed in (("train", 90, 3), ("test", 30, 4)):
        for index, (text, topic) in enumerate(spanish_rows(count, seed)):
            folder = tmp_path / "corpus" / split / topic
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{index:03d}.txt").write_text(text, encoding="utf-8")
    config = tmp_path / "folders.yaml"
    config.write_text(
        json.dumps(files_config(str(tmp_path / "corpus" / "train"), test=str(tmp_path / "corpus" / "test")))
    )
    outcome = CliRunner().invoke(main, ["run", str(config), "--runs-dir", str(tmp_path / "runs")])
    assert outcome.exit_code == 0, outcome.output
    record = results.read_records(tmp_path / "runs")[0]
    assert record.data["class_names"] == ["cocina", "deportes", "viajes"]
    assert (record.data["train_rows"] + record.data["validation_rows"], record.data["test_rows"]) == (90, 30)


def test_jsonl_gzip_tsv_and_validation_file(tmp_path):
    rows = spanish_rows(90, seed=5)
    with gzip.open(tmp_path / "train.jsonl.gz", "wt", encoding="utf-8") as handle:
        for text, topic in rows[:60]:
            handle.write(json.dumps({"text": text, "label": topic}, ensure_ascii=False) + "\n")
    with gzip.open(tmp_path / "test.tsv.gz", "wt", encoding="utf-8") as handle:
        handle.write("text\tlabel\n" + "".join(f"{text}\t{topic}\n" for text, topic in rows[60:75]))
    (tmp_path / "validation.tsv").write_text(
        "text\tlabel\n" + "".join(f"{text}\t{topic}\n" for text, topic in rows[75:]), encoding="utf-8"
    )
    settings = config_from_mapping(files_config("train.jsonl.gz", test="test.tsv.gz", validation="validation.tsv")).data
    dataset = load_dataset(settings, str(tmp_path))
    assert (len(dataset.train_texts), len(dataset.validation_texts), len(dataset.test_texts)) == (60, 15, 15)
    assert dataset.train_texts[0] == rows[0][0]


def test_integer_labels_are_ordered_numerically(tmp_path):
    write_csv(
        tmp_path / "numbers.csv",
        [("a b", "10"), ("c d", "2"), ("e f", "10"), ("g h", "2")] * 5,
        header=("text", "label"),
    )
    settings = config_from_mapping(files_config("numbers.csv")).data
    dataset = load_dataset(settings, str(tmp_path))
    assert dataset.class_names == ("2", "10")


def test_single_file_test_split_is_stratified_shuffled_and_the_same_for_every_seed(tmp_path):
    # Grouped by label, like the chatbot file: a split that didn't shuffle would miss classes.
    rows = sorted(spanish_rows(150, seed=6), key=lambda row: row[1])
    write_csv(tmp_path / "grouped.csv", rows, header=("text", "label"))
    first = load_dataset(config_from_mapping(files_config("grouped.csv")).data, str(tmp_path))
    assert np.bincount(first.test_labels).tolist() == [10, 10, 10]
    other_seed = files_config("grouped.csv")
    other_seed["train"]["seed"] = 99
    assert load_dataset(config_from_mapping(other_seed).data, str(tmp_path)).test_texts == first.test_texts


@pytest.mark.slow
def test_empty_texts_are_skipped_counted_and_recorded(tmp_path):
    rows = spanish_rows(60, seed=7) + [("   ", "cocina"), ("", "viajes")]
    write_csv(tmp_path / "gaps.csv", rows, header=("text", "label"))
    config = tmp_path / "gaps.yaml"
    config.write_text(json.dumps(files_config("gaps.csv")))
    outcome = CliRunner().invoke(
        main, ["run", str(config), "--data-dir", str(tmp_path), "--runs-dir", str(tmp_path / "runs")]
    )
    assert outcome.exit_code == 0, outcome.output
    assert f"skipped 2 rows with an empty text in {tmp_path / 'gaps.csv'}" in outcome.output
    record = results.read_records(tmp_path / "runs")[0]
    assert record.data["skipped_empty_texts"] == {str(tmp_path / "gaps.csv"): 2}


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


BAD_INPUTS = [
    # (file name, content, extra files settings, expected message after "<path>: ")
    ("missing.csv", None, {}, None),
    (
        "cols.csv",
        b"txt,label\nhola,a\n",
        {},
        "no column 'text' for data.files.text_column; the columns are txt, label (did you mean 'txt'?)",
    ),
    ("empty.csv", b"", {}, "the file is empty"),
    ("header.tsv", b"text\tlabel\n", {}, "no rows after the header"),
    ("fields.tsv", b"text\tlabel\nuno\ta\ndos\n", {}, "line 3: expected 2 tab-separated fields, got 1"),
    ("fields.csv", b"text,label\nuno,a\ndos,b,c\n", {}, "line 3: expected 2 comma-separated fields, got 3"),
    ("nolabel.csv", b"text,label\nuno,a\ndos,\n", {}, "line 3: missing label"),
    (
        "badlabel.jsonl",
        b'{"text": "uno", "label": "a"}\n{"text": "dos", "label": [1, 2]}\n',
        {},
        "line 2: label [1, 2] is not a string, a number or a boolean",
    ),
    ("nulllabel.jsonl", b'{"text": "uno", "label": null}\n', {}, "line 1: missing label"),
    ("badjson.jsonl", b'{"text": "uno", "label": "a"}\n{"text": \n', {}, "line 2: not valid JSON (Expecting value)"),
    ("utf8.tsv", b"text\tlabel\nuno\ta\n\xff\xfe\tb\n", {}, "line 3: not valid UTF-8 (byte 0xff)"),
    (
        "name.txt",
        b"text,label\n",
        {},
        "cannot tell the format from the name; set data.files.format to tsv, csv, jsonl or folders",
    ),
    ("oneclass.csv", b"text,label\nuno,a\ndos,a\n", {}, "found 1 class (a); a classifier needs at least 2"),
    (
        "few.csv",
        b"text,label\n" + b"".join(b"t%d,a\n" % i for i in range(20)) + b"solo,b\n",
        {},
        "class 'b' has 1 rows, too few to hold out a test fraction of 0.2",
    ),
]


@pytest.mark.parametrize("name, content, extra, expected", BAD_INPUTS, ids=[row[0] for row in BAD_INPUTS])
def test_bad_input_is_one_line_naming_the_file_and_writes_no_run(tmp_path, name, content, extra, expected):
    path = tmp_path / name
    if content is not None:
        write_bytes(path, content)
    config = tmp_path / "bad.yaml"
    config.write_text(json.dumps(files_config(name, **extra)))
    outcome = CliRunner().invoke(
        main, ["run", str(config), "--data-dir", str(tmp_path), "--runs-dir", str(tmp_path / "runs")]
    )
    # Data errors are input errors: exit code 2, like a bad config.
    assert outcome.exit_code == 2
    error = outcome.output.splitlines()[-1]
    assert outcome.output.count("Error:") == 1 and "Traceback" not in outcome.output
    if expected is None:
        assert error == (
            f"Error: data.files.train: {name} not found (looked in {tmp_path / name}, {Path.cwd() / name}); "
            "relative paths are read from --data-dir / RNNBENCH_DATA_DIR, then the current folder"
        )
    else:
        assert error == f"Error: {path}: {expected}"
    # No run folder: the data is read before a run is opened (the runs folder's index may exist).
    assert not [path for path in (tmp_path / "runs").glob("*") if path.is_dir()]


def test_real_korean_chatbot_data(tmp_path):
    import os

    data_dir = os.environ.get("RNNBENCH_DATA_DIR")
    if not data_dir or not (Path(data_dir) / "chatbot" / "all.tsv.gz").exists():
        pytest.skip("the chatbot data is not available: set RNNBENCH_DATA_DIR to a folder holding chatbot/all.tsv.gz")
    settings = config_from_mapping({"data": {"dataset": "files", "files": {"train": "chatbot/all.tsv.gz"}}}).data
    dataset = load_dataset(settings, data_dir)
    assert dataset.class_names == ("0", "1", "2")
    assert len(dataset.train_texts) + len(dataset.test_texts) == 11_823
    assert np.bincount(dataset.test_labels).tolist() == [1058, 714, 593]
    assert dataset.train_texts[0] and all(isinstance(text, str) for text in dataset.train_texts)


# --- Byte order marks and damaged gzip files ---------------------------------------------------

BOM = b"\xef\xbb\xbf"


@pytest.mark.parametrize("name", ["bom.tsv", "bom.tsv.gz", "bom.csv", "bom.csv.gz", "bom.jsonl"])
def test_a_utf8_byte_order_mark_is_not_part_of_the_first_column(tmp_path, name):
    # Spreadsheet programs save "CSV UTF-8" with a byte order mark before the header.
    if ".jsonl" in name:
        content = b'{"text": "hola amigo", "label": "a"}\n{"text": "adios", "label": "b"}\n'
    else:
        separator = b"\t" if ".tsv" in name else b","
        content = (
            separator.join([b"text", b"label"]) + b"\r\nhola amigo" + separator + b"a\r\nadios" + separator + b"b\r\n"
        )
    raw = BOM + content
    write_bytes(tmp_path / name, gzip.compress(raw) if name.endswith(".gz") else raw)
    rows = read_labelled(tmp_path / name, "auto", "text", "label")
    assert (rows.texts, rows.labels) == (["hola amigo", "adios"], ["a", "b"])


def test_a_utf16_file_is_one_line_asking_for_utf8(tmp_path):
    write_bytes(tmp_path / "excel.tsv", "text\tlabel\nhola\ta\n".encode("utf-16"))
    with pytest.raises(DataError) as caught:
        read_labelled(tmp_path / "excel.tsv", "auto", "text", "label")
    assert (
        str(caught.value)
        == f"{tmp_path / 'excel.tsv'}: the file is UTF-16 (it starts with a UTF-16 byte order mark); save it as UTF-8"
    )


GOOD_GZIP = gzip.compress(b"text\tlabel\nhola\t1\nadios\t0\n", mtime=0)
DAMAGED_GZIP = [
    # (what, bytes, reason)
    (
        "garbage after the header",
        GOOD_GZIP[:10] + b"not deflate data at all",
        "Error -3 while decompressing data: invalid block type",
    ),
    ("truncated", GOOD_GZIP[:20], "its compressed data ends early; was the file cut short?"),
    ("wrong checksum", GOOD_GZIP[:-8] + b"\0" * 8, "CRC check failed"),
    ("header only", GOOD_GZIP[:2], "its compressed data ends early; was the file cut short?"),
]


@pytest.mark.parametrize("what, content, reason", DAMAGED_GZIP, ids=[row[0] for row in DAMAGED_GZIP])
def test_a_damaged_gzip_file_is_one_line(tmp_path, what, content, reason):
    path = write_bytes(tmp_path / "damaged.tsv.gz", content)
    with pytest.raises(DataError) as caught:
        read_labelled(path, "auto", "text", "label")
    assert str(caught.value) == f"{path}: not a valid gzip file ({reason})"


def test_a_damaged_gzip_file_through_the_cli_exits_2(tmp_path):
    write_bytes(tmp_path / "damaged.tsv.gz", GOOD_GZIP[:20])
    config = tmp_path / "damaged.yaml"
    config.write_text(json.dumps(files_config("damaged.tsv.gz")))
    outcome = CliRunner().invoke(main, ["summary", str(config), "--data-dir", str(tmp_path)])
    assert (outcome.exit_code, outcome.output) == (
        2,
        f"Error: {tmp_path / 'damaged.tsv.gz'}: not a valid gzip file (its compressed data ends early; was the file cut short?)\n",
    )


# --- Labels written differently -----------------------------------------------------------------


def labelled_csv(path: Path, labels: list[str]) -> Path:
    # Texts of their own, so that no check on texts shared between files gets in the way.
    rows = [(f"{path.stem} {index} {'uno dos' if index % 2 else 'tres'}", label) for index, label in enumerate(labels)]
    return write_csv(path, rows, header=("text", "label"))


def files_dataset(tmp_path: Path, train: str, **files):
    return load_dataset(config_from_mapping(files_config(train, **files)).data, str(tmp_path))


def test_spellings_of_one_number_are_one_class(tmp_path):
    labelled_csv(tmp_path / "spelt.csv", ["1", "1.0", "01", " 1", "0", "0.0", "2", "+2"] * 10)
    dataset = files_dataset(tmp_path, "spelt.csv")
    assert dataset.class_names == ("0", "1", "2")
    assert dataset.notes["merged_labels"] == {"1": ["1", "1.0", "01"], "0": ["0", "0.0"], "2": ["2", "+2"]}
    assert np.bincount(np.concatenate([dataset.train_labels, dataset.test_labels])).tolist() == [20, 40, 20]


def test_booleans_among_numbers_are_1_and_0(tmp_path):
    labelled_csv(tmp_path / "train.csv", ["0", "1", "True", "true", "False"] * 6)
    labelled_csv(tmp_path / "test.csv", ["TRUE", "0", "1.0", "false"])
    dataset = files_dataset(tmp_path, "train.csv", test="test.csv")
    assert dataset.class_names == ("0", "1")
    assert dataset.notes["merged_labels"] == {"0": ["0", "False", "false"], "1": ["1", "True", "true", "TRUE", "1.0"]}
    assert dataset.train_labels.tolist() == [0, 1, 1, 1, 0] * 6 and dataset.test_labels.tolist() == [1, 0, 1, 0]


def test_one_boolean_in_two_spellings_is_one_class_named_as_json_writes_it(tmp_path):
    labelled_csv(tmp_path / "bools.csv", ["True", "true", "False", "false"] * 5)
    dataset = files_dataset(tmp_path, "bools.csv")
    assert dataset.class_names == ("false", "true")
    assert dataset.notes["merged_labels"] == {"true": ["True", "true"], "false": ["False", "false"]}


@pytest.mark.parametrize(
    "labels, class_names",
    [
        (["2", "10"], ("2", "10")),
        (["-1", "0", "1"], ("-1", "0", "1")),
        (["cocina", "deportes"], ("cocina", "deportes")),
        (["True", "False"], ("False", "True")),
        # Distinct strings stay distinct: case, words for numbers, numbers beside words.
        (["a", "A", "one", "1", "True"], ("1", "A", "True", "a", "one")),
        (["0.5", "1.5"], ("0.5", "1.5")),
    ],
)
def test_clean_labels_keep_their_names_and_order_and_merge_nothing(tmp_path, labels, class_names):
    labelled_csv(tmp_path / "clean.csv", labels * 10)
    dataset = files_dataset(tmp_path, "clean.csv")
    assert dataset.class_names == class_names
    assert "merged_labels" not in dataset.notes


def test_jsonl_numbers_and_booleans_are_labels(tmp_path):
    lines = [
        {"text": f"texto {index}", "label": label} for index, label in enumerate([1, 1.0, True, 0, 0.0, False] * 5)
    ]
    (tmp_path / "typed.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    dataset = files_dataset(tmp_path, "typed.jsonl")
    assert dataset.class_names == ("0", "1")
    assert dataset.notes["merged_labels"] == {"1": ["1", "1.0", "true"], "0": ["0", "0.0", "false"]}


def test_labels_that_are_not_numbers_never_crash_the_class_order(tmp_path):
    # "²".isdigit() is True, but int("²") fails: the order must not take it for an integer.
    labelled_csv(tmp_path / "odd.csv", ["²", "1", "--5", "١"] * 5)
    assert files_dataset(tmp_path, "odd.csv").class_names == ("--5", "1", "²", "١")


# --- Classes and texts the training file lacks or shares -------------------------------------------


@pytest.mark.parametrize("split", ["test", "validation"])
def test_a_class_only_in_the_test_or_validation_file_is_refused(tmp_path, split):
    labelled_csv(tmp_path / "train.csv", ["a", "b"] * 10)
    write_csv(
        tmp_path / "other.csv", [("uno", "a"), ("dos", "c"), ("tres", "c"), ("cuatro", "b")], header=("text", "label")
    )
    with pytest.raises(DataError) as caught:
        files_dataset(tmp_path, "train.csv", **{split: "other.csv"})
    assert str(caught.value) == (
        f"{tmp_path / 'other.csv'}: class 'c' (2 rows) does not occur in the training file {tmp_path / 'train.csv'}; a model can't learn it"
    )


def test_the_training_file_as_test_file_is_refused(tmp_path):
    labelled_csv(tmp_path / "train.csv", ["a", "b"] * 10)
    with pytest.raises(DataError) as caught:
        files_dataset(tmp_path, "train.csv", test=str(tmp_path / "train.csv"))
    assert str(caught.value) == (
        f"{tmp_path / 'train.csv'}: 100% of its rows (20 of 20) have a text that is also in the training file"
        f" {tmp_path / 'train.csv'} (it is the training file); a test file must hold texts the model does not train on"
    )


def test_a_copy_of_the_training_file_as_validation_file_is_refused(tmp_path):
    labelled_csv(tmp_path / "train.csv", ["a", "b"] * 10)
    (tmp_path / "copy.csv").write_bytes((tmp_path / "train.csv").read_bytes())
    with pytest.raises(DataError) as caught:
        files_dataset(tmp_path, "train.csv", validation="copy.csv")
    assert str(caught.value) == (
        f"{tmp_path / 'copy.csv'}: 100% of its rows (20 of 20) have a text that is also in the training file"
        f" {tmp_path / 'train.csv'} (the two files hold the same bytes); a validation file must hold texts the model does not train on"
    )


def test_a_test_file_mostly_of_training_texts_is_refused_and_a_few_are_counted(tmp_path):
    train = [(f"texto {index}", "ab"[index % 2]) for index in range(40)]
    write_csv(tmp_path / "train.csv", train, header=("text", "label"))
    # Half of the test rows are training texts: refused.
    write_csv(
        tmp_path / "half.csv",
        train[:5] + [(f"nuevo {index}", "ab"[index % 2]) for index in range(5)],
        header=("text", "label"),
    )
    with pytest.raises(DataError) as caught:
        files_dataset(tmp_path, "train.csv", test="half.csv")
    assert str(caught.value) == (
        f"{tmp_path / 'half.csv'}: 50% of its rows (5 of 10) have a text that is also in the training file"
        f" {tmp_path / 'train.csv'}; a test file must hold texts the model does not train on"
    )
    # Fewer: counted in the notes, for test and validation files alike.
    write_csv(
        tmp_path / "few.csv",
        train[:4] + [(f"nuevo {index}", "ab"[index % 2]) for index in range(6)],
        header=("text", "label"),
    )
    dataset = files_dataset(tmp_path, "train.csv", test="few.csv", validation="few.csv")
    assert (dataset.notes["test_texts_in_training"], dataset.notes["validation_texts_in_training"]) == (4, 4)


def test_real_imdb_files_share_123_texts_which_is_counted_not_refused(real_data_dir):
    settings = config_from_mapping(
        {"data": {"dataset": "files", "files": {"train": "imdb/train.tsv.gz", "test": "imdb/test.tsv.gz"}}}
    ).data
    dataset = load_dataset(settings, str(real_data_dir))
    assert dataset.notes == {"test_texts_in_training": 123}
    assert dataset.class_names == ("0", "1")


# --- Class folders, as keras.utils.text_dataset_from_directory reads them ------------------------


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text, encoding="utf-8")
    return root


KERAS_TREE = {
    "neg/a.txt": "malo",
    "neg/B.TXT": "terrible",
    "neg/deep/er/c.Txt": "aburrido",
    "neg/notes.md": "not a text",
    "neg/.hidden.txt": "oculto",
    "pos/z.txt": "bueno",
    "pos/sub/y.txt": "genial",
    "pos/sub dir/x.txt": "excelente",
    ".git/ignored.txt": "no class",
    "top.txt": "no class either",
}


def test_class_folders_read_what_keras_reads_in_its_order(tmp_path):
    from keras.src.utils.dataset_utils import index_directory

    root = write_tree(tmp_path / "corpus", KERAS_TREE)
    texts, labels, skipped = data._read_class_folders(root)
    paths, keras_labels, keras_classes = index_directory(
        str(root), "inferred", formats=(".txt",), shuffle=False, verbose=False
    )
    assert texts == [Path(path).read_text(encoding="utf-8") for path in paths]
    assert labels == [keras_classes[label] for label in keras_labels]
    assert (labels, skipped) == (["neg"] * 4 + ["pos"] * 3, 0)


def test_an_empty_class_folder_is_refused(tmp_path):
    root = write_tree(tmp_path / "corpus", {"neg/a.txt": "malo", "pos/readme.md": "no texts here"})
    (root / "neutral").mkdir()
    with pytest.raises(DataError) as caught:
        read_labelled(root, "auto", "text", "label")
    assert str(caught.value) == f"{root}: class folder 'neutral' holds no .txt files"
    (root / "neutral" / "a.txt").write_text("  \n", encoding="utf-8")
    with pytest.raises(DataError) as caught:
        read_labelled(root, "auto", "text", "label")
    assert str(caught.value) == f"{root}: class folder 'neutral' holds only empty .txt files"
