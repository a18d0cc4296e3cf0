"""The unlabeled corpus: in-domain texts without labels (data.unlabeled), read for word vectors alone.

In: data.unlabeled's file or named source, the run's tokenizer, and the run's tokenized labelled
corpus with its training, validation and test rows. Out: an `UnlabeledCorpus`, the tokenized
texts left after dropping every row whose tokens equal a validation or test row's, and counts of
what was dropped. Equality is on the tokenizer's output (lowercased, punctuation filtered for the
word tokenizer), so a copy that differs only in case or punctuation is dropped too. With IMDB
(data.dataset or data.unlabeled imdb-unsup) the texts lose their `<br />` tags as IMDB's do.

These texts are never labelled data: they are tokenized apart from the labelled texts and never
join the labelled corpus, the vocabulary or any split, so a run's encoded rows are the same with
or without them. Rows equal to training texts are kept (word vectors train on the training rows
anyway) and counted. This module never prints, trains or writes (but the tokenizer's cache).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from rnnbench import data, tokenize
from rnnbench.config import IMDB_UNSUP, DataConfig

KEY = "data.unlabeled"
TEXT_COLUMN_KEY = "data.unlabeled_text_column"


@dataclass(frozen=True, eq=False)
class UnlabeledCorpus:
    """The kept rows, tokenized, and what was done to the rest."""

    corpus: tokenize.Corpus
    source: str
    # Rows with a text read from the source (rows with an empty text are not counted here).
    read_rows: int
    skipped_empty_texts: int
    dropped_equal_to_test: int
    # Rows equal to a validation text and to no test text.
    dropped_equal_to_validation: int
    # Kept rows equal to a training text.
    equal_to_training: int

    @property
    def rows(self) -> int:
        return len(self.corpus)

    def summary(self) -> dict[str, Any]:
        """What a run's record says of it (its data summary's "unlabeled")."""
        return {
            "source": self.source,
            "rows": self.rows,
            "read_rows": self.read_rows,
            "skipped_empty_texts": self.skipped_empty_texts,
            "dropped_equal_to_test": self.dropped_equal_to_test,
            "dropped_equal_to_validation": self.dropped_equal_to_validation,
            "kept_equal_to_training": self.equal_to_training,
        }


def prepare(
    settings: DataConfig,
    data_dir: Optional[str],
    labelled: tokenize.Corpus,
    training_rows: np.ndarray,
    validation_rows: np.ndarray,
    test_rows: np.ndarray,
    progress: Callable[[int, int], None] = lambda done, total: None,
    dropped_as: str = "validation or test texts",
) -> UnlabeledCorpus:
    """Read, tokenize (through the tokenizer's cache) and filter data.unlabeled's texts;
    `dropped_as` names the texts dropped, when none is left."""
    texts, source = read_texts(settings, data_dir)
    kept_texts = [text for text in texts if text.strip()]
    if not kept_texts:
        raise data.DataError(f"{source}: no rows with a text ({KEY})")
    corpus, _ = tokenize.load_or_tokenize(kept_texts, settings.tokenizer, settings.morpheme_analyzer, progress)
    rows = _row_keys(corpus, labelled)
    test = set(_labelled_keys(labelled, test_rows))
    validation = set(_labelled_keys(labelled, validation_rows))
    training = set(_labelled_keys(labelled, training_rows))
    equal_to_test = np.fromiter((key in test for key in rows), bool, len(rows))
    equal_to_validation = np.fromiter((key in validation for key in rows), bool, len(rows)) & ~equal_to_test
    keep = ~(equal_to_test | equal_to_validation)
    dropped = int(equal_to_test.sum() + equal_to_validation.sum())
    if not keep.any():
        raise data.DataError(
            f"{source}: no unlabeled rows left after dropping {dropped:,} equal to {dropped_as} ({KEY})"
        )
    return UnlabeledCorpus(
        corpus=_subset(corpus, keep),
        source=source,
        read_rows=len(kept_texts),
        skipped_empty_texts=len(texts) - len(kept_texts),
        dropped_equal_to_test=int(equal_to_test.sum()),
        dropped_equal_to_validation=int(equal_to_validation.sum()),
        equal_to_training=sum(key in training for key, kept in zip(rows, keep) if kept),
    )


def read_texts(settings: DataConfig, data_dir: Optional[str]) -> tuple[list[str], str]:
    """data.unlabeled's texts, empty ones included, and where they came from."""
    if settings.unlabeled == IMDB_UNSUP:
        return _imdb_unsup(data_dir)
    data_dir = data_dir or os.environ.get(data.DATA_DIR_VARIABLE) or None
    path = data.resolve_path(settings.unlabeled, data_dir, KEY)
    if path.is_dir():
        raise data.DataError(f"{KEY}: {path} is a folder; give a file of texts (TSV, CSV, JSONL or one text per line)")
    column = settings.unlabeled_text_column or (settings.files.text_column if settings.files else "text")
    texts = _file_texts(path, column)
    # Cleaned as the labelled texts are, so that a copy of one of them is found as one.
    return [data.clean_review(text) for text in texts] if settings.dataset == "imdb" else texts, str(path)


def _file_texts(path: Path, column: str) -> list[str]:
    try:
        texts = data.read_texts(path, column, TEXT_COLUMN_KEY)
    except data.DataError as error:
        # An empty file has no header, so a reader would complain of a missing column first.
        # A file that is not text (Parquet) keeps its reader's error.
        try:
            empty = not data.read_text(path).strip()
        except data.DataError:
            raise error from None
        if empty:
            raise data.DataError(f"{path}: the file is empty ({KEY})") from None
        raise
    if not texts:
        raise data.DataError(f"{path}: the file is empty ({KEY})")
    return texts


def _imdb_unsup(data_dir: Optional[str]) -> tuple[list[str], str]:
    """IMDB's 50,000 unlabeled reviews, beside the labelled ones, cleaned as those are."""
    folder = data.imdb_folder(data_dir)
    if (folder / "train.tsv.gz").exists():
        path = folder / "unsup.tsv.gz"
        if not path.exists():
            raise data.DataError(f"{KEY}={IMDB_UNSUP!r}: {path} not found beside {folder / 'train.tsv.gz'}")
        texts = _file_texts(path, "text")
    else:
        path = folder / "train" / "unsup"
        if not path.is_dir():
            raise data.DataError(f"{KEY}={IMDB_UNSUP!r}: {path} not found (aclImdb/train/unsup/<id>_0.txt)")
        texts = _review_files(path)
    return [data.clean_review(text) for text in texts], str(path)


def _review_files(folder: Path) -> list[str]:
    # Review id order (`<id>_0.txt`), as imdb/unsup.tsv.gz holds them.
    paths = sorted(folder.glob("*.txt"), key=lambda path: (int(path.stem.split("_")[0]), path.name))
    texts = []
    for path in paths:
        try:
            texts.append(path.read_text(encoding="utf-8").replace("\t", " "))
        except (OSError, UnicodeDecodeError) as error:
            raise data.DataError(f"{path}: cannot read ({error})") from None
    if not texts:
        raise data.DataError(f"{folder}: no .txt files ({KEY}={IMDB_UNSUP!r})")
    return texts


def _labelled_keys(labelled: tokenize.Corpus, rows: np.ndarray) -> list[bytes]:
    """Each row's token ids, as bytes: equal bytes, equal token sequences."""
    return [labelled.token_ids[labelled.offsets[row] : labelled.offsets[row + 1]].tobytes() for row in rows]


def _row_keys(corpus: tokenize.Corpus, labelled: tokenize.Corpus) -> list[bytes]:
    """Each unlabeled row's tokens in the labelled corpus' numbering (-1 for a word it lacks, so
    that such a row equals no labelled row), as `_labelled_keys` gives them."""
    index = labelled.index
    numbering = np.fromiter((index.get(word, -1) for word in corpus.words), np.int32, len(corpus.words))
    renumbered = numbering[corpus.token_ids] if len(corpus.token_ids) else corpus.token_ids.astype(np.int32)
    return [renumbered[start:stop].tobytes() for start, stop in zip(corpus.offsets[:-1], corpus.offsets[1:])]


def _subset(corpus: tokenize.Corpus, keep: np.ndarray) -> tokenize.Corpus:
    lengths = corpus.lengths[keep]
    return tokenize.Corpus(
        words=corpus.words,
        token_ids=corpus.token_ids[np.repeat(keep, corpus.lengths)],
        offsets=np.concatenate(([0], np.cumsum(lengths))).astype(np.int64),
    )
