"""Datasets: finding, reading and splitting labelled texts.

In: a `DataConfig` (which dataset, which files, how to split) and a data directory. Out: a
`TextDataset`: training and test texts with integer labels, the class names in a stable order,
an optional validation split, each training row's group, and `notes` that count what was done
to imperfect data (empty texts skipped, label spellings merged, texts shared with training).
Anything that can't be read becomes one `DataError` line that starts with the file or the
config key at fault; this module never prints, trains or writes.

IMDB (the Large Movie Review Dataset, 25,000 train / 25,000 test reviews) is read from a
local data directory, in either of two layouts, or downloaded once into the Keras cache:

    DATA_DIR/imdb/{train,test}.tsv.gz          gzip TSV with a `text` and a `label` column
    DATA_DIR/aclImdb/{train,test}/{neg,pos}/   the official archive, unpacked

Any other labelled text comes from files that `data.files` names: TSV, CSV or JSONL, plain or
gzip, UTF-8 with or without a byte order mark, Parquet (pyarrow), or a folder with one
sub-folder of .txt files per class. Labels that spell one value differently (`1`, `1.0`, `01`) are one class. A test or
validation file is refused when it holds a class the training file lacks, or when half of its
texts or more are training texts. The data directory comes from `--data-dir` or the
RNNBENCH_DATA_DIR environment variable.
"""

from __future__ import annotations

import csv
import difflib
import errno
import filecmp
import gzip
import io
import json
import math
import os
import random
import re
import zlib
from decimal import Decimal
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
# The TSV copy's column of IMDb film ids (aclImdb has them in urls_neg.txt and urls_pos.txt).
IMDB_FILM_COLUMN = "movie"
# Number of classes per built-in dataset, known without reading the data (for `summary`).
NUM_CLASSES = {"imdb": 2}
# The test split cut from a single file must be the same for every run, whatever its seed,
# so that runs stay comparable; only the validation split follows train.seed.
TEST_SPLIT_SEED = 0
_EXTENSIONS = {
    ".tsv": "tsv",
    ".tab": "tsv",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
}
# The key that names a file's text column, as errors about that column say.
TEXT_KEY = "data.files.text_column"


# Characters that would break an error message over several lines (str.splitlines splits on
# most of them) or garble a terminal: a message shows them escaped, as Python writes them.
_CONTROL_CHARACTERS = {
    code: repr(chr(code))[1:-1]
    for code in [*range(0x00, 0x09), *range(0x0A, 0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029]
}


class DataError(InputError):
    """Data that can't be found or read, described in one line."""

    def __init__(self, message: str):
        # Paths, column names and labels come from the user's files and may hold line breaks;
        # the command line prints an error as exactly one line. (Values quoted from a file are
        # kept short where they are quoted, with `_short`.)
        super().__init__(message.translate(_CONTROL_CHARACTERS))


def _short(value: str, limit: int = 40) -> str:
    """`value` as a message shows it: whole when short, else its start and end around '…'."""
    return value if len(value) <= limit else f"{value[: limit - 10]}…{value[-9:]}"


def _listed(names: list[str], limit: int = 8) -> str:
    """Up to `limit` names, shortened, then how many more there are."""
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(_short(name) for name in names[:limit]) + more


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
    # Each training row's group (IMDB's film, or data.files.group_column's value), and what a
    # group is ("film"); None when the data has no groups.
    train_groups: Optional[np.ndarray] = None
    group_name: Optional[str] = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def load_dataset(settings: DataConfig, data_dir: Optional[str] = None) -> TextDataset:
    """Load the dataset `settings` describe; `settings.limit` keeps a stratified sample of N training rows."""
    if settings.dataset == "imdb":
        dataset = load_imdb(data_dir)
    else:
        dataset = load_files(settings.files, data_dir, settings.test_fraction, settings.hold_out)
    limit = settings.limit
    if limit is not None and limit < len(dataset.train_texts):
        rows = stratified_sample(dataset.train_labels, limit)
        dataset = replace(
            dataset,
            train_texts=[dataset.train_texts[row] for row in rows],
            train_labels=dataset.train_labels[rows],
            train_groups=None if dataset.train_groups is None else dataset.train_groups[rows],
            notes={**dataset.notes, "limit": f"{limit:,} training rows, a stratified sample (seed {TEST_SPLIT_SEED})"},
        )
    return dataset


def stratified_sample(labels: np.ndarray, count: int) -> np.ndarray:
    """`count` rows in file order, each class in its share of `labels` (the same rows for every seed).

    The first N rows would do for a shuffled file but not for one sorted by label, where they
    would hold a single class.
    """
    classes, sizes = np.unique(labels, return_counts=True)
    exact = count * sizes / len(labels)
    # Largest remainders: the shares add up to `count`, and every class keeps at least one row.
    taken = np.maximum(np.floor(exact).astype(int), 1)
    for position in np.argsort(-(exact - np.floor(exact)), kind="stable"):
        if taken.sum() >= count:
            break
        taken[position] += 1
    generator = np.random.default_rng(TEST_SPLIT_SEED)
    rows = [generator.permutation(np.flatnonzero(labels == label))[:size] for label, size in zip(classes, taken)]
    return np.sort(np.concatenate(rows))


def load_imdb(data_dir: Optional[str] = None, cache_dir: Optional[str] = None) -> TextDataset:
    """IMDB from `data_dir` (or RNNBENCH_DATA_DIR); without either, from the Keras cache or a download."""
    return _read_imdb(imdb_folder(data_dir, cache_dir))


def imdb_folder(data_dir: Optional[str] = None, cache_dir: Optional[str] = None) -> Path:
    """The folder IMDB is read from: the one in `data_dir` (or RNNBENCH_DATA_DIR) holding
    train.tsv.gz or train/pos/; without either, the Keras cache's aclImdb/, downloaded once."""
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
    return found


def _find_imdb(root: Path) -> tuple[Optional[Path], list[str]]:
    candidates = [root / "imdb", root, root / "aclImdb", root / "imdb" / "aclImdb"]
    looked = []
    for candidate in candidates:
        for marker in ("train.tsv.gz", "train/pos"):
            looked.append(str(candidate / marker))
            if _exists(candidate / marker, f"--data-dir / {DATA_DIR_VARIABLE}"):
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
        train_texts, train_labels, train_films = _read_imdb_tsv(folder / "train.tsv.gz")
        test_texts, test_labels, _ = _read_imdb_tsv(folder / "test.tsv.gz")
    else:
        train_texts, train_labels, train_films = _read_review_folders(folder / "train")
        test_texts, test_labels, _ = _read_review_folders(folder / "test")
    return TextDataset(
        name="imdb",
        train_texts=[clean_review(text) for text in train_texts],
        train_labels=train_labels,
        test_texts=[clean_review(text) for text in test_texts],
        test_labels=test_labels,
        class_names=IMDB_CLASS_NAMES,
        source=str(folder),
        train_groups=train_films,
        group_name=None if train_films is None else "film",
    )


def _read_imdb_tsv(path: Path) -> tuple[list[str], np.ndarray, Optional[np.ndarray]]:
    """Texts, 0/1 labels and, when the file has a `movie` column, each review's IMDb film id."""
    if not path.exists():
        raise DataError(f"{path}: file not found")
    rows = read_labelled(path, "tsv", "text", "label", group_column=IMDB_FILM_COLUMN, group_required=False)
    unknown = sorted(set(rows.labels) - {"0", "1"})
    if unknown:
        raise DataError(f"{path}: IMDB labels must be 0 or 1, found {unknown[0]!r}")
    films = None if rows.groups is None else np.asarray(rows.groups)
    return rows.texts, np.asarray([label == "1" for label in rows.labels], dtype=np.int64), films


def clean_review(text: str) -> str:
    # The reviews carry HTML line breaks; left in, every review would gain the word "br".
    return text.replace("<br />", " ")


def _read_review_folders(split_folder: Path) -> tuple[list[str], np.ndarray, Optional[np.ndarray]]:
    """Read aclImdb's `neg/` and `pos/` files (named `<id>_<stars>.txt`) in the TSV copy's order,
    with each review's film from `urls_neg.txt` / `urls_pos.txt` when they are there."""
    rows = []
    films: dict[tuple[int, int], str] = {}
    for label, class_folder in enumerate(("neg", "pos")):
        folder = split_folder / class_folder
        if not folder.is_dir():
            raise DataError(f"{folder}: folder not found (expected aclImdb/{split_folder.name}/{{neg,pos}}/)")
        for path in folder.glob("*.txt"):
            review_id = int(path.stem.split("_")[0]) if path.stem.split("_")[0].isdigit() else -1
            rows.append((label, review_id, path.name, path))
        films.update(
            {
                (label, review_id): film
                for review_id, film in enumerate(_film_ids(split_folder / f"urls_{class_folder}.txt"))
            }
        )
    rows.sort(key=lambda row: row[:3])
    random.Random(IMDB_SHUFFLE_SEED).shuffle(rows)
    texts = []
    for _, _, _, path in rows:
        try:
            texts.append(path.read_text(encoding="utf-8").replace("\t", " "))
        except (OSError, UnicodeDecodeError) as error:
            raise DataError(f"{path}: cannot read ({error})") from None
    review_films = [films.get((label, review_id)) for label, review_id, _, _ in rows]
    groups = None if None in review_films else np.asarray(review_films)
    return texts, np.asarray([row[0] for row in rows], dtype=np.int64), groups


def _film_ids(urls: Path) -> list[str]:
    """The IMDb title id on each line of an aclImdb `urls_*.txt` file (line i is review i); [] if absent."""
    try:
        lines = urls.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError):
        return []
    found = [re.search(r"tt\d+", line) for line in lines if line.strip()]
    return [match.group(0) if match else "" for match in found]


def split_validation(
    labels: np.ndarray,
    fraction: float,
    seed: int,
    class_names: Optional[tuple[str, ...]] = None,
    what: str = "validation",
    source: str = "the training split",
    groups: Optional[np.ndarray] = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified, seeded hold-out: (kept rows, held-out rows), each in ascending order.

    With `groups` (one value per row), whole groups are held out, so that no group is on both
    sides, and the held-out share of each class comes as close to `fraction` as the groups allow.
    """
    if groups is not None:
        return _split_groups(labels, groups, fraction, seed, class_names, what, source)
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


def _split_groups(
    labels: np.ndarray,
    groups: np.ndarray,
    fraction: float,
    seed: int,
    class_names: Optional[tuple[str, ...]],
    what: str,
    source: str,
) -> tuple[np.ndarray, np.ndarray]:
    names, group_of_row = np.unique(groups, return_inverse=True)
    num_classes = int(labels.max()) + 1
    # Rows of each class in each group.
    counts = np.zeros((len(names), num_classes), dtype=np.int64)
    np.add.at(counts, (group_of_row, labels), 1)
    target = fraction * np.bincount(labels, minlength=num_classes)
    held = np.zeros(num_classes)
    chosen = np.zeros(len(names), dtype=bool)
    order = np.random.default_rng(seed).permutation(len(names))
    # Groups in a seeded random order; one is held out if that brings the held-out class counts
    # closer to their targets. The first pass overfills no class, the second tops up with
    # groups that still help, so a class is not overfilled early to fill another.
    for may_overfill in (False, True):
        for group in order[~chosen[order]]:
            after = held + counts[group]
            if (may_overfill or np.all(after <= target)) and np.abs(target - after).sum() < np.abs(target - held).sum():
                held, chosen[group] = after, True
    held_out_rows = np.flatnonzero(chosen[group_of_row])
    kept_rows = np.flatnonzero(~chosen[group_of_row])
    for label in range(num_classes):
        if held[label] == 0 or held[label] == np.sum(labels == label):
            name = class_names[label] if class_names else label
            raise DataError(
                f"{source}: class {name!r} is in too few groups ({int(np.count_nonzero(counts[:, label]))}) to hold out"
                f" a {what} fraction of {fraction} by group; use data.hold_out: rows"
            )
    return kept_rows, held_out_rows


def shared_group_share(
    groups: Optional[np.ndarray], kept_rows: np.ndarray, held_out_rows: np.ndarray
) -> Optional[float]:
    """The share of held-out rows whose group also has rows among the kept ones (None without groups)."""
    if groups is None or len(held_out_rows) == 0:
        return None
    return float(np.mean(np.isin(groups[held_out_rows], groups[kept_rows])))


def load_files(
    files: FilesConfig, data_dir: Optional[str], test_fraction: float, hold_out: str = "groups"
) -> TextDataset:
    """A dataset from files: one file (a test split is cut off), or train/test[/validation] files."""
    paths, splits = _read_split_files(files, data_dir)
    train_path = paths["train"]
    class_names, encoded, notes = _encode_classes(splits, train_path)
    for split in ("test", "validation"):
        if split in splits:
            _check_classes_are_in_training(paths[split], encoded[split], encoded["train"], class_names, train_path)
            shared = _texts_in_training(split, paths[split], splits[split].texts, train_path, splits["train"].texts)
            if shared:
                notes[f"{split}_texts_in_training"] = shared
    for split, rows in splits.items():
        if rows.skipped:
            notes.setdefault("skipped_empty_texts", {})[str(paths[split])] = rows.skipped

    train_texts, train_labels = splits["train"].texts, encoded["train"]
    train_groups = None if splits["train"].groups is None else np.asarray(splits["train"].groups)
    if "test" in splits:
        test_texts, test_labels = splits["test"].texts, encoded["test"]
    else:
        by_group = train_groups is not None and hold_out == "groups"
        kept, held_out = split_validation(
            train_labels,
            test_fraction,
            TEST_SPLIT_SEED,
            class_names,
            what="test",
            source=str(train_path),
            groups=train_groups if by_group else None,
        )
        test_texts = [train_texts[row] for row in held_out]
        test_labels = train_labels[held_out]
        train_texts = [train_texts[row] for row in kept]
        train_labels = train_labels[kept]
        whole = f", whole {files.group_column} groups" if by_group else ""
        notes["test_split"] = f"{test_fraction:g} of {train_path.name}, stratified{whole} (seed {TEST_SPLIT_SEED})"
        if train_groups is not None:
            train_groups = train_groups[kept]
    validation = splits.get("validation")
    return TextDataset(
        name=files.train,
        train_texts=train_texts,
        train_labels=train_labels,
        test_texts=test_texts,
        test_labels=test_labels,
        class_names=class_names,
        source=", ".join(str(path) for path in paths.values()),
        validation_texts=validation.texts if validation else None,
        validation_labels=encoded["validation"] if validation else None,
        notes=notes,
        train_groups=train_groups,
        group_name=files.group_column if train_groups is not None else None,
    )


def _read_split_files(files: FilesConfig, data_dir: Optional[str]) -> tuple[dict[str, Path], dict[str, LabelledRows]]:
    """The path and rows of each file `files` names, by split ("train", "test", "validation")."""
    data_dir = data_dir or os.environ.get(DATA_DIR_VARIABLE) or None
    paths: dict[str, Path] = {}
    splits: dict[str, LabelledRows] = {}
    for split in ("train", "test", "validation"):
        given = getattr(files, split)
        if given is None:
            continue
        paths[split] = resolve_path(given, data_dir, f"data.files.{split}")
        # Only the training file's groups are used: validation and single-file test splits are cut from it.
        group_column = files.group_column if split == "train" else None
        splits[split] = read_labelled(
            paths[split], files.format, files.text_column, files.label_column, group_column=group_column
        )
    return paths, splits


def _encode_classes(
    splits: dict[str, LabelledRows], train_path: Path
) -> tuple[tuple[str, ...], dict[str, np.ndarray], dict[str, Any]]:
    """The class names of every split's labels together, each split's labels as class indices, and
    notes on label spellings that were merged."""
    class_of, merged = _classes_of_labels([label for rows in splits.values() for label in rows.labels])
    class_names = _class_order(set(class_of.values()))
    if len(class_names) < 2:
        raise DataError(
            f"{train_path}: found {len(class_names)} class ({_listed(list(class_names))}); a classifier needs at least 2"
        )
    codes = {name: code for code, name in enumerate(class_names)}
    encoded = {
        split: np.asarray([codes[class_of[label]] for label in rows.labels], dtype=np.int64)
        for split, rows in splits.items()
    }
    return class_names, encoded, {"merged_labels": merged} if merged else {}


def resolve_path(given: str, data_dir: Optional[str], key: str) -> Path:
    """A relative path is looked up in the data directory first, then in the current directory."""
    try:
        path = Path(given).expanduser()
    except RuntimeError:  # "~user/..." for a user the system doesn't know
        raise DataError(
            f"{key}: {_short(given, 200)}: cannot tell which home folder {given.split('/')[0]!r} means"
        ) from None
    candidates = [path] if path.is_absolute() else ([Path(data_dir) / path] if data_dir else []) + [Path.cwd() / path]
    for candidate in candidates:
        if _exists(candidate, key):
            return candidate
    looked = ", ".join(str(candidate) for candidate in candidates)
    raise DataError(
        f"{key}: {given} not found (looked in {looked}); relative paths are read from --data-dir / {DATA_DIR_VARIABLE}, then the current folder"
    )


def _exists(path: Path, key: str) -> bool:
    """Whether `path` exists; a path the system can't even look up is an error naming `key`."""
    try:
        return path.exists()
    except OSError as error:
        # Path.exists answers False only for a missing file; a name longer than the file system
        # allows, or a folder that may not be searched, raises.
        if error.errno == errno.ENAMETOOLONG:
            raise DataError(_name_too_long(path, key)) from None
        raise DataError(f"{key}: cannot look up {path} ({error.strerror or error})") from None


def _name_too_long(path: Path, key: str) -> str:
    def size(text: str) -> int:
        return len(text.encode("utf-8", "surrogatepass"))

    try:
        name_limit = os.pathconf(path.anchor or ".", "PC_NAME_MAX")
    except (OSError, ValueError):
        name_limit = 255
    longest = max(path.parts, key=size)
    if size(longest) > name_limit:
        return (
            f"{key}: the name {_short(longest)!r} is {size(longest):,} bytes long;"
            f" the file system allows names of at most {name_limit} bytes"
        )
    return (
        f"{key}: the path {_short(str(path), 80)} is {size(str(path)):,} bytes long, longer than the file system allows"
    )


# Booleans as pandas, Python and JSON write them (any case); among numbers they are 1 and 0.
_BOOLEANS = {"false": "0", "true": "1"}
# A decimal number as spreadsheets and pandas write one: sign, digits, decimal point. Exponents
# are left out: "1e9999999" would spell a number too long to write out.
_NUMBER = re.compile(r"([+-]?)([0-9]*)(?:\.([0-9]*))?")


def _classes_of_labels(labels: list[str]) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Each label's class name, and for each class that several spellings merged into, the spellings.

    Files written by different tools spell one label differently: `1`, `1.0`, `01` and `+1` are
    one number; `True` and `true` one boolean, and next to numeric 0/1 labels `True` is 1 and
    `False` 0. Left apart, each spelling would be a class of its own, and the model would be
    asked to tell a class from itself. Numbers take their shortest spelling (`1.0` is `1`, `01` is
    `1`, `2.50` is `2.5`); any other label keeps its spelling, so distinct strings stay distinct.
    """
    spellings = list(dict.fromkeys(labels))  # distinct, in the order they first occur
    numbers = {label: _number_spelling(label) for label in spellings}
    booleans = [label for label in spellings if label.lower() in _BOOLEANS]
    others = [label for label in spellings if numbers[label] is None and label not in booleans]
    booleans_are_numbers = bool(booleans) and not others and any(number is not None for number in numbers.values())
    boolean_spellings = {label.lower() for label in booleans}
    if booleans_are_numbers:
        boolean_names = {label: _BOOLEANS[label.lower()] for label in booleans}
    elif len(boolean_spellings) < len(booleans):
        # `True` beside `true`: one boolean in two spellings, named as JSON writes it.
        boolean_names = {label: label.lower() for label in booleans}
    else:
        boolean_names = {label: label for label in booleans}
    class_of = {label: numbers[label] or boolean_names.get(label, label) for label in spellings}
    merged: dict[str, list[str]] = {}
    for label in spellings:
        merged.setdefault(class_of[label], []).append(label)
    return class_of, {name: found for name, found in merged.items() if len(found) > 1}


def _number_spelling(label: str) -> Optional[str]:
    """The shortest spelling of the number `label` writes ("01" and "1.0" are "1"), or None if it is no number."""
    match = _NUMBER.fullmatch(label)
    if match is None or not (match[2] or match[3]):
        return None
    sign, whole, fraction = match.groups()
    # Worked on as text, not as int or float: a label may hold more digits than int() converts
    # (sys.int_max_str_digits) or a float keeps.
    value = (whole.lstrip("0") or "0") + ("." + fraction.rstrip("0") if fraction and fraction.rstrip("0") else "")
    return "-" + value if sign == "-" and value != "0" else value


def _class_order(labels: set[str]) -> tuple[str, ...]:
    """Class names in a stable order: numerically when every label is an integer, else alphabetically."""
    if all(_is_integer(label) for label in labels):
        # Decimal, not int: it compares integers of any length.
        return tuple(sorted(labels, key=Decimal))
    return tuple(sorted(labels))


def _is_integer(text: str) -> bool:
    # ASCII digits only: str.isdigit also accepts "²" and "١", which int() and Decimal refuse or misread.
    return re.fullmatch(r"-?[0-9]+", text) is not None


def _check_classes_are_in_training(
    path: Path, labels: np.ndarray, train_labels: np.ndarray, class_names: tuple[str, ...], train_path: Path
) -> None:
    """A class no training row has can't be learnt; each of its rows would count as an error whatever the model does."""
    unseen = np.setdiff1d(labels, train_labels)
    if len(unseen):
        name, rows = class_names[unseen[0]], int(np.sum(labels == unseen[0]))
        raise DataError(
            f"{path}: class {_short(name)!r} ({rows:,} rows) does not occur in the training file {train_path}; a model can't learn it"
        )


# A test or validation file that mostly repeats training texts measures memory, not how a model
# does on texts it hasn't seen: from this share of its rows on, it is refused. Below it, the
# shared rows are counted in the notes (IMDB's test split has 123 texts of its training split).
_SHARED_TEXTS_LIMIT = 0.5


def _texts_in_training(split: str, path: Path, texts: list[str], train_path: Path, train_texts: list[str]) -> int:
    """How many of `texts` (rows of the `split` file) are also training texts; an error from half of them on."""
    training = set(train_texts)
    shared = sum(text in training for text in texts)
    if shared < _SHARED_TEXTS_LIMIT * len(texts):
        return shared
    if _same_file(path, train_path):
        how = " (it is the training file)"
    elif path.is_file() and train_path.is_file() and filecmp.cmp(path, train_path, shallow=False):
        how = " (the two files hold the same bytes)"
    else:
        how = ""
    raise DataError(
        f"{path}: {math.floor(100 * shared / len(texts))}% of its rows ({shared:,} of {len(texts):,}) have a text that is also"
        f" in the training file {train_path}{how}; a {split} file must hold texts the model does not train on"
    )


def _same_file(path: Path, other: Path) -> bool:
    try:
        return os.path.samefile(path, other)
    except OSError:
        return False


@dataclass(frozen=True)
class LabelledRows:
    """The rows of one file: texts, labels as strings, groups (None without a group column), and
    how many rows were skipped for an empty text."""

    texts: list[str]
    labels: list[str]
    skipped: int
    groups: Optional[list[str]] = None


def read_labelled(
    path: Path,
    file_format: str,
    text_column: str,
    label_column: str,
    group_column: Optional[str] = None,
    group_required: bool = True,
) -> LabelledRows:
    """The labelled rows of one file or class folder; with `group_column`, each row's group too
    (a file without that column is an error if `group_required`, else it has no groups)."""
    if file_format == "auto":
        file_format = _format_of(path)
    if file_format == "folders":
        if group_column is not None:
            raise DataError(f"{path}: the 'folders' format has no columns, so data.files.group_column can't be read")
        texts, labels, skipped = _read_class_folders(path)
        return LabelledRows(texts, labels, skipped)
    if path.is_dir():
        raise DataError(
            f"{path}: is a folder, but data.files.format is {file_format!r} (a folder of class folders needs 'folders' or 'auto')"
        )
    if file_format == "parquet":
        rows = _parquet_rows(path, text_column, label_column, group_column, group_required)
    else:
        text = read_text(path)
        if not text.strip():
            raise DataError(f"{path}: the file is empty")
        reader = {"tsv": _tsv_rows, "csv": _csv_rows, "jsonl": _jsonl_rows}[file_format]
        rows = reader(path, text, text_column, label_column, group_column, group_required)
    # A Parquet file has rows, not lines: its errors count rows from 1.
    place = "row" if file_format == "parquet" else "line"
    texts: list[str] = []
    labels: list[str] = []
    groups: list[str] = []
    has_groups = False
    skipped = 0
    for line_number, text_value, label, group in rows:
        if label is None or not str(label).strip():
            raise DataError(f"{path}: {place} {line_number}: missing label")
        if not text_value.strip():
            skipped += 1
            continue
        texts.append(text_value)
        labels.append(str(label).strip())
        if group is not None:
            has_groups = True
            if not str(group).strip():
                raise DataError(f"{path}: {place} {line_number}: missing group in column {group_column!r}")
            groups.append(str(group).strip())
    if not texts:
        raise DataError(f"{path}: no rows with a text")
    return LabelledRows(texts, labels, skipped, groups if has_groups else None)


def read_texts(path: Path, text_column: str, text_key: str) -> list[str]:
    """Every text of one file, without labels (texts to classify): the `text_column` of a TSV, CSV,
    JSONL or Parquet file, told by its name as data.files are, or else one text per line; gzip or
    plain. `text_key` is the option that chose the column, for errors."""
    suffixes = [suffix.lower() for suffix in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    file_format = _EXTENSIONS.get(suffixes[-1]) if suffixes else None
    if file_format == "parquet":
        rows = _parquet_rows(path, text_column, None, None, False, text_key)
        # A null text is an empty one here, as an empty field is in the other formats.
        return [text_value for _, text_value, _, _ in rows]
    content = read_text(path)
    if file_format is None:
        lines = content.split("\n")
        return lines[:-1] if lines and lines[-1] == "" else lines
    reader = {"tsv": _tsv_rows, "csv": _csv_rows, "jsonl": _jsonl_rows}[file_format]
    return [text_value for _, text_value, _, _ in reader(path, content, text_column, None, None, False, text_key)]


def _format_of(path: Path) -> str:
    if path.is_dir():
        return "folders"
    suffixes = [suffix.lower() for suffix in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    if suffixes and suffixes[-1] in _EXTENSIONS:
        return _EXTENSIONS[suffixes[-1]]
    raise DataError(
        f"{path}: cannot tell the format from the name; set data.files.format to tsv, csv, jsonl or folders"
    )


# What text editors and spreadsheet programs put at the start of a Unicode file.
_UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def read_text(path: Path) -> str:
    """A file's text: gunzipped when it starts with gzip's magic bytes, decoded as UTF-8, with no byte order mark."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror or error})") from None
    if raw[:2] == b"\x1f\x8b":
        raw = _gunzip(path, raw)
    # Spreadsheet programs save "CSV UTF-8" with a byte order mark first; left in, it would
    # become part of the first column's name ("\ufefftext"), and that column would not be found.
    if raw.startswith(_UTF8_BOM):
        raw = raw[len(_UTF8_BOM) :]
    elif raw[:2] in _UTF16_BOMS:
        raise DataError(f"{path}: the file is UTF-16 (it starts with a UTF-16 byte order mark); save it as UTF-8")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise DataError(f"{path}: line {line}: not valid UTF-8 (byte {raw[error.start]:#04x})") from None


def _gunzip(path: Path, raw: bytes) -> bytes:
    # A gzip header followed by a damaged or cut-off body raises zlib.error, EOFError or
    # gzip.BadGzipFile (an OSError), depending on where the damage is.
    try:
        return gzip.decompress(raw)
    except EOFError:
        reason = "its compressed data ends early; was the file cut short?"
    except (OSError, zlib.error) as error:
        reason = str(error)
    raise DataError(f"{path}: not a valid gzip file ({reason})")


def _column(path: Path, header: list[str], name: str, key: str) -> int:
    if name in header:
        return header.index(name)
    suggestion = difflib.get_close_matches(name, header, n=1)
    hint = f" (did you mean {_short(suggestion[0])!r}?)" if suggestion else ""
    raise DataError(f"{path}: no column {_short(name)!r} for {key}; the columns are {_listed(header)}{hint}")


def _label_index(path: Path, header: list[str], label_column: Optional[str]) -> Optional[int]:
    # No label column: texts read to be classified, not to train on.
    return None if label_column is None else _column(path, header, label_column, "data.files.label_column")


def _field(fields: list[str], index: Optional[int]) -> Optional[str]:
    return None if index is None else fields[index]


def _group_index(path: Path, header: list[str], group_column: Optional[str], required: bool) -> Optional[int]:
    if group_column is None or (group_column not in header and not required):
        return None
    return _column(path, header, group_column, "data.files.group_column")


def _tsv_rows(
    path: Path,
    text: str,
    text_column: str,
    label_column: Optional[str],
    group_column: Optional[str],
    group_required: bool,
    text_key: str = TEXT_KEY,
):
    # No quoting: fields are split on tabs and rows on "\n" only (texts may hold U+0085).
    lines = text.split("\n")
    header = lines[0].rstrip("\r").split("\t")
    text_index = _column(path, header, text_column, text_key)
    label_index = _label_index(path, header, label_column)
    group_index = _group_index(path, header, group_column, group_required)
    if len(lines) < 2 or not any(line.strip() for line in lines[1:]):
        raise DataError(f"{path}: no rows after the header")
    for line_number, line in enumerate(lines[1:], start=2):
        line = line.rstrip("\r")
        if not line:
            continue
        fields = line.split("\t")
        if len(fields) != len(header):
            raise DataError(
                f"{path}: line {line_number}: expected {len(header)} tab-separated fields, got {len(fields)}"
            )
        yield line_number, fields[text_index], _field(fields, label_index), _field(fields, group_index)


def _csv_rows(
    path: Path,
    text: str,
    text_column: str,
    label_column: Optional[str],
    group_column: Optional[str],
    group_required: bool,
    text_key: str = TEXT_KEY,
):
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
        text_index = _column(path, header, text_column, text_key)
        label_index = _label_index(path, header, label_column)
        group_index = _group_index(path, header, group_column, group_required)
        rows = 0
        for fields in reader:
            if not fields:
                continue
            rows += 1
            if len(fields) != len(header):
                raise DataError(
                    f"{path}: line {reader.line_num}: expected {len(header)} comma-separated fields, got {len(fields)}"
                )
            yield reader.line_num, fields[text_index], _field(fields, label_index), _field(fields, group_index)
    except csv.Error as error:
        raise DataError(f"{path}: line {reader.line_num}: {error}") from None
    if rows == 0:
        raise DataError(f"{path}: no rows after the header")


def _jsonl_rows(
    path: Path,
    text: str,
    text_column: str,
    label_column: Optional[str],
    group_column: Optional[str],
    group_required: bool,
    text_key: str = TEXT_KEY,
):
    has_groups: Optional[bool] = None
    for line_number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{path}: line {line_number}: not valid JSON ({error.msg})") from None
        except RecursionError:
            raise DataError(f"{path}: line {line_number}: not valid JSON (nested too deeply)") from None
        except ValueError as error:  # an integer longer than Python converts (sys.int_max_str_digits)
            raise DataError(f"{path}: line {line_number}: not valid JSON ({str(error).split(';')[0]})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}: line {line_number}: expected a JSON object, got {type(row).__name__}")
        if text_column not in row:
            raise DataError(
                f"{path}: line {line_number}: no key {_short(text_column)!r} for {text_key}; the keys are {_listed(list(row))}"
            )
        value = row[text_column]
        if not isinstance(value, str):
            raise DataError(
                f"{path}: line {line_number}: {_short(text_column)!r} is {_short(json.dumps(value))}, not a string"
            )
        label = None if label_column is None else _json_label(path, line_number, row.get(label_column))
        group = None
        if group_column is not None and has_groups is None:
            # The first row says whether the file has groups, as a header would; from then on
            # every row needs one, so that each text keeps its own group.
            has_groups = group_required or group_column in row
        if has_groups:
            group = row.get(group_column)
            if isinstance(group, bool) or not isinstance(group, (str, int)):
                raise DataError(
                    f"{path}: line {line_number}: group {_short(json.dumps(group))} in {_short(group_column)!r} is not a string or an integer"
                )
        yield line_number, value, label, group


def _parquet_rows(
    path: Path,
    text_column: str,
    label_column: Optional[str],
    group_column: Optional[str],
    group_required: bool,
    text_key: str = TEXT_KEY,
):
    """A Parquet file's rows, numbered from 1, as the text readers give them: a null text is an
    empty one (skipped and counted), labels are written as in JSONL, groups are strings or integers."""
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise DataError(f"{path}: reading a Parquet file needs pyarrow: pip install pyarrow") from None
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror or error})") from None
    if not raw:
        raise DataError(f"{path}: the file is empty")
    if raw[:2] == b"\x1f\x8b":
        raw = _gunzip(path, raw)
    try:
        parquet = pyarrow.parquet.ParquetFile(pyarrow.BufferReader(raw))
        header = list(parquet.schema_arrow.names)
    except (pyarrow.ArrowException, OSError, ValueError) as error:
        raise DataError(f"{path}: not a valid Parquet file ({_first_line(error)})") from None
    text_index = _column(path, header, text_column, text_key)
    label_index = _label_index(path, header, label_column)
    group_index = _group_index(path, header, group_column, group_required)
    wanted = [header[index] for index in (text_index, label_index, group_index) if index is not None]
    try:
        table = parquet.read(columns=list(dict.fromkeys(wanted)))
    except (pyarrow.ArrowException, OSError, ValueError) as error:
        raise DataError(f"{path}: not a valid Parquet file ({_first_line(error)})") from None
    if table.num_rows == 0:
        raise DataError(f"{path}: the file has no rows")
    text_type = table.schema.field(text_column).type
    if not _holds_strings(pyarrow, text_type):
        raise DataError(f"{path}: column {_short(text_column)!r} for {text_key} holds {text_type}, not strings")
    texts = table.column(text_column).to_pylist()
    labels = table.column(label_column).to_pylist() if label_index is not None else [None] * len(texts)
    groups = table.column(group_column).to_pylist() if group_index is not None else None
    for row, text_value in enumerate(texts, start=1):
        label = None if label_index is None else _parquet_label(path, row, labels[row - 1])
        group = None
        if groups is not None:
            group = groups[row - 1]
            if group is None:
                raise DataError(f"{path}: row {row}: missing group in column {group_column!r}")
            if isinstance(group, bool) or not isinstance(group, (str, int)):
                raise DataError(
                    f"{path}: row {row}: group {_short(repr(group))} in {_short(group_column)!r} is not a string or an integer"
                )
        yield row, "" if text_value is None else text_value, label, group


def _holds_strings(pyarrow: Any, column_type: Any) -> bool:
    # pandas writes a categorical column as a dictionary of strings.
    if pyarrow.types.is_dictionary(column_type):
        column_type = column_type.value_type
    return pyarrow.types.is_string(column_type) or pyarrow.types.is_large_string(column_type)


def _parquet_label(path: Path, row: int, label: Any) -> Optional[str]:
    """A Parquet label as text, spelled as a JSON label of the same value is."""
    if label is None or isinstance(label, (str, bool, int)) or (isinstance(label, float) and math.isfinite(label)):
        return _json_label(path, row, label)
    raise DataError(f"{path}: row {row}: label {_short(repr(label))} is not a string, a number or a boolean")


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _json_label(path: Path, line_number: int, label: Any) -> Optional[str]:
    """A JSON label as text: numbers as Python writes them (1, 1.0), booleans as JSON does (true)."""
    if label is None or isinstance(label, str):
        return label
    if isinstance(label, bool):
        return "true" if label else "false"
    if isinstance(label, int) or (isinstance(label, float) and math.isfinite(label)):
        return repr(label)
    raise DataError(
        f"{path}: line {line_number}: label {_short(json.dumps(label))} is not a string, a number or a boolean"
    )


# The suffix keras.utils.text_dataset_from_directory reads, in any case.
_TEXT_FILE_SUFFIX = ".txt"


def _read_class_folders(root: Path) -> tuple[list[str], list[str], int]:
    """The layout keras.utils.text_dataset_from_directory reads: root/<class name>/**/*.txt.

    This mirrors Keras 3's `index_directory` and `iter_valid_files` (keras/src/utils/dataset_utils.py):
    the classes are root's sub-folders (links to folders too) whose names don't start with ".",
    in sorted order; a class's texts are the files anywhere below its folder, found by os.walk
    (which doesn't enter linked folders), whose names end in ".txt" in any case (".TXT", and
    hidden files too), in sorted folder order, then sorted name order. Unlike Keras, which would
    keep a class with no files and never show a model one of its rows, a class folder without
    .txt files is an error, and so is a sub-folder that can't be listed (Keras skips it).
    """
    if not root.is_dir():
        raise DataError(f"{root}: not a folder (the 'folders' format needs one sub-folder of .txt files per class)")
    try:
        classes = [name for name in sorted(os.listdir(root)) if not name.startswith(".") and (root / name).is_dir()]
    except OSError as error:
        raise DataError(f"{root}: cannot list the folder ({error.strerror or error})") from None
    if not classes:
        raise DataError(f"{root}: no class folders (expected one sub-folder of .txt files per class)")
    texts, labels, skipped = [], [], 0
    for name in classes:
        files = _text_files(root, name)
        if not files:
            raise DataError(f"{root}: class folder {_short(name)!r} holds no {_TEXT_FILE_SUFFIX} files")
        class_texts = [read_text(path) for path in files]
        kept = [text for text in class_texts if text.strip()]
        if not kept:
            raise DataError(f"{root}: class folder {_short(name)!r} holds only empty {_TEXT_FILE_SUFFIX} files")
        skipped += len(class_texts) - len(kept)
        texts += kept
        labels += [name] * len(kept)
    return texts, labels, skipped


def _text_files(root: Path, class_name: str) -> list[Path]:
    """The .txt files anywhere below root/class_name, in the order Keras lists them."""

    def refuse(error: OSError) -> None:
        raise DataError(
            f"{root}: cannot list {error.filename} in class folder {_short(class_name)!r} ({error.strerror or error})"
        )

    folders = sorted(os.walk(root / class_name, onerror=refuse), key=lambda entry: entry[0])
    return [
        Path(folder, name)
        for folder, _, names in folders
        for name in sorted(names)
        if name.lower().endswith(_TEXT_FILE_SUFFIX)
    ]
