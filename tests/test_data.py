import gzip
import hashlib
import random
import tarfile
from pathlib import Path

import numpy as np
import pytest

from conftest import synthetic_reviews, write_tsv
from rnnbench import data
from rnnbench.config import DataConfig
from rnnbench.data import DataError, load_dataset, load_imdb, read_labelled, split_validation


def write_acl_tree(root: Path, split: str, rows: list[tuple[str, int]]) -> None:
    for review_id, (text, label) in enumerate(rows):
        folder = root / split / ("pos" if label else "neg")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{review_id}_{8 if label else 2}.txt").write_text(text, encoding="utf-8")


def tsv_order(rows: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """How the shared TSV copy was made from the official files: sort by (label, id), then shuffle."""
    ordered = sorted(((label, review_id, text) for review_id, (text, label) in enumerate(rows)))
    random.Random(data.IMDB_SHUFFLE_SEED).shuffle(ordered)
    return [(text, label) for label, _, text in ordered]


def test_tsv_layout(tiny_data_dir):
    dataset = load_imdb(str(tiny_data_dir))
    assert (len(dataset.train_texts), len(dataset.test_texts)) == (400, 200)
    assert dataset.train_labels.dtype == np.int64 and set(dataset.train_labels.tolist()) == {0, 1}
    assert dataset.class_names == ("negative", "positive")
    # HTML line breaks are removed on reading.
    assert all("<br />" not in text for text in dataset.train_texts)
    assert dataset.source == str(tiny_data_dir / "imdb")


def test_data_dir_from_environment(tiny_data_dir, monkeypatch):
    monkeypatch.setenv("RNNBENCH_DATA_DIR", str(tiny_data_dir))
    assert len(load_imdb().train_texts) == 400


def test_official_layout_reads_in_the_tsv_copys_order(tmp_path):
    train_rows, test_rows = synthetic_reviews(60, seed=3), synthetic_reviews(40, seed=4)
    write_acl_tree(tmp_path / "acl" / "aclImdb", "train", train_rows)
    write_acl_tree(tmp_path / "acl" / "aclImdb", "test", test_rows)
    write_tsv(tmp_path / "tsv" / "imdb" / "train.tsv.gz", tsv_order(train_rows))
    write_tsv(tmp_path / "tsv" / "imdb" / "test.tsv.gz", tsv_order(test_rows))
    from_folders = load_imdb(str(tmp_path / "acl"))
    from_tsv = load_imdb(str(tmp_path / "tsv"))
    assert from_folders.train_texts == from_tsv.train_texts
    np.testing.assert_array_equal(from_folders.train_labels, from_tsv.train_labels)
    assert from_folders.test_texts == from_tsv.test_texts


def test_missing_dataset_says_where_it_looked(tmp_path):
    with pytest.raises(DataError) as caught:
        load_imdb(str(tmp_path))
    message = str(caught.value)
    assert message.startswith(f"IMDB not found in {tmp_path} (looked for {tmp_path / 'imdb' / 'train.tsv.gz'}, ")
    assert message.endswith(
        "point --data-dir or RNNBENCH_DATA_DIR at a folder holding imdb/train.tsv.gz or aclImdb/, or unset it to download"
    )
    assert "\n" not in message


def test_limit_keeps_a_stratified_sample_in_file_order(tiny_data_dir):
    full = load_dataset(DataConfig(), str(tiny_data_dir))
    limited = load_dataset(DataConfig(limit=50), str(tiny_data_dir))
    assert len(limited.train_texts) == 50 and len(limited.test_texts) == 200
    positions = [full.train_texts.index(text) for text in limited.train_texts]
    assert positions == sorted(positions)
    assert np.bincount(limited.train_labels).tolist() == [25, 25]
    assert limited.notes["limit"] == "50 training rows, a stratified sample (seed 0)"


def test_limit_of_a_file_sorted_by_label_keeps_every_class():
    labels = np.array([0] * 600 + [1] * 300 + [2] * 100)
    rows = data.stratified_sample(labels, 101)
    assert np.bincount(labels[rows]).tolist() == [61, 30, 10]
    np.testing.assert_array_equal(rows, data.stratified_sample(labels, 101))


def test_group_split_holds_out_whole_groups_stratified():
    generator = np.random.default_rng(3)
    groups = np.repeat(np.arange(300), 10)
    labels = (generator.random(3000) < np.repeat(generator.random(300), 10)).astype(np.int64)
    kept, held_out = split_validation(labels, 0.2, seed=5, groups=groups)
    assert not set(groups[kept]) & set(groups[held_out])
    assert sorted(np.concatenate([kept, held_out]).tolist()) == list(range(3000))
    for label in (0, 1):
        share = np.mean(labels[held_out] == label) / np.mean(labels == label) * len(held_out) / 3000
        assert abs(np.sum(labels[held_out] == label) / np.sum(labels == label) - 0.2) < 0.01, share
    assert data.shared_group_share(groups, kept, held_out) == 0.0
    random_kept, random_held_out = split_validation(labels, 0.2, seed=5)
    assert data.shared_group_share(groups, random_kept, random_held_out) > 0.8
    np.testing.assert_array_equal(held_out, split_validation(labels, 0.2, seed=5, groups=groups)[1])
    assert not np.array_equal(held_out, split_validation(labels, 0.2, seed=6, groups=groups)[1])


def test_group_split_refuses_a_class_in_one_group():
    labels = np.array([0] * 50 + [1] * 5)
    groups = np.array([f"g{row % 10}" for row in range(50)] + ["only"] * 5)
    with pytest.raises(DataError) as caught:
        split_validation(labels, 0.2, seed=1, groups=groups)
    assert str(caught.value) == (
        "the training split: class 1 is in too few groups (1) to hold out a validation fraction of 0.2 by group;"
        " use data.hold_out: rows"
    )


def test_imdb_film_ids_from_the_tsv_and_from_the_official_urls_files(tmp_path):
    rows = synthetic_reviews(40, seed=9)
    films = {index: f"tt{index // 4:07d}" for index in range(40)}
    root = tmp_path / "aclImdb"
    write_acl_tree(root, "train", rows)
    write_acl_tree(root, "test", rows[:10])
    for split, count in (("train", 40), ("test", 10)):
        for label, name in ((0, "neg"), (1, "pos")):
            ids = {review_id for review_id in range(count) if rows[review_id][1] == label}
            lines = [
                f"http://www.imdb.com/title/{films[i]}/usercomments"
                if i in ids
                else "http://www.imdb.com/title/tt9999999/usercomments"
                for i in range(max(ids) + 1)
            ]
            (root / split / f"urls_{name}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    from_folders = load_imdb(str(tmp_path))
    assert from_folders.group_name == "film"
    expected = {text: films[index] for index, (text, _) in enumerate(rows)}
    cleaned = {text.replace("<br />", " "): film for text, film in expected.items()}
    assert from_folders.train_groups.tolist() == [cleaned[text] for text in from_folders.train_texts]
    assert len(set(from_folders.train_groups)) == 10

    tsv = tmp_path / "tsv" / "imdb"
    tsv.mkdir(parents=True)
    for split in ("train", "test"):
        with gzip.open(tsv / f"{split}.tsv.gz", "wt", encoding="utf-8") as handle:
            handle.write("text\tlabel\tmovie\n")
            for text, label in rows:
                handle.write(f"{text}\t{label}\t{expected[text]}\n")
    from_tsv = load_imdb(str(tmp_path / "tsv"))
    assert from_tsv.group_name == "film"
    assert from_tsv.train_groups.tolist() == [expected[text] for text, _ in rows]


def test_without_film_ids_imdb_has_no_groups(tiny_data_dir):
    dataset = load_imdb(str(tiny_data_dir))
    assert dataset.train_groups is None and dataset.group_name is None


@pytest.mark.parametrize(
    "content, expected",
    [
        ("text\tlabel\nfine\t1\nbroken row\n", "line 3: expected 2 tab-separated fields, got 1"),
        ("text\tlabel\nfine\t\n", "line 2: missing label"),
        ("review\tstars\nfine\t1\n", "no column 'text' for data.files.text_column; the columns are review, stars"),
    ],
)
def test_tsv_errors_name_file_and_line(tmp_path, content, expected):
    path = tmp_path / "bad.tsv.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write(content)
    with pytest.raises(DataError) as caught:
        read_labelled(path, "tsv", "text", "label")
    assert str(caught.value) == f"{path}: {expected}"


def test_split_is_stratified_seeded_and_disjoint():
    labels = np.array([0] * 700 + [1] * 300)
    train, validation = split_validation(labels, 0.2, seed=7)
    assert len(validation) == 200 and len(train) == 800
    assert (labels[validation] == 1).sum() == 60
    assert not set(train) & set(validation)
    again_train, again_validation = split_validation(labels, 0.2, seed=7)
    np.testing.assert_array_equal(validation, again_validation)
    assert not np.array_equal(validation, split_validation(labels, 0.2, seed=8)[1])


def test_split_rejects_a_class_too_small():
    with pytest.raises(
        DataError, match="the training split: class 1 has 1 rows, too few to hold out a validation fraction of 0.2"
    ):
        split_validation(np.array([0] * 10 + [1]), 0.2, seed=1)


def make_archive(tmp_path: Path) -> tuple[str, str]:
    tree = tmp_path / "archive_tree" / "aclImdb"
    write_acl_tree(tree, "train", synthetic_reviews(30, seed=5))
    write_acl_tree(tree, "test", synthetic_reviews(20, seed=6))
    archive = tmp_path / "served" / "aclImdb_v1.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree, arcname="aclImdb")
    return archive.as_uri(), hashlib.sha256(archive.read_bytes()).hexdigest()


def test_download_through_keras_get_file(tmp_path, monkeypatch):
    url, digest = make_archive(tmp_path)
    monkeypatch.setattr(data, "IMDB_URL", url)
    monkeypatch.setattr(data, "IMDB_SHA256", digest)
    monkeypatch.delenv("RNNBENCH_DATA_DIR", raising=False)
    cache = tmp_path / "cache"
    dataset = load_imdb(cache_dir=str(cache))
    assert (len(dataset.train_texts), len(dataset.test_texts)) == (30, 20)
    assert (cache / "datasets" / "aclImdb_v1.tar.gz").exists()
    # A second load reads the unpacked cache without downloading: the served file may vanish.
    Path(url.removeprefix("file://")).unlink()
    assert load_imdb(cache_dir=str(cache)).train_texts == dataset.train_texts


def test_download_rejects_a_wrong_checksum(tmp_path, monkeypatch):
    url, _ = make_archive(tmp_path)
    monkeypatch.setattr(data, "IMDB_URL", url)
    monkeypatch.setattr(data, "IMDB_SHA256", "0" * 64)
    monkeypatch.delenv("RNNBENCH_DATA_DIR", raising=False)
    with pytest.raises(
        DataError, match=r"^IMDB download from file://.* failed \(Incomplete or corrupted file detected"
    ):
        load_imdb(cache_dir=str(tmp_path / "cache"))


def test_download_failure_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "IMDB_URL", (tmp_path / "nowhere.tar.gz").as_uri())
    monkeypatch.delenv("RNNBENCH_DATA_DIR", raising=False)
    with pytest.raises(DataError) as caught:
        load_imdb(cache_dir=str(tmp_path / "cache"))
    assert str(caught.value).startswith(f"IMDB download from {(tmp_path / 'nowhere.tar.gz').as_uri()} failed (")
    assert str(caught.value).endswith("point --data-dir or RNNBENCH_DATA_DIR at a local copy")


def test_real_imdb_validation_by_film_shares_no_film_with_training(real_data_dir):
    dataset = load_dataset(DataConfig(), str(real_data_dir))
    assert dataset.group_name == "film" and len(set(dataset.train_groups)) == 3456
    random_kept, random_held_out = split_validation(dataset.train_labels, 0.2, seed=1)
    assert round(data.shared_group_share(dataset.train_groups, random_kept, random_held_out), 3) == 0.965
    kept, held_out = split_validation(dataset.train_labels, 0.2, seed=1, groups=dataset.train_groups)
    assert data.shared_group_share(dataset.train_groups, kept, held_out) == 0.0
    assert np.bincount(dataset.train_labels[held_out]).tolist() == [2500, 2500]


def test_real_imdb(real_data_dir):
    dataset = load_dataset(DataConfig(), str(real_data_dir))
    assert (len(dataset.train_texts), len(dataset.test_texts)) == (25_000, 25_000)
    assert np.bincount(dataset.train_labels).tolist() == [12_500, 12_500]
    assert np.bincount(dataset.test_labels).tolist() == [12_500, 12_500]


# --- Paths the system can't look up ---------------------------------------------------------------

LONG_NAME = "a" * 296 + ".csv"


@pytest.mark.parametrize("key", ["data.files.train", "data.files.test", "model.pretrained_embedding"])
def test_a_name_longer_than_the_file_system_allows_is_one_line_naming_the_key(tmp_path, key):
    with pytest.raises(DataError) as caught:
        data.resolve_path(LONG_NAME, str(tmp_path), key)
    assert str(caught.value) == (
        f"{key}: the name 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa…aaaaa.csv' is 300 bytes long; the file system allows names of at most 255 bytes"
    )


def test_a_long_name_for_pretrained_vectors_is_an_embedding_error(tmp_path):
    from rnnbench.embeddings import EmbeddingError, load_pretrained
    from rnnbench.tokenize import Vocabulary

    with pytest.raises(EmbeddingError) as caught:
        load_pretrained(str(tmp_path / LONG_NAME), Vocabulary(words=("hola",)), rows=3, dimension=2, seed=0)
    assert str(caught.value) == (
        "model.pretrained_embedding: the name 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa…aaaaa.csv' is 300 bytes long;"
        " the file system allows names of at most 255 bytes (or use 'glove-6b-50d')"
    )


def test_any_other_failure_to_look_up_a_path_is_one_line(tmp_path, monkeypatch):
    def exists(path):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "exists", exists)
    with pytest.raises(DataError) as caught:
        data.resolve_path("train.csv", str(tmp_path), "data.files.train")
    assert str(caught.value) == f"data.files.train: cannot look up {tmp_path / 'train.csv'} (Permission denied)"


def test_an_error_message_is_one_line_whatever_the_file_holds(tmp_path):
    path = tmp_path / "cols.csv"
    path.write_bytes(b'"a\nb",label\r\nhola,x\n')
    with pytest.raises(DataError) as caught:
        read_labelled(path, "csv", "text", "label")
    assert str(caught.value) == f"{path}: no column 'text' for data.files.text_column; the columns are a\\nb, label"
    header = ",".join(f"column{index}" for index in range(20)) + ",label\n"
    path.write_text(header + ",".join(["x"] * 21) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as caught:
        read_labelled(path, "csv", "text", "label")
    assert str(caught.value) == (
        f"{path}: no column 'text' for data.files.text_column; the columns are"
        " column0, column1, column2, column3, column4, column5, column6, column7 and 13 more"
    )


def test_jsonl_groups_are_read_for_every_row_or_none(tmp_path):
    # With an optional group column, the first row decides, as a header would: a later row without
    # a group is an error, not a text whose group is silently another row's.
    path = tmp_path / "groups.jsonl"
    path.write_text('{"text": "uno", "label": 0, "group": "g1"}\n{"text": "dos", "label": 1}\n', encoding="utf-8")
    with pytest.raises(DataError) as caught:
        read_labelled(path, "jsonl", "text", "label", group_column="group", group_required=False)
    assert str(caught.value) == f"{path}: line 2: group null in 'group' is not a string or an integer"
    path.write_text('{"text": "uno", "label": 0}\n{"text": "dos", "label": 1, "group": "g1"}\n', encoding="utf-8")
    assert read_labelled(path, "jsonl", "text", "label", group_column="group", group_required=False).groups is None


def test_a_data_dir_with_a_name_too_long_is_one_line(tmp_path):
    with pytest.raises(DataError) as caught:
        load_imdb(str(tmp_path / LONG_NAME))
    assert str(caught.value) == (
        "--data-dir / RNNBENCH_DATA_DIR: the name 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa…aaaaa.csv' is 300 bytes long;"
        " the file system allows names of at most 255 bytes"
    )


def test_a_home_folder_of_an_unknown_user_is_one_line(tmp_path):
    with pytest.raises(DataError) as caught:
        data.resolve_path("~no_such_user_here/train.csv", str(tmp_path), "data.files.train")
    assert (
        str(caught.value)
        == "data.files.train: ~no_such_user_here/train.csv: cannot tell which home folder '~no_such_user_here' means"
    )
