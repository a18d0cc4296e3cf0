"""Datasets: finding, reading and splitting labelled texts.

IMDB (the Large Movie Review Dataset, 25,000 train / 25,000 test reviews) is read from a
local data directory, in either of two layouts, or downloaded once into the Keras cache:

    DATA_DIR/imdb/{train,test}.tsv.gz          gzip TSV with a `text` and a `label` column
    DATA_DIR/aclImdb/{train,test}/{neg,pos}/   the official archive, unpacked

Any other labelled text comes from files that `data.files` names: TSV, CSV or JSONL, plain or
gzip, or a folder with one sub-folder of .txt files per class. The data directory comes from
`--data-dir` or the RNNBENCH_DATA_DIR environment variable.
"""

from __future__ import annotations

import csv
import difflib
import gzip
import io
import json
import os
import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

import numpy as np

from rnnbench.config import DataConfig, FilesConfig
from rnnbench.errors import InputError

DATA_DIR_VARIABLE = "RNNBENCH_DATA_DIR"
IMDB_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
IMDB_SHA256 = "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe"
IMDB_CLASS_NAMES = ("negative", "positive")
# The TSV copy was made by sorting the official files by (label, review id) and shuffling
# with this seed; reading the official layout repeats that, so both layouts give one order.
IMDB_SHUFFLE_SEED = 2011
# Number of classes per built-in dataset, known without reading the data (for `summary`).
NUM_CLASSES = {"imdb": 2}
# The test split cut from a single file must be the same for every run, whatever its seed,
# so that runs stay comparable; only the validation split follows train.seed.
TEST_SPLIT_SEED = 0
_EXTENSIONS = {".tsv": "tsv", ".tab": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


class DataError(InputError):
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
    # Set only when the data has its own validation split (a validation file).
    validation_texts: Optional[list[str]] = None
    validation_labels: Optional[np.ndarray] = None
    # Counted, documented handling of imperfect rows, e.g. {"skipped_empty_texts": 3}.
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def load_dataset(settings: DataConfig, data_dir: Optional[str] = None) -> TextDataset:
    """Load the dataset `settings` describe; `settings.limit` keeps only the first N training rows."""
    if settings.dataset == "imdb":
        dataset = load_imdb(data_dir)
    else:
        dataset = load_files(settings.files, data_dir, settings.test_fraction)
    limit = settings.limit
    if limit is not None and limit < len(dataset.train_texts):
        dataset = replace(dataset, train_texts=dataset.train_texts[:limit], train_labels=dataset.train_labels[:limit])
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
        train_texts, train_labels = _read_imdb_tsv(folder / "train.tsv.gz")
        test_texts, test_labels = _read_imdb_tsv(folder / "test.tsv.gz")
    else:
        train_texts, train_labels = _read_review_folders(folder / "train")
        test_texts, test_labels = _read_review_folders(folder / "test")
    return TextDataset(
        name="imdb",
        train_texts=[_clean_review(text) for text in train_texts],
        train_labels=train_labels,
        test_texts=[_clean_review(text) for text in test_texts],
        test_labels=test_labels,
        class_names=IMDB_CLASS_NAMES,
        source=str(folder),
    )


def _read_imdb_tsv(path: Path) -> tuple[list[str], np.ndarray]:
    if not path.exists():
        raise DataError(f"{path}: file not found")
    texts, labels, _ = read_labelled(path, "tsv", "text", "label")
    unknown = sorted(set(labels) - {"0", "1"})
    if unknown:
        raise DataError(f"{path}: IMDB labels must be 0 or 1, found {unknown[0]!r}")
    return texts, np.asarray([label == "1" for label in labels], dtype=np.int64)


def _clean_review(text: str) -> str:
    # The reviews carry HTML line breaks; left in, every review would gain the word "br".
    return text.replace("<br />", " ")


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


def split_validation(
    labels: np.ndarray,
    fraction: float,
    seed: int,
    class_names: Optional[tuple[str, ...]] = None,
    what: str = "validation",
    source: str = "the training split",
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified, seeded hold-out: (kept rows, held-out rows), each in ascending order."""
    generator = np.random.default_rng(seed)
    held_out = []
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        count = int(round(fraction * len(rows)))
        if count == 0 or count == len(rows):
            name = class_names[label] if class_names else int(label)
            raise DataError(
                f"{source}: class {name!r} has {len(rows)} rows, too few to hold out a {what} fraction of {fraction}"
            )
        held_out.append(generator.permutation(rows)[:count])
    held_out_rows = np.sort(np.concatenate(held_out))
    kept_rows = np.setdiff1d(np.arange(len(labels)), held_out_rows)
    return kept_rows, held_out_rows


def load_files(files: FilesConfig, data_dir: Optional[str], test_fraction: float) -> TextDataset:
    """A dataset from files: one file (a test split is cut off), or train/test[/validation] files."""
    data_dir = data_dir or os.environ.get(DATA_DIR_VARIABLE) or None
    splits: dict[str, tuple[list[str], list[str], int, Path]] = {}
    for split in ("train", "test", "validation"):
        given = getattr(files, split)
        if given is None:
            continue
        path = resolve_path(given, data_dir, f"data.files.{split}")
        texts, labels, skipped = read_labelled(path, files.format, files.text_column, files.label_column)
        splits[split] = (texts, labels, skipped, path)

    class_names = _class_order({label for _, labels, _, _ in splits.values() for label in labels})
    if len(class_names) < 2:
        raise DataError(f"{splits['train'][3]}: found {len(class_names)} class ({', '.join(class_names)}); a classifier needs at least 2")
    codes = {name: code for code, name in enumerate(class_names)}
    encoded = {split: np.asarray([codes[label] for label in labels], dtype=np.int64) for split, (_, labels, _, _) in splits.items()}

    train_texts, _, _, train_path = splits["train"]
    train_labels = encoded["train"]
    notes: dict[str, Any] = {}
    for split, (_, _, skipped, path) in splits.items():
        if skipped:
            notes.setdefault("skipped_empty_texts", {})[str(path)] = skipped
    if "test" in splits:
        test_texts, test_labels = splits["test"][0], encoded["test"]
    else:
        kept, held_out = split_validation(
            train_labels, test_fraction, TEST_SPLIT_SEED, class_names, what="test", source=str(train_path)
        )
        test_texts = [train_texts[row] for row in held_out]
        test_labels = train_labels[held_out]
        train_texts = [train_texts[row] for row in kept]
        train_labels = train_labels[kept]
        notes["test_split"] = f"{test_fraction:g} of {train_path.name}, stratified (seed {TEST_SPLIT_SEED})"
    validation = splits.get("validation")
    return TextDataset(
        name=files.train,
        train_texts=train_texts,
        train_labels=train_labels,
        test_texts=test_texts,
        test_labels=test_labels,
        class_names=class_names,
        source=", ".join(str(path) for _, _, _, path in splits.values()),
        validation_texts=validation[0] if validation else None,
        validation_labels=encoded["validation"] if validation else None,
        notes=notes,
    )


def resolve_path(given: str, data_dir: Optional[str], key: str) -> Path:
    """A relative path is looked up in the data directory first, then in the current directory."""
    path = Path(given).expanduser()
    candidates = [path] if path.is_absolute() else ([Path(data_dir) / path] if data_dir else []) + [Path.cwd() / path]
    for candidate in candidates:
        if candidate.exists():
            return candidate
    looked = ", ".join(str(candidate) for candidate in candidates)
    raise DataError(f"{key}: {given} not found (looked in {looked}); relative paths are read from --data-dir / {DATA_DIR_VARIABLE}, then the current folder")


def _class_order(labels: set[str]) -> tuple[str, ...]:
    """Class names in a stable order: numerically when every label is an integer, else alphabetically."""
    if all(_is_integer(label) for label in labels):
        return tuple(sorted(labels, key=int))
    return tuple(sorted(labels))


def _is_integer(text: str) -> bool:
    return text.strip().lstrip("-").isdigit()


def read_labelled(path: Path, file_format: str, text_column: str, label_column: str) -> tuple[list[str], list[str], int]:
    """(texts, labels as strings, number of rows skipped for an empty text) from one file or class folder."""
    if file_format == "auto":
        file_format = _format_of(path)
    if file_format == "folders":
        return _read_class_folders(path)
    if path.is_dir():
        raise DataError(f"{path}: is a folder, but data.files.format is {file_format!r} (a folder of class folders needs 'folders' or 'auto')")
    text = _read_utf8(path)
    if not text.strip():
        raise DataError(f"{path}: the file is empty")
    reader = {"tsv": _tsv_rows, "csv": _csv_rows, "jsonl": _jsonl_rows}[file_format]
    texts: list[str] = []
    labels: list[str] = []
    skipped = 0
    for line_number, text_value, label in reader(path, text, text_column, label_column):
        if label is None or not str(label).strip():
            raise DataError(f"{path}: line {line_number}: missing label")
        if not text_value.strip():
            skipped += 1
            continue
        texts.append(text_value)
        labels.append(str(label).strip())
    if not texts:
        raise DataError(f"{path}: no rows with a text")
    return texts, labels, skipped


def _format_of(path: Path) -> str:
    if path.is_dir():
        return "folders"
    suffixes = [suffix.lower() for suffix in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    if suffixes and suffixes[-1] in _EXTENSIONS:
        return _EXTENSIONS[suffixes[-1]]
    raise DataError(f"{path}: cannot tell the format from the name; set data.files.format to tsv, csv, jsonl or folders")


def _read_utf8(path: Path) -> str:
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError) as error:
        raise DataError(f"{path}: cannot read ({error})") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise DataError(f"{path}: line {line}: not valid UTF-8 (byte {raw[error.start]:#04x})") from None


def _column(path: Path, header: list[str], name: str, key: str) -> int:
    if name in header:
        return header.index(name)
    suggestion = difflib.get_close_matches(name, header, n=1)
    hint = f" (did you mean {suggestion[0]!r}?)" if suggestion else ""
    raise DataError(f"{path}: no column {name!r} for {key}; the columns are {', '.join(header)}{hint}")


def _tsv_rows(path: Path, text: str, text_column: str, label_column: str):
    # No quoting: fields are split on tabs and rows on "\n" only (texts may hold U+0085).
    lines = text.split("\n")
    header = lines[0].rstrip("\r").split("\t")
    text_index = _column(path, header, text_column, "data.files.text_column")
    label_index = _column(path, header, label_column, "data.files.label_column")
    if len(lines) < 2 or not any(line.strip() for line in lines[1:]):
        raise DataError(f"{path}: no rows after the header")
    for line_number, line in enumerate(lines[1:], start=2):
        line = line.rstrip("\r")
        if not line:
            continue
        fields = line.split("\t")
        if len(fields) != len(header):
            raise DataError(f"{path}: line {line_number}: expected {len(header)} tab-separated fields, got {len(fields)}")
        yield line_number, fields[text_index], fields[label_index]


def _csv_rows(path: Path, text: str, text_column: str, label_column: str):
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
        text_index = _column(path, header, text_column, "data.files.text_column")
        label_index = _column(path, header, label_column, "data.files.label_column")
        rows = 0
        for fields in reader:
            if not fields:
                continue
            rows += 1
            if len(fields) != len(header):
                raise DataError(f"{path}: line {reader.line_num}: expected {len(header)} comma-separated fields, got {len(fields)}")
            yield reader.line_num, fields[text_index], fields[label_index]
    except csv.Error as error:
        raise DataError(f"{path}: line {reader.line_num}: {error}") from None
    if rows == 0:
        raise DataError(f"{path}: no rows after the header")


def _jsonl_rows(path: Path, text: str, text_column: str, label_column: str):
    for line_number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{path}: line {line_number}: not valid JSON ({error.msg})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}: line {line_number}: expected a JSON object, got {type(row).__name__}")
        if text_column not in row:
            raise DataError(f"{path}: line {line_number}: no key {text_column!r} for data.files.text_column; the keys are {', '.join(row)}")
        value, label = row[text_column], row.get(label_column)
        if not isinstance(value, str):
            raise DataError(f"{path}: line {line_number}: {text_column!r} is {json.dumps(value)}, not a string")
        if isinstance(label, bool) or not isinstance(label, (str, int, type(None))):
            raise DataError(f"{path}: line {line_number}: label {json.dumps(label)} is not a string or an integer")
        yield line_number, value, label


def _read_class_folders(root: Path) -> tuple[list[str], list[str], int]:
    """The layout keras.utils.text_dataset_from_directory reads: root/<class name>/*.txt."""
    if not root.is_dir():
        raise DataError(f"{root}: not a folder (the 'folders' format needs one sub-folder of .txt files per class)")
    classes = sorted(child for child in root.iterdir() if child.is_dir() and not child.name.startswith("."))
    if not classes:
        raise DataError(f"{root}: no class folders (expected one sub-folder of .txt files per class)")
    texts, labels, skipped = [], [], 0
    for folder in classes:
        for path in sorted(folder.glob("*.txt")):
            text = _read_utf8(path)
            if not text.strip():
                skipped += 1
                continue
            texts.append(text)
            labels.append(folder.name)
    if not texts:
        raise DataError(f"{root}: the class folders hold no .txt files with text")
    return texts, labels, skipped
