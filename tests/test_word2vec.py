"""model.pretrained_embedding: word2vec — vectors trained on the training rows alone, seeded and cached."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from rnnbench import embeddings, tokenize
from rnnbench.config import config_from_mapping
from rnnbench.embeddings import EmbeddingError, train_word2vec

needs_gensim = pytest.mark.skipif(importlib.util.find_spec("gensim") is None, reason="rnnbench[word2vec] not installed")

# Two kinds of sentence, so that the words of each kind share contexts; the last rows hold a
# word ("heldout") that only validation or test rows would have.
TEXTS = (
    ["the good great film was good and great"] * 40
    + ["a bad awful plot was bad and awful"] * 40
    + ["heldout heldout words"] * 5
)
TRAINING_ROWS = np.arange(80)


@pytest.fixture
def corpus(tmp_path, monkeypatch):
    monkeypatch.setenv(tokenize.CACHE_VARIABLE, str(tmp_path / "cache"))
    return tokenize.tokenize(TEXTS)


def vocabulary_of(corpus):
    return tokenize.build_vocabulary(tokenize.tokenize(TEXTS), np.arange(len(TEXTS)), num_words=20)


@needs_gensim
def test_vectors_fill_the_vocabulary_rows_from_the_training_rows_alone(corpus):
    vocabulary = vocabulary_of(corpus)
    pretrained = train_word2vec(corpus, TRAINING_ROWS, vocabulary, rows=20, dimension=8, seed=3, echo=lambda line: None)
    assert pretrained.matrix.shape == (20, 8) and pretrained.matrix.dtype == np.float32
    assert pretrained.matrix[0].tolist() == [0.0] * 8
    # Every training word has a vector; "heldout" and "words" occur only outside the training rows.
    assert len(vocabulary.words) == 12 and {"heldout", "words"} < set(vocabulary.words)
    assert pretrained.found == 10
    assert pretrained.source == (
        "word2vec trained on the 80 training rows (sg 1, window 5, negative 5, epochs 5, min_count 2, sample 0.001)"
    )
    # Words used alike end up nearer each other than words used apart.
    index = vocabulary.index

    def cosine(first, second):
        a, b = pretrained.matrix[index[first]], pretrained.matrix[index[second]]
        return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))

    assert cosine("good", "great") > cosine("good", "awful")


@needs_gensim
def test_the_same_rows_and_seed_give_the_same_vectors_read_back_from_the_cache(corpus, monkeypatch):
    vocabulary = vocabulary_of(corpus)
    said = []
    first = train_word2vec(corpus, TRAINING_ROWS, vocabulary, rows=20, dimension=8, seed=3, echo=said.append)
    assert (
        len(said) == 2
        and said[0]
        == "training word2vec vectors on the 80 training rows, on one CPU thread so that the seed decides them"
    )
    assert said[1].startswith("trained 10 word2vec vectors in ")
    cached = list((tokenize.cache_folder()).glob("word2vec-*.npz"))
    assert len(cached) == 1

    def must_not_train(*arguments):
        raise AssertionError("trained again instead of reading the cache")

    monkeypatch.setattr(embeddings, "_word2vec", must_not_train)
    again = train_word2vec(corpus, TRAINING_ROWS, vocabulary, rows=20, dimension=8, seed=3, echo=said.append)
    np.testing.assert_array_equal(first.matrix, again.matrix)
    assert len(said) == 2
    monkeypatch.undo()
    monkeypatch.setenv(
        tokenize.CACHE_VARIABLE, str(corpus_cache_elsewhere := tokenize.cache_folder().parent.parent / "other")
    )
    # Trained afresh in another cache: the same seed still gives the same vectors (one worker, fixed hash).
    fresh = train_word2vec(corpus, TRAINING_ROWS, vocabulary, rows=20, dimension=8, seed=3, echo=said.append)
    np.testing.assert_array_equal(first.matrix, fresh.matrix)
    assert list((corpus_cache_elsewhere / "corpora").glob("word2vec-*.npz"))
    other_seed = train_word2vec(corpus, TRAINING_ROWS, vocabulary, rows=20, dimension=8, seed=4, echo=said.append)
    assert not np.array_equal(first.matrix[2:12], other_seed.matrix[2:12])
    # Other training rows are another cache entry, not the first one's vectors.
    fewer = train_word2vec(corpus, np.arange(60), vocabulary, rows=20, dimension=8, seed=3, echo=said.append)
    assert not np.array_equal(first.matrix[2:12], fewer.matrix[2:12])


@needs_gensim
def test_a_damaged_cache_entry_is_trained_again(corpus):
    vocabulary = vocabulary_of(corpus)
    first = train_word2vec(corpus, TRAINING_ROWS, vocabulary, rows=20, dimension=8, seed=3, echo=lambda line: None)
    (entry,) = tokenize.cache_folder().glob("word2vec-*.npz")
    entry.write_bytes(b"not an npz file")
    said = []
    again = train_word2vec(corpus, TRAINING_ROWS, vocabulary, rows=20, dimension=8, seed=3, echo=said.append)
    np.testing.assert_array_equal(first.matrix, again.matrix)
    assert len(said) == 2 and said[1].startswith("trained 10 word2vec vectors")


def test_without_gensim_the_error_says_what_to_install(corpus, monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *rest: None if name == "gensim" else real_find_spec(name, *rest)
    )
    with pytest.raises(
        EmbeddingError,
        match=r"^model.pretrained_embedding='word2vec' needs the package gensim: pip install 'rnnbench\[word2vec\]'$",
    ):
        train_word2vec(corpus, TRAINING_ROWS, vocabulary_of(corpus), rows=20, dimension=8, seed=3)


def test_word2vec_is_a_config_value_for_models_with_an_embedding():
    config = config_from_mapping({"model": {"cell": "gru", "pretrained_embedding": "word2vec", "embedding_dim": 100}})
    assert config.model.pretrained_embedding == embeddings.WORD2VEC


@pytest.mark.slow
@needs_gensim
def test_a_run_trains_its_vectors_on_its_own_training_rows_and_records_them(tiny_data_dir, tmp_path):
    from rnnbench.train import run_experiment

    raw = {
        "name": "tiny_word2vec",
        "model": {"cell": "gru", "embedding_dim": 8, "units": 8, "dense_units": 8, "pretrained_embedding": "word2vec"},
        "data": {"num_words": 30, "maxlen": 24},
        "train": {"epochs": 1, "batch_size": 32, "seed": 3},
    }
    config = config_from_mapping(raw)
    lines = []
    record = run_experiment(config, str(tiny_data_dir), tmp_path / "runs", "test", echo=lines.append)
    assert record.status == "completed"
    assert record.embedding["source"].startswith("word2vec trained on the 320 training rows (sg 1,")
    assert record.embedding["coverage"] == 1.0
    assert sum(line.startswith("trained ") and " word2vec vectors in " in line for line in lines) == 1


@needs_gensim
@pytest.mark.slow
def test_validation_and_test_texts_change_nothing_in_a_runs_word2vec_vectors(tiny_data_dir, tmp_path, monkeypatch):
    import gzip

    import keras

    from conftest import write_tsv
    from rnnbench.encoded import EncodedData
    from rnnbench.train import run_experiment

    # Frozen, so that the saved model's embedding is the matrix the run started from.
    raw = {
        "name": "tiny_word2vec_frozen",
        "model": {
            "cell": "gru",
            "embedding_dim": 8,
            "units": 8,
            "dense_units": 8,
            "pretrained_embedding": "word2vec",
            "embedding_trainable": False,
        },
        "data": {"num_words": 30, "maxlen": 24},
        "train": {"epochs": 1, "batch_size": 32, "seed": 3},
    }
    config = config_from_mapping(raw)
    clean = EncodedData.prepare(config, str(tiny_data_dir), echo=lambda line: None)
    assert len(clean.training_rows) == 320 and len(clean.x_validation) == 80

    # The same files with every validation and test text replaced by words found nowhere else: a
    # word of its own per row and one shared by all (each at least twice, word2vec's min_count).
    def rows_of(path):
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            return [
                (text, int(label)) for text, label in (line.rstrip("\n").split("\t") for line in handle.readlines()[1:])
            ]

    training_file = rows_of(tiny_data_dir / "imdb" / "train.tsv.gz")
    test_file = rows_of(tiny_data_dir / "imdb" / "test.tsv.gz")
    kept = set(clean.training_rows.tolist())
    poisoned = tmp_path / "poisoned"
    write_tsv(
        poisoned / "imdb" / "train.tsv.gz",
        [
            (text if row in kept else f"heldoutword{row} heldoutword{row} heldoutshared heldoutshared", label)
            for row, (text, label) in enumerate(training_file)
        ],
    )
    write_tsv(
        poisoned / "imdb" / "test.tsv.gz",
        [
            (f"testword{row} testword{row} heldoutshared heldoutshared", label)
            for row, (_, label) in enumerate(test_file)
        ],
    )
    dirty = EncodedData.prepare(config, str(poisoned), echo=lambda line: None)
    # The split depends on the labels and the seed alone: the same rows train, with the same tokens.
    np.testing.assert_array_equal(dirty.training_rows, clean.training_rows)
    np.testing.assert_array_equal(dirty.x_train, clean.x_train)
    assert not np.array_equal(dirty.x_validation, clean.x_validation)

    # Every word word2vec gave a vector to, in each run.
    trained_words = []
    real_word2vec = embeddings._word2vec

    def recording_word2vec(*arguments):
        vectors = real_word2vec(*arguments)
        trained_words.append(set(vectors))
        return vectors

    monkeypatch.setattr(embeddings, "_word2vec", recording_word2vec)
    used = []
    for data_dir in (tiny_data_dir, poisoned):
        runs = tmp_path / "runs" / data_dir.name
        record = run_experiment(config, str(data_dir), runs, "test", echo=lambda line: None)
        assert record.status == "completed"
        network = keras.saving.load_model(Path(record.run_dir) / "model.keras")
        (embedding,) = [layer for layer in network.layers if isinstance(layer, keras.layers.Embedding)]
        used.append(embedding.get_weights()[0])

    # Trained afresh for each data folder (their corpora differ), to the same vectors.
    assert len(trained_words) == 2 and trained_words[0] == trained_words[1]
    np.testing.assert_array_equal(used[0], used[1])
    assert not any(word.startswith(("heldout", "testword")) for word in trained_words[1])
