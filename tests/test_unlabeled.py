"""data.unlabeled: unlabeled texts for word vectors alone, never labelled data, with copies of
validation and test texts dropped and counted; word2vec and fastText trained on them."""

import gzip
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from rnnbench import data, embeddings, tokenize
from rnnbench.cli import main
from rnnbench.config import ConfigError, config_from_mapping
from rnnbench.encoded import EncodedData

needs_gensim = pytest.mark.skipif(importlib.util.find_spec("gensim") is None, reason="rnnbench[word2vec] not installed")

MODEL = {"cell": "gru", "embedding_dim": 8, "units": 8, "dense_units": 8}
DATA = {"num_words": 60, "maxlen": 24}


def config_of(model=None, **data_settings):
    return config_from_mapping(
        {
            "name": "tiny_unlabeled",
            "model": {**MODEL, **(model or {})},
            "data": {**DATA, **data_settings},
            "train": {"epochs": 1, "batch_size": 32, "seed": 3},
        }
    )


def write_unlabeled(path: Path, texts: list[str], columns=("text", "movie")) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8", newline="\n") as handle:
        handle.write("\t".join(columns) + "\n")
        for number, text in enumerate(texts):
            handle.write("\t".join([text, f"tt{number}"][: len(columns)]) + "\n")
    return path


def own_texts(count: int) -> list[str]:
    """Texts of words found in no labelled row, each word in several texts."""
    return [f"plain{number % 7} words{number % 5} unlabeledword{number % 3} the film" for number in range(count)]


def split_texts(tiny_data_dir: Path) -> tuple[list[str], list[str], list[str]]:
    """The tiny data's training, validation and test texts (as read, before IMDB's cleaning), at seed 3."""
    prepared = EncodedData.prepare(config_of(), str(tiny_data_dir), echo=lambda line: None)
    train = [line.split("\t")[0] for line in _lines(tiny_data_dir / "imdb" / "train.tsv.gz")]
    test = [line.split("\t")[0] for line in _lines(tiny_data_dir / "imdb" / "test.tsv.gz")]
    training = set(prepared.training_rows.tolist())
    return (
        [train[row] for row in sorted(training)],
        [train[row] for row in range(len(train)) if row not in training],
        test,
    )


def _lines(path: Path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return handle.read().split("\n")[1:-1]


def test_the_unlabeled_corpus_changes_no_labelled_row_nor_the_vocabulary(tiny_data_dir):
    write_unlabeled(tiny_data_dir / "extra.tsv.gz", own_texts(50))
    without = EncodedData.prepare(config_of(), str(tiny_data_dir), echo=lambda line: None)
    said = []
    with_corpus = EncodedData.prepare(config_of(unlabeled="extra.tsv.gz"), str(tiny_data_dir), echo=said.append)
    for name in ("training_rows", "x_train", "y_train", "x_validation", "y_validation", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(with_corpus, name), getattr(without, name))
    assert with_corpus.vocabulary == without.vocabulary
    assert with_corpus.corpus.words == without.corpus.words
    np.testing.assert_array_equal(with_corpus.corpus.token_ids, without.corpus.token_ids)
    np.testing.assert_array_equal(with_corpus.corpus.offsets, without.corpus.offsets)
    # The unlabeled words reach neither the labelled corpus nor the vocabulary.
    assert "unlabeledword0" not in without.corpus.words and "unlabeledword0" not in with_corpus.vocabulary.words
    assert "unlabeledword0" in with_corpus.unlabeled.corpus.words
    extra = {key: value for key, value in with_corpus.summary.items() if key not in without.summary}
    assert extra == {
        "unlabeled": {
            "source": str(tiny_data_dir / "extra.tsv.gz"),
            "rows": 50,
            "read_rows": 50,
            "skipped_empty_texts": 0,
            "dropped_equal_to_test": 0,
            "dropped_equal_to_validation": 0,
            "kept_equal_to_training": 0,
        }
    }
    assert {key: with_corpus.summary[key] for key in without.summary} == without.summary
    assert "dropped 0 unlabeled rows equal to test texts" in said


def test_copies_of_validation_and_test_texts_are_dropped_and_counted(tiny_data_dir):
    training, validation, test = split_texts(tiny_data_dir)
    texts = (
        own_texts(20)
        + test[:3]
        # Equal after the tokenizer: case, punctuation and IMDB's <br /> tags aside.
        + [test[3].replace("<br /><br />", " ").upper().replace(".", " ! ")]
        + validation[:2]
        + training[:5]
        + [" "]
    )
    write_unlabeled(tiny_data_dir / "extra.tsv.gz", texts)
    said = []
    prepared = EncodedData.prepare(config_of(unlabeled="extra.tsv.gz"), str(tiny_data_dir), echo=said.append)
    assert "dropped 4 unlabeled rows equal to test texts" in said
    assert "dropped 2 unlabeled rows equal to validation texts" in said
    assert "skipped 1 unlabeled rows with an empty text" in said
    assert any(line.startswith("kept 25 unlabeled rows (5 of them equal to training texts) in ") for line in said)
    assert prepared.summary["unlabeled"] == {
        "source": str(tiny_data_dir / "extra.tsv.gz"),
        "rows": 25,
        "read_rows": 31,
        "skipped_empty_texts": 1,
        "dropped_equal_to_test": 4,
        "dropped_equal_to_validation": 2,
        "kept_equal_to_training": 5,
    }
    # The kept rows are the corpus' own texts and the training copies, in file order.
    kept = [" ".join(prepared.unlabeled.corpus.tokens(row)) for row in range(prepared.unlabeled.rows)]
    assert kept == [" ".join(tokenize.split_words(data.clean_review(text))) for text in own_texts(20) + training[:5]]


def test_a_text_column_other_than_text_and_one_text_per_line(tiny_data_dir):
    write_unlabeled(tiny_data_dir / "reviews.tsv.gz", own_texts(6), columns=("review", "movie"))
    prepared = EncodedData.prepare(
        config_of(unlabeled="reviews.tsv.gz", unlabeled_text_column="review"), str(tiny_data_dir), echo=lambda _: None
    )
    assert prepared.unlabeled.rows == 6
    (tiny_data_dir / "lines.txt").write_text("\n".join(own_texts(4)) + "\n", encoding="utf-8")
    prepared = EncodedData.prepare(config_of(unlabeled="lines.txt"), str(tiny_data_dir), echo=lambda _: None)
    assert prepared.unlabeled.rows == 4
    jsonl = tiny_data_dir / "lines.jsonl"
    jsonl.write_text("".join(json.dumps({"text": text}) + "\n" for text in own_texts(3)), encoding="utf-8")
    prepared = EncodedData.prepare(config_of(unlabeled=str(jsonl)), str(tiny_data_dir), echo=lambda _: None)
    assert prepared.unlabeled.rows == 3


def test_the_text_column_key_needs_an_unlabeled_file():
    with pytest.raises(ConfigError, match="data.unlabeled_text_column is only read with data.unlabeled, which is null"):
        config_of(unlabeled_text_column="review")
    with pytest.raises(ConfigError, match="data.unlabeled='imdb-unsup' has its own columns"):
        config_of(unlabeled="imdb-unsup", unlabeled_text_column="review")


@pytest.mark.parametrize(
    "case",
    ["missing", "no text column", "empty", "empty gzip", "every row a test text"],
)
def test_bad_unlabeled_corpora_give_one_line_and_exit_2(tiny_data_dir, tmp_path, case):
    corpus = tiny_data_dir / "extra.tsv.gz"
    if case == "no text column":
        write_unlabeled(corpus, own_texts(3), columns=("review", "movie"))
    elif case == "empty":
        corpus = tiny_data_dir / "extra.tsv"
        corpus.write_bytes(b"")
    elif case == "empty gzip":
        corpus.write_bytes(gzip.compress(b""))
    elif case == "every row a test text":
        write_unlabeled(corpus, split_texts(tiny_data_dir)[2][:7])
    config = tmp_path / "exp.yaml"
    config.write_text(
        "model:\n  cell: gru\n  units: 8\n  embedding_dim: 8\n  dense_units: 8\n"
        f"data:\n  num_words: 60\n  maxlen: 24\n  unlabeled: {corpus.name}\ntrain:\n  epochs: 1\n",
        encoding="utf-8",
    )
    outcome = CliRunner().invoke(
        main,
        ["run", str(config), "--data-dir", str(tiny_data_dir), "--runs-dir", str(tmp_path / "runs")],
        catch_exceptions=False,
    )
    assert outcome.exit_code == 2
    errors = [line for line in outcome.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and outcome.output.endswith(errors[0] + "\n")
    expected = {
        "missing": f"Error: data.unlabeled: extra.tsv.gz not found (looked in {corpus}, ",
        "no text column": f"Error: {corpus}: no column 'text' for data.unlabeled_text_column; the columns are review, movie",
        "empty": f"Error: {corpus}: the file is empty (data.unlabeled)",
        "empty gzip": f"Error: {corpus}: the file is empty (data.unlabeled)",
        "every row a test text": f"Error: {corpus}: no unlabeled rows left after dropping 7 equal to validation or test texts (data.unlabeled)",
    }[case]
    assert errors[0].startswith(expected), errors[0]


def test_imdb_unsup_reads_the_archive_layout_in_review_id_order(tmp_path):
    root = tmp_path / "aclImdb"
    for split in ("train", "test"):
        for label in ("neg", "pos"):
            folder = root / split / label
            folder.mkdir(parents=True)
            for number in range(3):
                (folder / f"{number}_{1 if label == 'neg' else 9}.txt").write_text(f"{split} {label} {number}")
    (root / "train" / "unsup").mkdir()
    for number in (10, 2, 0, 1):
        (root / "train" / "unsup" / f"{number}_0.txt").write_text(f"review {number}<br />end")
    from rnnbench import unlabeled

    texts, source = unlabeled.read_texts(config_of(unlabeled="imdb-unsup").data, str(tmp_path))
    assert texts == ["review 0 end", "review 1 end", "review 2 end", "review 10 end"]
    assert source == str(root / "train" / "unsup")


@needs_gensim
@pytest.mark.parametrize("method", ["word2vec", "fasttext"])
def test_vectors_from_a_fresh_cache_are_the_same_and_the_key_holds_the_corpus(tmp_path, monkeypatch, method):
    texts = ["the good great film was good and great"] * 30 + ["a bad awful plot was bad and awful"] * 30
    corpus = tokenize.tokenize(texts)
    unlabeled = tokenize.tokenize(["good great fine good fine great"] * 20 + ["awful poor bad poor awful"] * 20)
    vocabulary = tokenize.build_vocabulary(corpus, np.arange(60), num_words=20)
    rows = np.arange(60)
    vectors = []
    said = []
    for cache in ("first", "second"):
        monkeypatch.setenv(tokenize.CACHE_VARIABLE, str(tmp_path / cache))
        vectors.append(
            embeddings.train_vectors(
                method, corpus, rows, vocabulary, 20, 8, seed=5, echo=said.append, unlabeled=unlabeled
            )
        )
    np.testing.assert_array_equal(vectors[0].matrix, vectors[1].matrix)
    name = {"word2vec": "word2vec", "fasttext": "fastText"}[method]
    assert (
        said[0]
        == f"training {name} vectors on the 60 training rows and 40 unlabeled rows, on one CPU thread so that the seed decides them"
    )
    assert vectors[0].source.startswith(
        f"{name} trained on the 60 training rows and 40 unlabeled rows (sg 1, window 5,"
    )
    # Read back from the cache: no training line.
    again = embeddings.train_vectors(
        method, corpus, rows, vocabulary, 20, 8, seed=5, echo=said.append, unlabeled=unlabeled
    )
    np.testing.assert_array_equal(again.matrix, vectors[0].matrix)
    assert len(said) == 4
    # Other unlabeled texts are another key: trained again, to other vectors.
    changed = tokenize.tokenize(["good great fine good fine great"] * 20 + ["awful poor bad poor dull"] * 20)
    other = embeddings.train_vectors(
        method, corpus, rows, vocabulary, 20, 8, seed=5, echo=said.append, unlabeled=changed
    )
    assert len(said) == 6 and not np.array_equal(other.matrix, vectors[0].matrix)
    without = embeddings.train_vectors(method, corpus, rows, vocabulary, 20, 8, seed=5, echo=said.append)
    assert len(said) == 8 and not np.array_equal(without.matrix, vectors[0].matrix)


@needs_gensim
def test_fasttext_gives_a_vector_to_a_word_absent_from_its_corpus(tmp_path, monkeypatch):
    monkeypatch.setenv(tokenize.CACHE_VARIABLE, str(tmp_path / "cache"))
    texts = ["the goodness of great films was good and great"] * 30 + ["a badness plot was bad and awful"] * 30
    # The vocabulary is counted on rows that hold "goodnesses", which training never sees.
    corpus = tokenize.tokenize(texts + ["goodnesses goodnesses"])
    vocabulary = tokenize.build_vocabulary(corpus, np.arange(61), num_words=30)
    assert "goodnesses" in vocabulary.words
    rows = np.arange(60)
    fasttext = embeddings.train_fasttext(corpus, rows, vocabulary, 30, 8, seed=5, echo=lambda line: None)
    word2vec = embeddings.train_word2vec(corpus, rows, vocabulary, 30, 8, seed=5, echo=lambda line: None)
    assert word2vec.found == len(vocabulary.words) - 1 and word2vec.coverage < 1.0
    assert fasttext.found == len(vocabulary.words) and fasttext.coverage == 1.0
    assert fasttext.source.endswith("min_n 3, max_n 6); 1 vocabulary word from n-grams alone")
    index = vocabulary.index
    matrix = fasttext.matrix

    def cosine(first, second):
        a, b = matrix[index[first]], matrix[index[second]]
        return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))

    # Its vector is made of the n-grams it shares with "goodness".
    assert cosine("goodnesses", "goodness") > cosine("goodnesses", "awful")


@needs_gensim
@pytest.mark.slow
def test_with_word2vec_only_the_embedding_matrix_differs(tiny_data_dir, tmp_path):
    import keras

    from rnnbench.train import run_experiment

    write_unlabeled(tiny_data_dir / "extra.tsv.gz", own_texts(40) + [f"great film {n} loved it" for n in range(40)])
    records, weights = [], []
    for unlabeled in (None, "extra.tsv.gz"):
        config = config_of(
            {"pretrained_embedding": "word2vec", "embedding_trainable": False},
            **({"unlabeled": unlabeled} if unlabeled else {}),
        )
        record = run_experiment(config, str(tiny_data_dir), tmp_path / "runs", "test", echo=lambda line: None)
        assert record.status == "completed"
        network = keras.saving.load_model(Path(record.run_dir) / "model.keras")
        (embedding,) = [layer for layer in network.layers if isinstance(layer, keras.layers.Embedding)]
        records.append(record)
        weights.append(embedding.get_weights()[0])
    assert (
        records[1].embedding["source"].startswith("word2vec trained on the 320 training rows and 80 unlabeled rows (")
    )
    assert records[0].embedding["source"].startswith("word2vec trained on the 320 training rows (")
    assert {key: value for key, value in records[1].data.items() if key != "unlabeled"} == dict(records[0].data)
    assert weights[0].shape == weights[1].shape and not np.array_equal(weights[0], weights[1])


@pytest.mark.slow
def test_imdb_unsup_drops_its_copies_of_test_and_validation_reviews(real_data_dir):
    if not (real_data_dir / "imdb" / "unsup.tsv.gz").exists():
        pytest.skip("imdb/unsup.tsv.gz not in the data folder")
    config = config_from_mapping({"name": "real", "data": {"unlabeled": "imdb-unsup"}, "train": {"seed": 1}})
    said = []
    prepared = EncodedData.prepare(config, str(real_data_dir), echo=said.append)
    # The data README counts 270 unsup rows equal to a test text and 371 equal to a training
    # text; the validation split (seed 1, whole films) holds the texts of 61 of those 371.
    assert "dropped 270 unlabeled rows equal to test texts" in said
    assert "dropped 61 unlabeled rows equal to validation texts" in said
    assert prepared.summary["unlabeled"] == {
        "source": str(real_data_dir / "imdb" / "unsup.tsv.gz"),
        "rows": 49_669,
        "read_rows": 50_000,
        "skipped_empty_texts": 0,
        "dropped_equal_to_test": 270,
        "dropped_equal_to_validation": 61,
        "kept_equal_to_training": 310,
    }
