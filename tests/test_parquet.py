"""Parquet files among data.files' formats: the same columns, labels, groups and one-line errors as TSV, CSV and JSONL."""

import builtins
import gzip
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from rnnbench import data
from rnnbench.cli import main
from rnnbench.config import config_from_mapping
from rnnbench.data import DataError, load_dataset, read_labelled, read_texts

pyarrow = pytest.importorskip("pyarrow")
pytest.importorskip("pyarrow.parquet")

from test_data_files import files_config, spanish_rows  # noqa: E402


def write_parquet(path: Path, columns: dict) -> Path:
    pyarrow.parquet.write_table(pyarrow.table(columns), path)
    return path


def spanish_parquet(path: Path, count: int = 60, seed: int = 1, **extra) -> Path:
    rows = spanish_rows(count, seed)
    return write_parquet(path, {"texto": [text for text, _ in rows], "tema": [topic for _, topic in rows], **extra})


def test_a_parquet_file_reads_as_the_same_rows_as_its_csv(tmp_path):
    rows = spanish_rows(60, seed=1)
    spanish_parquet(tmp_path / "temas.parquet")
    read = read_labelled(tmp_path / "temas.parquet", "auto", "texto", "tema")
    assert read.texts == [text for text, _ in rows]
    assert read.labels == [topic for _, topic in rows]
    assert read.skipped == 0 and read.groups is None


def test_a_parquet_dataset_loads_from_a_config_with_groups(tmp_path):
    rows = spanish_rows(90, seed=3)
    authors = [f"autor{index % 15}" for index in range(90)]
    spanish_parquet(tmp_path / "temas.parquet", count=90, seed=3, autor=authors)
    config = config_from_mapping(
        files_config("temas.parquet", text_column="texto", label_column="tema", group_column="autor")
    )
    dataset = load_dataset(config.data, str(tmp_path))
    assert dataset.class_names == ("cocina", "deportes", "viajes")
    assert len(dataset.train_texts) + len(dataset.test_texts) == len(rows)
    assert dataset.group_name == "autor"
    # The test split holds out whole authors.
    test_authors = {authors[[text for text, _ in rows].index(text)] for text in dataset.test_texts}
    assert not test_authors & set(dataset.train_groups)


def test_integer_float_and_boolean_labels_are_spelled_as_in_jsonl(tmp_path):
    texts = ["uno", "dos", "tres", "cuatro"]
    for labels, expected in (
        ([0, 1, 2, 1], ["0", "1", "2", "1"]),
        ([0.0, 1.5, 1.5, 0.0], ["0.0", "1.5", "1.5", "0.0"]),
        ([True, False, True, False], ["true", "false", "true", "false"]),
    ):
        path = write_parquet(tmp_path / "labels.parquet", {"text": texts, "label": labels})
        assert read_labelled(path, "auto", "text", "label").labels == expected


def test_null_texts_are_empty_ones_skipped_and_counted(tmp_path):
    path = write_parquet(tmp_path / "nulls.parquet", {"text": ["uno", None, "", "dos"], "label": ["a", "b", "a", "b"]})
    read = read_labelled(path, "auto", "text", "label")
    assert read.texts == ["uno", "dos"] and read.skipped == 2


def test_a_categorical_text_column_reads_as_strings(tmp_path):
    table = pyarrow.table({"text": pyarrow.array(["uno", "dos", "uno"]).dictionary_encode(), "label": ["a", "b", "a"]})
    pyarrow.parquet.write_table(table, tmp_path / "categorical.parquet")
    assert read_labelled(tmp_path / "categorical.parquet", "auto", "text", "label").texts == ["uno", "dos", "uno"]


def test_a_gzipped_parquet_file_reads_too(tmp_path):
    plain = spanish_parquet(tmp_path / "temas.parquet")
    packed = tmp_path / "temas.parquet.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert read_labelled(packed, "auto", "texto", "tema") == read_labelled(plain, "auto", "texto", "tema")


def test_texts_to_classify_come_from_the_text_column(tmp_path):
    path = write_parquet(tmp_path / "nuevos.parquet", {"id": [1, 2], "texto": ["hola", None]})
    assert read_texts(path, "texto", "--text-column") == ["hola", ""]
    with pytest.raises(DataError) as raised:
        read_texts(path, "text", "--text-column")
    assert (
        str(raised.value)
        == f"{path}: no column 'text' for --text-column; the columns are id, texto (did you mean 'texto'?)"
    )


BAD_PARQUET = [
    # (file name, columns or raw bytes, expected message after "<path>: ")
    (
        "cols.parquet",
        {"txt": ["hola"], "label": ["a"]},
        "no column 'text' for data.files.text_column; the columns are txt, label (did you mean 'txt'?)",
    ),
    (
        "nolabelcol.parquet",
        {"text": ["hola"], "etiqueta": ["a"]},
        "no column 'label' for data.files.label_column; the columns are text, etiqueta",
    ),
    ("empty.parquet", b"", "the file is empty"),
    (
        "norows.parquet",
        {"text": pyarrow.array([], pyarrow.string()), "label": pyarrow.array([], pyarrow.string())},
        "the file has no rows",
    ),
    (
        "notparquet.parquet",
        b"text,label\nhola,a\n",
        "not a valid Parquet file (Parquet magic bytes not found in footer. Either the file is corrupted or this is not a parquet file.)",
    ),
    ("nulllabel.parquet", {"text": ["uno", "dos"], "label": ["a", None]}, "row 2: missing label"),
    (
        "numbers.parquet",
        {"text": [1, 2], "label": ["a", "b"]},
        "column 'text' for data.files.text_column holds int64, not strings",
    ),
    (
        "listlabel.parquet",
        {"text": ["uno", "dos"], "label": [[1], [2]]},
        "row 1: label [1] is not a string, a number or a boolean",
    ),
    (
        "oneclass.parquet",
        {"text": ["uno", "dos"], "label": ["a", "a"]},
        "found 1 class (a); a classifier needs at least 2",
    ),
]


@pytest.mark.parametrize("name, content, expected", BAD_PARQUET, ids=[row[0] for row in BAD_PARQUET])
def test_bad_parquet_is_one_line_naming_the_file_and_writes_no_run(tmp_path, name, content, expected):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        write_parquet(path, content)
    config = tmp_path / "bad.yaml"
    config.write_text(json.dumps(files_config(name)))
    outcome = CliRunner().invoke(
        main, ["run", str(config), "--data-dir", str(tmp_path), "--runs-dir", str(tmp_path / "runs")]
    )
    assert outcome.exit_code == 2
    assert outcome.output.count("Error:") == 1 and "Traceback" not in outcome.output
    assert outcome.output.splitlines()[-1] == f"Error: {path}: {expected}"
    assert not [path for path in (tmp_path / "runs").glob("*") if path.is_dir()]


def test_a_missing_or_bad_group_is_one_line(tmp_path):
    path = write_parquet(
        tmp_path / "groups.parquet", {"text": ["uno", "dos"], "label": ["a", "b"], "autor": ["ana", None]}
    )
    with pytest.raises(DataError) as raised:
        read_labelled(path, "auto", "text", "label", group_column="autor")
    assert str(raised.value) == f"{path}: row 2: missing group in column 'autor'"
    path = write_parquet(tmp_path / "floats.parquet", {"text": ["uno"], "label": ["a"], "autor": [1.5]})
    with pytest.raises(DataError) as raised:
        read_labelled(path, "auto", "text", "label", group_column="autor")
    assert str(raised.value) == f"{path}: row 1: group 1.5 in 'autor' is not a string or an integer"
    with pytest.raises(DataError) as raised:
        read_labelled(path, "auto", "text", "label", group_column="grupo")
    assert str(raised.value) == (
        f"{path}: no column 'grupo' for data.files.group_column; the columns are text, label, autor"
    )


def test_without_pyarrow_one_line_says_how_to_install_it(tmp_path, monkeypatch):
    path = spanish_parquet(tmp_path / "temas.parquet")
    real_import = builtins.__import__

    def no_pyarrow(name, *args, **kwargs):
        if name == "pyarrow" or name.startswith("pyarrow."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    with pytest.raises(DataError) as raised:
        read_labelled(path, "auto", "texto", "tema")
    assert str(raised.value) == f"{path}: reading a Parquet file needs pyarrow: pip install pyarrow"


def test_the_extension_tells_the_format():
    assert data._EXTENSIONS[".parquet"] == "parquet"


def test_unlabeled_texts_come_from_a_parquet_file_and_its_errors_stay_its_own(tmp_path):
    from rnnbench import unlabeled

    path = write_parquet(tmp_path / "extra.parquet", {"review": ["uno dos", "tres"], "stars": [1, 2]})
    settings = config_from_mapping(
        {
            "data": {"unlabeled": str(path), "unlabeled_text_column": "review"},
            "model": {"pretrained_embedding": "word2vec"},
        }
    ).data
    assert unlabeled.read_texts(settings, None) == (["uno dos", "tres"], str(path))
    settings = config_from_mapping(
        {
            "data": {"unlabeled": str(path), "unlabeled_text_column": "texto"},
            "model": {"pretrained_embedding": "word2vec"},
        }
    ).data
    with pytest.raises(DataError) as raised:
        unlabeled.read_texts(settings, None)
    assert (
        str(raised.value) == f"{path}: no column 'texto' for data.unlabeled_text_column; the columns are review, stars"
    )


def test_format_parquet_reads_a_file_whatever_its_name_and_refuses_one_that_is_not(tmp_path):
    rows = spanish_rows(60, seed=1)
    spanish_parquet(tmp_path / "temas.bin")
    config = config_from_mapping(files_config("temas.bin", text_column="texto", label_column="tema", format="parquet"))
    dataset = load_dataset(config.data, str(tmp_path))
    assert sorted(dataset.train_texts + dataset.test_texts) == sorted(text for text, _ in rows)

    (tmp_path / "temas.tsv").write_text("texto\ttema\nuno\ta\n")
    config = config_from_mapping(files_config("temas.tsv", format="parquet"))
    with pytest.raises(DataError) as raised:
        load_dataset(config.data, str(tmp_path))
    assert str(raised.value).startswith(f"{tmp_path / 'temas.tsv'}: not a valid Parquet file (")
