"""Property tests of reading data files: whatever a file holds, rnnbench returns consistent rows
or stops with one DataError line that starts with the file (or the config key) at fault; never
another exception, never a hang."""

import codecs
import csv
import gzip
import io
import json
import re
import tempfile
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from rnnbench.cli import main
from rnnbench.config import DataConfig, FilesConfig
from rnnbench.data import DataError, LabelledRows, TextDataset, load_dataset, read_labelled

# The deadline is generous (the machine is shared, and a hang is what it catches, not slowness);
# no example database, so the tests leave no .hypothesis folder behind.
PROPERTIES = settings(
    max_examples=150, deadline=timedelta(seconds=10), database=None, suppress_health_check=[HealthCheck.too_slow]
)

# Texts with every kind of character a file may hold: tabs, line breaks (\r, \n, U+0085, U+2028),
# quotes, NUL, Hangul; no lone surrogates, which no encoder writes. Half are plain words, so
# that many files are well-formed enough to be read.
TEXTS = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=24),
    st.text(st.sampled_from("abc xyz가나"), max_size=12),
)
# Labels as different tools write them: numbers, booleans, their spellings, words; now and then
# any short text, or nothing.
LABEL_SPELLINGS = [
    "0",
    "1",
    "2",
    "10",
    "-1",
    "1.0",
    "01",
    " 1",
    "+1",
    "1.",
    ".5",
    "0.50",
    "-0",
    "0.0",
    "1e3",
    "True",
    "true",
    "TRUE",
    "False",
    "false",
    "yes",
    "a",
    "A",
    "cocina",
    "²",
    "١",
]
ODD_LABELS = st.one_of(st.sampled_from(["", "  ", "\t"]), st.text(max_size=6))
# UTF-8 most often: other encodings (and encoding errors replaced by "?") are refused early.
ENCODINGS = ["utf-8"] * 5 + ["utf-16", "latin-1", "cp949"]


def rarely(draw) -> bool:
    """True for about one draw in eight: how often a file has each kind of flaw."""
    return draw(st.integers(0, 7)) == 0


@st.composite
def labels(draw, spellings: list[str] = LABEL_SPELLINGS, odd: bool = True) -> str:
    """A label from `spellings`; with `odd`, now and then any short text or none."""
    return draw(ODD_LABELS if odd and rarely(draw) else st.sampled_from(spellings))


def assert_one_line(error: DataError, *starts: str) -> None:
    message = str(error)
    assert message.splitlines() == [message], message
    assert len(message) < 600, message
    assert message.startswith(starts), message


def assert_consistent(rows: LabelledRows) -> None:
    assert len(rows.texts) == len(rows.labels) > 0
    assert all(isinstance(text, str) and text.strip() for text in rows.texts)
    assert all(isinstance(label, str) and label and label == label.strip() for label in rows.labels)
    assert rows.groups is None or len(rows.groups) == len(rows.texts)
    assert rows.skipped >= 0


def read_or_error(
    path: Path, file_format: str = "auto", group_column: Optional[str] = None, group_required: bool = True
) -> Optional[LabelledRows]:
    """The rows of `path`, checked for consistency, or None after checking the DataError's line."""
    try:
        rows = read_labelled(
            path, file_format, "text", "label", group_column=group_column, group_required=group_required
        )
    except DataError as error:
        assert_one_line(error, str(path))
        # What kind of error, for --hypothesis-show-statistics: the message without file and line.
        event(re.sub(r"^line \d+: ", "", str(error)[len(str(path)) + 2 :])[:30])
        return None
    assert_consistent(rows)
    event("read")
    return rows


def encode_file(text: str, encoding: str, byte_order_mark: bool, compress: bool) -> bytes:
    raw = text.encode(encoding, errors="replace")
    if byte_order_mark and encoding == "utf-8":
        raw = codecs.BOM_UTF8 + raw
    return gzip.compress(raw) if compress else raw


@st.composite
def delimited_files(draw) -> tuple[str, bytes]:
    """A TSV or CSV file as a person or a tool might have written it, right or wrong."""
    if rarely(draw):  # columns missing, misspelt, or with a byte order mark inside
        columns = draw(
            st.lists(
                st.sampled_from(["text", "label", "group", "extra", "Text", "\ufefftext"]),
                min_size=1,
                max_size=4,
                unique=True,
            )
        )
    else:
        columns = draw(st.permutations(["text", "label"] + draw(st.sampled_from([[], ["group"], ["extra"]]))))
    suffix = draw(st.sampled_from([".tsv", ".csv"]))
    delimiter = draw(st.sampled_from(["\t", ",", ";"])) if rarely(draw) else {".tsv": "\t", ".csv": ","}[suffix]
    odd_labels = rarely(draw)
    rows = []
    for _ in range(draw(st.integers(0, 6))):
        row = {
            "text": draw(TEXTS),
            "label": draw(labels(odd=odd_labels)),
            "group": draw(st.sampled_from(["g1", "g2", "", " "]) if rarely(draw) else st.just("g1")),
        }
        fields = [row.get(column, draw(TEXTS)) for column in columns]
        # Short rows: a field or more missing at the end.
        rows.append(fields[: draw(st.integers(0, len(fields)))] if rarely(draw) else fields)
    terminator = draw(st.sampled_from(["\n", "\r\n"]))
    quoting = draw(st.sampled_from(["none", csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONE]))
    if quoting == "none":
        # Written by joining fields, as a careless script would.
        text = "".join(delimiter.join(fields) + terminator for fields in [columns] + rows)
    else:
        buffer = io.StringIO(newline="")
        writer = csv.writer(buffer, delimiter=delimiter, quoting=quoting, escapechar="\\", lineterminator=terminator)
        for fields in [columns] + rows:
            try:
                writer.writerow(fields)
            except csv.Error:  # QUOTE_NONE can't write a row of one empty field; a script would
                buffer.write(delimiter.join(fields) + terminator)
        text = buffer.getvalue()
    compress = draw(st.booleans())
    raw = encode_file(text, draw(st.sampled_from(ENCODINGS)), draw(st.booleans()), compress)
    return suffix + (".gz" if compress else ""), raw


JSON_LABELS = st.one_of(
    labels(),
    st.integers(-3, 12),
    st.sampled_from([1.0, 0.0, 2.5, True, False]),
    st.sampled_from([None, [1], {"a": 1}, float("nan")]),
)


@st.composite
def jsonl_files(draw) -> tuple[str, bytes]:
    lines = []
    for _ in range(draw(st.integers(0, 6))):
        row: dict[str, Any] = {}
        text = st.one_of(TEXTS, st.integers()) if rarely(draw) else TEXTS
        group = st.sampled_from(["g1", 3, True]) if rarely(draw) else st.just("g1")
        for key, values in (("text", text), ("label", JSON_LABELS), ("group", group)):
            if not rarely(draw):  # a key is sometimes missing
                row[key] = draw(values)
        line = json.dumps(row, ensure_ascii=draw(st.booleans()))
        # Now and then a line is cut off, or is not an object.
        lines.append(draw(st.sampled_from([line[: len(line) // 2], "[1, 2]", "", "  "])) if rarely(draw) else line)
    text = "".join(line + draw(st.sampled_from(["\n", "\r\n"])) for line in lines)
    compress = draw(st.booleans())
    raw = encode_file(text, draw(st.sampled_from(ENCODINGS)), draw(st.booleans()), compress)
    return ".jsonl" + (".gz" if compress else ""), raw


def written(directory: str, name: str, raw: bytes) -> Path:
    path = Path(directory) / name
    path.write_bytes(raw)
    return path


@PROPERTIES
@given(
    file=st.one_of(delimited_files(), jsonl_files()),
    group_column=st.sampled_from([None, "group"]),
    group_required=st.booleans(),
)
@pytest.mark.slow
def test_any_delimited_or_jsonl_file_reads_as_consistent_rows_or_one_line(file, group_column, group_required):
    suffix, raw = file
    with tempfile.TemporaryDirectory() as directory:
        read_or_error(
            written(directory, "data" + suffix, raw), group_column=group_column, group_required=group_required
        )


@PROPERTIES
@given(
    body=st.binary(max_size=300),
    start=st.sampled_from(
        [
            b"",
            codecs.BOM_UTF8,
            b"\xff\xfe",
            b"\x1f\x8b",
            b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\x03",
            b"text\tlabel\n",
            b"text,label\r\n",
        ]
    ),
    compress=st.booleans(),
    name=st.sampled_from(
        ["data.tsv", "data.csv", "data.jsonl", "data.tsv.gz", "data.csv.gz", "data.jsonl.gz", "data.txt"]
    ),
)
def test_any_bytes_read_as_consistent_rows_or_one_line(body, start, compress, name):
    raw = gzip.compress(start + body) if compress else start + body
    with tempfile.TemporaryDirectory() as directory:
        read_or_error(written(directory, name, raw))


# What a .txt file holds: any bytes, or (more often) a text in UTF-8.
FILE_CONTENTS = st.one_of(st.binary(max_size=40), TEXTS.map(str.encode), TEXTS.map(str.encode))


@PROPERTIES
@given(
    classes=st.dictionaries(
        st.sampled_from(["neg", "pos", ".hidden", "neutral", "a b"]),
        st.lists(
            st.tuples(st.sampled_from(["x.txt", "Y.TXT", "sub/z.Txt", "notes.md", "deep/er/w.txt"]), FILE_CONTENTS),
            max_size=4,
        ),
        max_size=4,
    ),
)
def test_any_class_folder_tree_reads_as_consistent_rows_or_one_line(classes):
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory) / "corpus"
        root.mkdir()
        for name, files in classes.items():
            (root / name).mkdir()
            for relative, raw in files:
                (root / name / relative).parent.mkdir(parents=True, exist_ok=True)
                (root / name / relative).write_bytes(raw)
        rows = read_or_error(root)
        if rows is not None:
            assert set(rows.labels) <= set(classes) and not any(label.startswith(".") for label in rows.labels)


# --- Round trips: a well-formed file gives back exactly the rows written ---------------------------

# TSV has no quoting: its texts hold no tab and no line break ("\n"; "\r" would end a CRLF line).
TSV_TEXTS = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\t\n\r"), max_size=24)
PLAIN_LABELS = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\t\n\r"), min_size=1, max_size=6
).filter(str.strip)


@PROPERTIES
@given(
    suffix=st.sampled_from([".tsv", ".csv"]),
    rows=st.lists(st.tuples(TEXTS, PLAIN_LABELS), min_size=1, max_size=8),
    tsv_texts=st.lists(TSV_TEXTS, min_size=8, max_size=8),
    label_first=st.booleans(),
    terminator=st.sampled_from(["\n", "\r\n"]),
    byte_order_mark=st.booleans(),
    compress=st.booleans(),
)
def test_a_well_formed_file_gives_back_the_rows_written(
    suffix, rows, tsv_texts, label_first, terminator, byte_order_mark, compress
):
    if suffix == ".tsv":
        rows = [(tsv_texts[index], label) for index, (_, label) in enumerate(rows)]
    elif terminator == "\n":
        # Python's csv writer quotes a field only for the terminator's characters, so a bare "\r"
        # would be written unquoted and end the row when read back.
        rows = [(text.replace("\r", ""), label) for text, label in rows]
    columns = ["label", "text"] if label_first else ["text", "label"]
    table = [[label, text] if label_first else [text, label] for text, label in rows]
    if suffix == ".tsv":
        content = "".join("\t".join(fields) + terminator for fields in [columns] + table)
    else:
        buffer = io.StringIO(newline="")
        csv.writer(buffer, lineterminator=terminator).writerows([columns] + table)
        content = buffer.getvalue()
    kept = [(text, label.strip()) for text, label in rows if text.strip()]
    with tempfile.TemporaryDirectory() as directory:
        path = written(
            directory,
            "data" + suffix + (".gz" if compress else ""),
            encode_file(content, "utf-8", byte_order_mark, compress),
        )
        if not kept:
            with pytest.raises(DataError) as caught:
                read_labelled(path, "auto", "text", "label")
            assert str(caught.value) == f"{path}: no rows with a text"
            return
        read = read_labelled(path, "auto", "text", "label")
    assert list(zip(read.texts, read.labels)) == kept
    assert read.skipped == len(rows) - len(kept)


# --- Whole datasets: labels by value, every split consistent --------------------------------------


def label_values(labels: list[str]) -> dict[str, Any]:
    """What each label means, worked out apart from rnnbench's own code: a number is its value; a
    boolean (any case) is one value, and 1 or 0 when every other label is a number; else the label."""

    def number(label: str) -> Optional[Decimal]:
        if not label or set(label) - set("+-.0123456789") or not any(character.isdigit() for character in label):
            return None
        try:
            return Decimal(label)
        except InvalidOperation:
            return None

    booleans = {"true": Decimal(1), "false": Decimal(0)}
    among_numbers = all(number(label) is not None or label.lower() in booleans for label in labels)
    values: dict[str, Any] = {}
    for label in labels:
        if number(label) is not None:
            values[label] = number(label)
        elif label.lower() in booleans:
            values[label] = booleans[label.lower()] if among_numbers else ("boolean", label.lower())
        else:
            values[label] = label
    return values


def assert_dataset_consistent(dataset: TextDataset, train_labels: dict[str, str], test_labels: dict[str, str]) -> None:
    """`train_labels` and `test_labels` map each text to its label as written in its file."""
    assert dataset.num_classes >= 2 and len(set(dataset.class_names)) == dataset.num_classes
    for texts, labels in ((dataset.train_texts, dataset.train_labels), (dataset.test_texts, dataset.test_labels)):
        assert len(texts) == len(labels) and labels.dtype == np.int64
        assert np.all((labels >= 0) & (labels < dataset.num_classes))
    # Every class the model is tested on is one it trains on.
    assert set(dataset.test_labels.tolist()) <= set(dataset.train_labels.tolist())
    # Labels that mean the same are one class, and labels that mean different things are not.
    values = label_values(list(train_labels.values()) + list(test_labels.values()))
    class_of_value: dict[Any, str] = {}
    for texts, labels, written_labels in (
        (dataset.train_texts, dataset.train_labels, train_labels),
        (dataset.test_texts, dataset.test_labels, test_labels),
    ):
        for text, label in zip(texts, labels):
            name = dataset.class_names[label]
            assert class_of_value.setdefault(values[written_labels[text]], name) == name, (written_labels[text], name)
    assert len(set(class_of_value.values())) == len(class_of_value)
    for name, spellings in dataset.notes.get("merged_labels", {}).items():
        assert name in dataset.class_names and len(set(spellings)) == len(spellings) >= 2


@st.composite
def label_columns(draw) -> tuple[list[str], Optional[list[str]]]:
    """The labels of a training file and, sometimes, of a test file: a few spellings each, repeated."""
    palette = draw(st.lists(st.sampled_from(LABEL_SPELLINGS), min_size=2, max_size=5, unique=True))
    odd = rarely(draw)
    train = draw(st.lists(labels(palette, odd), min_size=2, max_size=40))
    test = draw(st.none() | st.lists(labels(palette, odd), min_size=1, max_size=10))
    return train, test


@PROPERTIES
@given(columns=label_columns(), shared_texts=st.integers(0, 10), suffix=st.sampled_from([".tsv", ".csv", ".csv.gz"]))
def test_any_labels_load_as_a_consistent_dataset_or_one_line(columns, shared_texts, suffix):
    train_labels, test_labels = columns
    # Each text says which row it is, so that its label as written can be looked up afterwards.
    train = [(f"train row {index}", label) for index, label in enumerate(train_labels)]
    # The first `shared_texts` test rows repeat training texts (each a different one).
    test = (
        None
        if test_labels is None
        else [
            (train[index][0] if index < min(shared_texts, len(train)) else f"test row {index}", label)
            for index, label in enumerate(test_labels)
        ]
    )
    with tempfile.TemporaryDirectory() as directory:

        def write(name: str, rows: list[tuple[str, str]]) -> str:
            buffer = io.StringIO(newline="")
            csv.writer(buffer, delimiter="\t" if suffix == ".tsv" else ",").writerows([("text", "label")] + rows)
            written(directory, name + suffix, encode_file(buffer.getvalue(), "utf-8", False, suffix.endswith(".gz")))
            return name + suffix

        files = FilesConfig(train=write("train", train), test=None if test is None else write("test", test))
        try:
            dataset = load_dataset(DataConfig(dataset="files", files=files), directory)
        except DataError as error:
            assert_one_line(error, directory, "data.files.")
            event(re.sub(r"[0-9]+", "N", str(error)[len(directory) :])[:40])
            return
        event("loaded")
    written_train = {text: label.strip() for text, label in train}
    # Without a test file, the test rows are cut from the training file.
    written_test = written_train if test is None else {text: label.strip() for text, label in test}
    assert_dataset_consistent(dataset, written_train, written_test)


# --- Through the command line: exit code 2 and one line --------------------------------------------


def summary_of(directory: Path, train: str) -> Any:
    config = directory / "bad.yaml"
    config.write_text(json.dumps({"data": {"dataset": "files", "files": {"train": train}}}), encoding="utf-8")
    return CliRunner().invoke(main, ["summary", str(config), "--data-dir", str(directory)])


@pytest.mark.parametrize(
    "name, content, message",
    [
        (
            "excel.tsv",
            "text\tlabel\nhola\ta\n".encode("utf-16"),
            "{path}: the file is UTF-16 (it starts with a UTF-16 byte order mark); save it as UTF-8",
        ),
        (
            "cut.csv.gz",
            gzip.compress(b"text,label\nhola,a\n")[:15],
            "{path}: not a valid gzip file (its compressed data ends early; was the file cut short?)",
        ),
        (
            "a" * 300 + ".csv",
            None,
            "data.files.train: the name 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa…aaaaa.csv' is 304 bytes long; the file system allows names of at most 255 bytes",
        ),
    ],
    ids=["utf-16", "cut gzip", "long name"],
)
def test_summary_of_a_config_with_a_bad_data_file_exits_2_with_one_line(tmp_path, name, content, message):
    if content is not None:
        (tmp_path / name).write_bytes(content)
    outcome = summary_of(tmp_path, name)
    assert (outcome.exit_code, outcome.output) == (2, "Error: " + message.format(path=tmp_path / name) + "\n")


@pytest.fixture(scope="module")
def keras_imported() -> None:
    # `summary` imports Keras for the model; importing it once here keeps the first example
    # within the deadline.
    import rnnbench.model  # noqa: F401


@settings(max_examples=15, deadline=timedelta(seconds=20), database=None, suppress_health_check=[HealthCheck.too_slow])
@given(file=delimited_files())
def test_summary_of_any_data_file_is_a_model_or_one_line(keras_imported, file):
    suffix, raw = file
    with tempfile.TemporaryDirectory() as directory:
        path = written(directory, "data" + suffix, raw)
        outcome = summary_of(Path(directory), path.name)
    assert "Traceback" not in outcome.output
    if outcome.exit_code != 0:
        assert outcome.exit_code == 2 and outcome.output.startswith(f"Error: {path}: "), outcome.output
        assert outcome.output.count("\n") == 1
