"""Datasets: finding, reading and splitting labelled texts.

IMDB (the Large Movie Review Dataset, 25,000 train / 25,000 test reviews) is read from a
local data directory, in either of two layouts, or downloaded once into the Keras cache:

    DATA_DIR/imdb/{train,test}.tsv.gz          gzip TSV with a `text` and a `label` column
    DATA_DIR/aclImdb/{train,test}/{neg,pos}/   the official archive, unpacked

The data directory comes from `--data-dir` or the RNNBENCH_DATA_DIR environment variable.
"""

from __future__ import annotations

import gzip
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

DATA_DIR_VARIABLE = "RNNBENCH_DATA_DIR"
IMDB_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
IMDB_SHA256 = "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe"
IMDB_CLASS_NAMES = ("negative", "positive")
# The TSV copy was made by sorting the official files by (label, review id) and shuffling
# with this seed; reading the official layout repeats that, so both layouts give one order.
IMDB_SHUFFLE_SEED = 2011
# Number of classes per built-in dataset, known without reading the data (for `summary`).
NUM_CLASSES = {"imdb": 2}


class DataError(Exception):
    """Data that can't be found or read, described in one line."""


@dataclass(frozen=True)
class TextDataset:
    name: str
    train_texts: list[str]
    train_labels: np.ndarray
    test_texts: list[str]
    test_labels: np.ndarray
    class_names: tuple[str, ...]
    source: str

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def load_dataset(name: str, data_dir: Optional[str] = None, limit: Optional[int] = None) -> TextDataset:
    """Load a built-in dataset; `limit` keeps only the first N training rows."""
    if name != "imdb":
        raise DataError(f"unknown dataset {name!r} (available: imdb)")
    dataset = load_imdb(data_dir)
    if limit is not None and limit < len(dataset.train_texts):
        dataset = TextDataset(
            name=dataset.name,
            train_texts=dataset.train_texts[:limit],
            train_labels=dataset.train_labels[:limit],
            test_texts=dataset.test_texts,
            test_labels=dataset.test_labels,
            class_names=dataset.class_names,
            source=dataset.source,
        )
    return dataset


def load_imdb(data_dir: Optional[str] = None, cache_dir: Optional[str] = None) -> TextDataset:
    """IMDB from `data_dir` (or RNNBENCH_DATA_DIR); without either, from the Keras cache or a download."""
    data_dir = data_dir or os.environ.get(DATA_DIR_VARIABLE) or None
    if data_dir is not None:
        found, looked = _find_imdb(Path(data_dir))
        if found is None:
            raise DataError(
                f"IMDB not found in {data_dir} (looked for {', '.join(looked)}); point --data-dir or "
                f"{DATA_DIR_VARIABLE} at a folder holding imdb/train.tsv.gz or aclImdb/, or unset it to download"
            )
    else:
        found = _cached_download(cache_dir) or download_imdb(cache_dir=cache_dir)
    return _read_imdb(found)


def _find_imdb(root: Path) -> tuple[Optional[Path], list[str]]:
    candidates = [root / "imdb", root, root / "aclImdb", root / "imdb" / "aclImdb"]
    looked = []
    for candidate in candidates:
        for marker in ("train.tsv.gz", "train/pos"):
            looked.append(str(candidate / marker))
            if (candidate / marker).exists():
                return candidate, looked
    return None, looked


def _keras_home(cache_dir: Optional[str]) -> Path:
    # The folder keras.utils.get_file uses, found without importing Keras.
    return Path(cache_dir or os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras"))


def _keras_cache(cache_dir: Optional[str]) -> Path:
    return _keras_home(cache_dir) / "datasets" / "aclImdb_v1_extracted" / "aclImdb"


def _cached_download(cache_dir: Optional[str]) -> Optional[Path]:
    folder = _keras_cache(cache_dir)
    return folder if (folder / "train" / "pos").is_dir() and (folder / "test" / "neg").is_dir() else None


def download_imdb(url: Optional[str] = None, sha256: Optional[str] = None, cache_dir: Optional[str] = None) -> Path:
    """Download and unpack the official archive into the Keras cache (sha256 checked); return aclImdb/."""
    import keras

    url, sha256 = url or IMDB_URL, sha256 or IMDB_SHA256
    home = _keras_home(cache_dir)
    # get_file silently switches to /tmp/.keras when the cache folder doesn't exist yet.
    home.mkdir(parents=True, exist_ok=True)
    print(f"IMDB: no local copy ({DATA_DIR_VARIABLE} is unset); downloading {url}", flush=True)
    try:
        extracted = keras.utils.get_file(
            fname="aclImdb_v1.tar.gz", origin=url, file_hash=sha256, extract=True, cache_dir=str(home)
        )
    except Exception as error:  # get_file raises bare Exceptions for network failures.
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DataError(
            f"IMDB download from {url} failed ({reason}); point --data-dir or {DATA_DIR_VARIABLE} at a local copy"
        ) from None
    folder = Path(extracted) / "aclImdb"
    if not (folder / "train" / "pos").is_dir():
        raise DataError(f"the archive from {url} has no aclImdb/train/pos folder (unpacked in {extracted})")
    return folder


def _read_imdb(folder: Path) -> TextDataset:
    if (folder / "train.tsv.gz").exists():
        train_texts, train_labels = read_tsv(folder / "train.tsv.gz")
        test_texts, test_labels = read_tsv(folder / "test.tsv.gz")
    else:
        train_texts, train_labels = _read_review_folders(folder / "train")
        test_texts, test_labels = _read_review_folders(folder / "test")
    for labels, split in ((train_labels, "train"), (test_labels, "test")):
        unknown = sorted(set(labels.tolist()) - {0, 1})
        if unknown:
            raise DataError(f"{folder}: IMDB {split} labels must be 0 or 1, found {unknown[0]}")
    return TextDataset(
        name="imdb",
        train_texts=[_clean_review(text) for text in train_texts],
        train_labels=train_labels,
        test_texts=[_clean_review(text) for text in test_texts],
        test_labels=test_labels,
        class_names=IMDB_CLASS_NAMES,
        source=str(folder),
    )


def _clean_review(text: str) -> str:
    # The reviews carry HTML line breaks; left in, every review would gain the word "br".
    return text.replace("<br />", " ")


def read_tsv(path: Path) -> tuple[list[str], np.ndarray]:
    """Read a gzip TSV with `text` and integer `label` columns (no quoting; one row per line)."""
    if not path.exists():
        raise DataError(f"{path}: file not found")
    texts: list[str] = []
    labels: list[int] = []
    try:
        # newline="\n": the texts hold U+0085, which universal newlines would split on.
        with gzip.open(path, "rt", encoding="utf-8", newline="\n") as lines:
            header = next(lines, "").rstrip("\r\n").split("\t")
            if "text" not in header or "label" not in header:
                raise DataError(f"{path}: line 1: expected a header with 'text' and 'label' columns, got {header}")
            text_column, label_column = header.index("text"), header.index("label")
            for line_number, line in enumerate(lines, start=2):
                fields = line.rstrip("\r\n").split("\t")
                if len(fields) != len(header):
                    raise DataError(f"{path}: line {line_number}: expected {len(header)} tab-separated fields, got {len(fields)}")
                try:
                    labels.append(int(fields[label_column]))
                except ValueError:
                    raise DataError(f"{path}: line {line_number}: label {fields[label_column]!r} is not an integer") from None
                texts.append(fields[text_column])
    except (OSError, EOFError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot read ({error})") from None
    return texts, np.asarray(labels, dtype=np.int64)


def _read_review_folders(split_folder: Path) -> tuple[list[str], np.ndarray]:
    """Read aclImdb's `neg/` and `pos/` files (named `<id>_<stars>.txt`) in the TSV copy's order."""
    rows = []
    for label, class_folder in enumerate(("neg", "pos")):
        folder = split_folder / class_folder
        if not folder.is_dir():
            raise DataError(f"{folder}: folder not found (expected aclImdb/{split_folder.name}/{{neg,pos}}/)")
        for path in folder.glob("*.txt"):
            review_id = int(path.stem.split("_")[0]) if path.stem.split("_")[0].isdigit() else -1
            rows.append((label, review_id, path.name, path))
    rows.sort(key=lambda row: row[:3])
    random.Random(IMDB_SHUFFLE_SEED).shuffle(rows)
    texts = []
    for _, _, _, path in rows:
        try:
            texts.append(path.read_text(encoding="utf-8").replace("\t", " "))
        except (OSError, UnicodeDecodeError) as error:
            raise DataError(f"{path}: cannot read ({error})") from None
    return texts, np.asarray([row[0] for row in rows], dtype=np.int64)


def split_validation(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified, seeded hold-out: (training rows, validation rows), each in ascending order."""
    generator = np.random.default_rng(seed)
    validation = []
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        count = int(round(fraction * len(rows)))
        if count == 0 or count == len(rows):
            raise DataError(
                f"class {label} has {len(rows)} training rows: too few to hold out a validation fraction of {fraction}"
            )
        validation.append(generator.permutation(rows)[:count])
    validation_rows = np.sort(np.concatenate(validation))
    training_rows = np.setdiff1d(np.arange(len(labels)), validation_rows)
    return training_rows, validation_rows
