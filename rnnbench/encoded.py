"""A run's data, encoded: a config's data settings in, the arrays a model trains on out.

    config -> data.load_dataset -> split -> tokenize -> vocabulary -> EncodedData

`EncodedData.prepare` reads the dataset, cuts the validation split, tokenizes, counts the
vocabulary on the training rows only and encodes every split. The result is plain values and
arrays, so that a cluster's driver prepares it once for every run with the same `key` and hands
it to their tasks through Ray's object store. This module imports no Keras.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from typing import Any, Callable, Optional

import numpy as np

from rnnbench import data, tokenize, unlabeled
from rnnbench.config import Config, DataConfig
from rnnbench.progress import Progress
from rnnbench.unlabeled import UnlabeledCorpus


@dataclasses.dataclass(frozen=True, eq=False)
class EncodedData:
    """Training, validation and test inputs and labels, and the vocabulary they were encoded with."""

    vocabulary: tokenize.Vocabulary
    # Kept for word vectors trained on the training rows (model.pretrained_embedding: word2vec).
    corpus: tokenize.Corpus
    training_rows: np.ndarray
    x_train: np.ndarray
    y_train: np.ndarray
    x_validation: np.ndarray
    y_validation: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    # model.ngram_weighting tfidf: each bag token's weight, from the training rows alone.
    token_weights: Optional[np.ndarray]
    num_classes: int
    class_names: tuple[str, ...]
    notes: dict[str, Any]
    # What the run's record says of its data (its "data").
    summary: dict[str, Any]
    # data.unlabeled's texts, for word vectors alone: tokenized apart, never in any split.
    unlabeled: Optional[UnlabeledCorpus] = None

    @staticmethod
    def key(config: Config) -> str:
        """What the encoded data depends on: the data settings, the seed (which cuts the
        validation split) and the model settings that shape the vocabulary and token weights."""
        depends_on = {
            "data": config.data.model_dump(mode="json"),
            "seed": config.train.seed,
            "ngrams": config.model.ngrams,
            "ngram_weighting": config.model.ngram_weighting,
        }
        return hashlib.sha256(json.dumps(depends_on, sort_keys=True).encode("utf-8")).hexdigest()

    @classmethod
    def prepare(cls, config: Config, data_dir: Optional[str], echo: Callable[[str], None]) -> "EncodedData":
        """Read, split, tokenize and encode `config`'s data, saying each step in a line."""
        settings = config.data
        started = time.perf_counter()
        dataset = data.load_dataset(settings, data_dir)
        split = _Split.of(dataset, settings, config.train.seed)
        echo(
            f"{dataset.name}: {len(split.training_rows):,} training / {len(split.validation_rows):,} validation"
            f" ({split.validated_on}) / {len(split.test_rows):,} test rows, {dataset.num_classes} classes, from"
            f" {dataset.source} ({time.perf_counter() - started:.1f} s)"
        )
        for path, count in dataset.notes.get("skipped_empty_texts", {}).items():
            echo(f"skipped {count:,} rows with an empty text in {path}")

        started = time.perf_counter()
        corpus, cached = tokenize.load_or_tokenize(
            split.texts, settings.tokenizer, settings.morpheme_analyzer, Progress(echo, "tokenized")
        )
        # The vocabulary is counted on the training rows only, never validation or test rows.
        vocabulary = tokenize.build_vocabulary(corpus, split.training_rows, settings.num_words, config.model.ngrams)

        def encode(rows: np.ndarray) -> np.ndarray:
            return tokenize.encode(
                corpus,
                vocabulary,
                rows,
                settings.maxlen,
                settings.padding,
                settings.truncating,
                Progress(echo, "encoded", "rows"),
            )

        x_train = encode(split.training_rows)
        x_validation = encode(split.validation_rows)
        x_test = encode(split.test_rows)
        lengths = corpus.lengths[split.training_rows]
        truncated_share = float(np.mean(lengths > settings.maxlen)) if len(lengths) else 0.0
        echo(
            f"{settings.tokenizer} tokens of {len(corpus):,} texts {'read from the cache' if cached else 'made'} in"
            f" {time.perf_counter() - started:.1f} s: kept {len(vocabulary.words):,} of"
            f" {vocabulary.distinct_words:,} training tokens; {truncated_share:.0%}"
            f" of training texts longer than maxlen {settings.maxlen}"
        )
        unlabeled_corpus = _unlabeled(config, data_dir, corpus, split, echo)
        return cls(
            vocabulary=vocabulary,
            corpus=corpus,
            training_rows=split.training_rows,
            x_train=x_train,
            y_train=dataset.train_labels[split.training_rows],
            x_validation=x_validation,
            y_validation=split.validation_labels,
            x_test=x_test,
            y_test=dataset.test_labels,
            token_weights=_token_weights(config, x_train),
            num_classes=dataset.num_classes,
            class_names=dataset.class_names,
            notes=dataset.notes,
            summary={
                "dataset": dataset.name,
                "source": dataset.source,
                "class_names": list(dataset.class_names),
                "tokenizer": settings.tokenizer,
                "train_rows": int(len(split.training_rows)),
                "validation_rows": int(len(split.validation_rows)),
                "validated_on": split.validated_on,
                "test_rows": int(len(split.test_rows)),
                "distinct_training_tokens": vocabulary.distinct_words,
                "vocabulary_tokens": len(vocabulary.words),
                "truncated_share": truncated_share,
                "majority_class_share": float(
                    np.bincount(split.validation_labels).max() / len(split.validation_labels)
                ),
                "validation_rows_sharing_a_group": split.sharing_a_group,
                **dataset.notes,
                **({} if unlabeled_corpus is None else {"unlabeled": unlabeled_corpus.summary()}),
            },
            unlabeled=unlabeled_corpus,
        )


@dataclasses.dataclass(frozen=True, eq=False)
class _Split:
    """Which rows of the one corpus (train, validation file if any, test, in that order) each split holds."""

    texts: list[str]
    training_rows: np.ndarray
    validation_rows: np.ndarray
    validation_labels: np.ndarray
    test_rows: np.ndarray
    # How the validation rows were chosen, in words.
    validated_on: str
    # How much validation can reward memorising a group (a film's title, its actors): the share
    # of validation rows whose group also has training rows; known only for a split cut here.
    sharing_a_group: Optional[float]

    @classmethod
    def of(cls, dataset: data.TextDataset, settings: DataConfig, seed: int) -> "_Split":
        train_count = len(dataset.train_texts)
        validation_texts = dataset.validation_texts or []
        texts = dataset.train_texts + validation_texts + dataset.test_texts
        test_rows = train_count + len(validation_texts) + np.arange(len(dataset.test_texts))
        if dataset.validation_texts is not None:
            return cls(
                texts,
                np.arange(train_count),
                train_count + np.arange(len(validation_texts)),
                dataset.validation_labels,
                test_rows,
                "the validation file",
                None,
            )
        if settings.validation == "test":
            return cls(texts, np.arange(train_count), test_rows, dataset.test_labels, test_rows, "the test split", None)
        by_group = settings.hold_out == "groups" and dataset.train_groups is not None
        training_rows, validation_rows = data.split_validation(
            dataset.train_labels,
            settings.validation,
            seed,
            dataset.class_names,
            groups=dataset.train_groups if by_group else None,
        )
        return cls(
            texts,
            training_rows,
            validation_rows,
            dataset.train_labels[validation_rows],
            test_rows,
            f"{settings.validation:g} of the training split"
            + (f", whole {dataset.group_name}s" if by_group else ", rows at random"),
            data.shared_group_share(dataset.train_groups, training_rows, validation_rows),
        )


def _unlabeled(
    config: Config, data_dir: Optional[str], corpus: tokenize.Corpus, split: "_Split", echo: Callable[[str], None]
) -> Optional[UnlabeledCorpus]:
    """data.unlabeled's texts without the rows equal to a validation or test text, saying what was dropped."""
    if config.data.unlabeled is None:
        return None
    started = time.perf_counter()
    found = unlabeled.prepare(
        config.data,
        data_dir,
        corpus,
        split.training_rows,
        split.validation_rows,
        split.test_rows,
        Progress(echo, "tokenized"),
    )
    echo(f"unlabeled: {found.read_rows:,} rows of {found.source}, for word vectors only")
    if found.skipped_empty_texts:
        echo(f"skipped {found.skipped_empty_texts:,} unlabeled rows with an empty text")
    echo(f"dropped {found.dropped_equal_to_test:,} unlabeled rows equal to test texts")
    echo(f"dropped {found.dropped_equal_to_validation:,} unlabeled rows equal to validation texts")
    echo(
        f"kept {found.rows:,} unlabeled rows ({found.equal_to_training:,} of them equal to training texts)"
        f" in {time.perf_counter() - started:.1f} s"
    )
    return found


def _token_weights(config: Config, x_train: np.ndarray) -> Optional[np.ndarray]:
    """model.ngram_weighting tfidf: each bag token's inverse document frequency over the training rows."""
    if config.model.ngram_weighting != "tfidf":
        return None
    # Imported here, since it imports Keras: only a tfidf bag needs the model's size (model.bag_size).
    from rnnbench import model

    return tokenize.inverse_document_frequencies(x_train, model.bag_size(config, config.data.num_words))
