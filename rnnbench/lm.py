"""A recurrent encoder pretrained as a language model (model.pretrained_encoder: lm).

    data.unlabeled's texts -> LanguageModelCorpus (every row equal to a labelled text dropped)
    -> windows of WINDOW words -> Embedding + the config's recurrent layers, trained to predict
    each next word (and, bidirectional, a second stack each word before) -> cached weights
    -> the classifier's Embedding (word by word) and recurrent layers (Dai & Le 2015)

The language model is the classifier's own encoder with a softmax over the vocabulary on top,
trained with a sampled softmax: each position scores its next word against NEGATIVES words drawn
from a log-uniform (Zipf) distribution over the frequency-ranked vocabulary, with the usual
correction for how often each is drawn (Jean et al. 2015), so a step costs NEGATIVES scores per
position instead of num_words. Its progress is measured on HELD_OUT_ROWS texts it never trains
on, by the full softmax's perplexity.

The corpus leaves out every unlabeled row equal to any labelled text (training, validation and
test rows of every seed, before data.limit), so it is the same for every seed and limit, and one
pretrained encoder serves them all: the artefact is keyed by the corpus' tokens, the tokenizer,
num_words, the embedding and recurrent layers, the pretraining settings and the backend, never
by train.seed. Pretraining draws from LM_SEED alone. Its state is saved every SEGMENT_BATCHES
batches, so a killed pretraining goes on from there, to the same weights as one never stopped,
and kept, so that one of more epochs goes on from one of fewer.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Optional

import keras
import numpy as np
from keras import layers, ops

from rnnbench import data, results, tokenize, unlabeled
from rnnbench.config import Config
from rnnbench.errors import InputError
from rnnbench import model as model_factory
from rnnbench.model import RECURRENT_LAYERS

# Everything pretraining draws (held-out texts, window order, negative words) comes from this seed.
LM_SEED = 0
# Words per training window; a text longer than that gives several, each starting afresh.
WINDOW = 100
BATCH_SIZE = 64
# Words each position's next word is scored against: the sampled softmax's candidates.
NEGATIVES = 512
LEARNING_RATE = 2e-3
CLIPNORM = 1.0
# Activation regularization (Merity et al. 2017, AWD-LSTM's AR): this times the mean square of
# the top recurrent layer's outputs is added to the loss. Without it a small language model
# drives its states to +-1 to sharpen its predictions, where a classifier fine-tuned from it
# gets almost no gradient through the recurrence (docs/data.md measures both).
ACTIVATION_PENALTY = 2.0
# Texts held out of pretraining to measure it (at most a tenth of the corpus).
HELD_OUT_ROWS = 200
# Held-out windows whose full-softmax logits are computed at once (16 x 100 x num_words floats).
PERPLEXITY_WINDOWS = 16
# Batches between two saves of the pretraining's state.
SEGMENT_BATCHES = 200
# Changes when what a cached artefact holds changes, so old ones are not read.
ARTEFACT_VERSION = 2

DIRECTIONS = ("forward", "backward")


class PretrainingError(InputError):
    """A language model that can't be pretrained on the texts given, in one line."""


@dataclasses.dataclass(frozen=True, eq=False)
class LanguageModelCorpus:
    """data.unlabeled's texts without those equal to a labelled text, tokenized, and what was dropped."""

    corpus: tokenize.Corpus
    source: str
    read_rows: int
    dropped_equal_to_test: int
    # Equal to a training or validation text (of any seed) and to no test text.
    dropped_equal_to_training: int

    def summary(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "rows": len(self.corpus),
            "read_rows": self.read_rows,
            "dropped_equal_to_test": self.dropped_equal_to_test,
            "dropped_equal_to_training_or_validation": self.dropped_equal_to_training,
            "tokens": int(self.corpus.lengths.sum()),
        }


def language_model_corpus(
    config: Config, data_dir: Optional[str], echo: Callable[[str], None] = print
) -> LanguageModelCorpus:
    """data.unlabeled's texts, less every row whose tokens equal a labelled text's: any seed's
    training, validation or test text, data.limit or not."""
    settings = config.data
    dataset = data.load_dataset(settings.model_copy(update={"limit": None}), data_dir)
    labelled_texts = dataset.train_texts + (dataset.validation_texts or []) + dataset.test_texts
    labelled, _ = tokenize.load_or_tokenize(labelled_texts, settings.tokenizer, settings.morpheme_analyzer)
    test_count = len(dataset.test_texts)
    rows = np.arange(len(labelled_texts))
    found = unlabeled.prepare(
        settings,
        data_dir,
        labelled,
        rows[:0],
        rows[: len(rows) - test_count],
        rows[len(rows) - test_count :],
        dropped_as="labelled texts (the language model reads no text the classifier is trained or judged on)",
    )
    return LanguageModelCorpus(
        corpus=found.corpus,
        source=found.source,
        read_rows=found.read_rows,
        dropped_equal_to_test=found.dropped_equal_to_test,
        dropped_equal_to_training=found.dropped_equal_to_validation,
    )


@dataclasses.dataclass(frozen=True, eq=False)
class PretrainedEncoder:
    """The language model's word vectors (for its own vocabulary) and recurrent layers' weights."""

    words: tuple[str, ...]
    # Row i + 2 is words[i]'s vector; row 1 the out-of-vocabulary one, as in a run's Embedding.
    embedding: np.ndarray
    # Per direction, per recurrent layer from the bottom, that layer's weights.
    recurrent: dict[str, list[list[np.ndarray]]]
    # What a run's record says of it ("encoder"): corpus, settings, held-out perplexity, cost.
    summary: dict[str, Any]

    def apply(self, network: keras.Model, vocabulary: tokenize.Vocabulary, recurrent_layers: list) -> int:
        """Start `network`'s Embedding and recurrent layers (`recurrent_layers`: per layer from the
        bottom, its forward layer and its backward one or None) from this language model. A run's
        word missing from the language model's vocabulary starts as its out-of-vocabulary vector,
        which is what the pretrained layers read for that word. Returns the words found."""
        embedding = network.get_layer("embedding")
        matrix = np.array(embedding.get_weights()[0])
        own = {word: position + 2 for position, word in enumerate(self.words)}
        found = 0
        matrix[1:] = self.embedding[1]
        for word, row in vocabulary.index.items():
            source = own.get(word)
            if source is not None and row < len(matrix):
                matrix[row] = self.embedding[source]
                found += 1
        embedding.set_weights([matrix])
        for depth, (forward, backward) in enumerate(recurrent_layers):
            forward.set_weights(self.recurrent["forward"][depth])
            if backward is not None:
                backward.set_weights(self.recurrent["backward"][depth])
        return found


def pretrained_encoder(
    config: Config,
    data_dir: Optional[str],
    echo: Callable[[str], None] = print,
    segment_batches: int = SEGMENT_BATCHES,
) -> PretrainedEncoder:
    """The pretrained encoder for `config`: read from the cache, or pretrained (going on from a
    saved state when one was killed) and cached."""
    started = time.perf_counter()
    lm_corpus = language_model_corpus(config, data_dir, echo)
    echo(
        f"language model corpus: {len(lm_corpus.corpus):,} of {lm_corpus.read_rows:,} rows of {lm_corpus.source}"
        f" ({int(lm_corpus.corpus.lengths.sum()):,} tokens), dropped {lm_corpus.dropped_equal_to_test:,} equal to"
        f" test texts and {lm_corpus.dropped_equal_to_training:,} equal to training or validation texts"
        f" ({time.perf_counter() - started:.1f} s)"
    )
    plan = _Plan.of(config, lm_corpus)
    path = tokenize.cache_folder() / f"lm-{plan.key}.npz"
    # The runs' own lock, on a file in the cache: runs that need the same language model at once pretrain it once.
    with results.run_lock(
        path.parent,
        path.stem,
        lambda: echo(f"waiting for another process pretraining the same language model ({path.stem})"),
    ):
        encoder = _read(path, plan, from_cache=True)
        if encoder is None:
            _Pretraining(plan, path, echo, segment_batches).run()
            encoder = _read(path, plan, from_cache=False)
            if encoder is None:
                raise PretrainingError(f"{path}: the pretrained language model could not be written to the cache")
    return encoder


@dataclasses.dataclass(frozen=True, eq=False)
class _Plan:
    """What a pretraining is: its corpus, encoded, and its settings; `key` names its artefact."""

    config: Config
    lm_corpus: LanguageModelCorpus
    vocabulary: tokenize.Vocabulary
    directions: tuple[str, ...]
    # Each text's word indices (in the language model's vocabulary), concatenated, and where each starts.
    token_ids: np.ndarray
    offsets: np.ndarray
    # What the artefact's key is made of, less model.lm_epochs; the key of the pretraining's saved
    # state is its digest: the state after e epochs is the same whatever the number asked for (the
    # learning rate is constant), so a longer pretraining goes on from a shorter one's.
    settings: dict[str, Any]
    state_key: str

    @property
    def key(self) -> str:
        """The key of the artefact of model.lm_epochs epochs."""
        return self.key_after(self.config.model.lm_epochs)

    def key_after(self, epochs: int) -> str:
        """The key of the artefact of `epochs` epochs, which a longer pretraining writes on its way."""
        return _digest({**self.settings, "epochs": epochs})

    @classmethod
    def of(cls, config: Config, lm_corpus: LanguageModelCorpus) -> "_Plan":
        corpus = lm_corpus.corpus
        vocabulary = tokenize.build_vocabulary(corpus, np.arange(len(corpus)), config.data.num_words)
        numbering = np.ones(len(corpus.words), np.int32)
        index = corpus.index
        for position, word in enumerate(vocabulary.words):
            numbering[index[word]] = position + 2
        token_ids = numbering[corpus.token_ids] if len(corpus.token_ids) else np.zeros(0, np.int32)
        model = config.model
        directions = DIRECTIONS if model.bidirectional else DIRECTIONS[:1]
        digest = hashlib.sha256()
        for array in (np.asarray(token_ids, np.int32), np.asarray(corpus.offsets, np.int64)):
            digest.update(array.tobytes())
        digest.update("\n".join(vocabulary.words).encode("utf-8"))
        settings = {
            "version": ARTEFACT_VERSION,
            "corpus": digest.hexdigest(),
            "tokenizer": config.data.tokenizer,
            "morpheme_analyzer": config.data.morpheme_analyzer if config.data.tokenizer == "morpheme" else None,
            "num_words": config.data.num_words,
            "cell": model.cell,
            "embedding_dim": model.embedding_dim,
            "units": model.units,
            "layers": model.layers,
            "directions": list(directions),
            "training": _settings(),
            "backend": keras.backend.backend(),
        }
        return cls(
            config,
            lm_corpus,
            vocabulary,
            directions,
            token_ids,
            np.asarray(corpus.offsets),
            settings=settings,
            state_key=_digest(settings),
        )

    def windows(self, rows: np.ndarray, direction: str) -> tuple[np.ndarray, np.ndarray]:
        """The inputs and next-word targets (0 past a text's end) of `rows`' texts, WINDOW words
        each, read forward or backward: a text of n words gives ceil((n - 1) / WINDOW) windows."""
        inputs, targets = [], []
        for row in rows:
            text = self.token_ids[self.offsets[row] : self.offsets[row + 1]]
            if direction == "backward":
                text = text[::-1]
            for start in range(0, len(text) - 1, WINDOW):
                piece = text[start : start + WINDOW + 1]
                window = np.zeros((2, WINDOW), np.int32)
                window[0, : len(piece) - 1] = piece[:-1]
                window[1, : len(piece) - 1] = piece[1:]
                inputs.append(window[0])
                targets.append(window[1])
        if not inputs:
            return np.zeros((0, WINDOW), np.int32), np.zeros((0, WINDOW), np.int32)
        return np.stack(inputs), np.stack(targets)

    def held_out_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """(training rows, held-out rows): HELD_OUT_ROWS texts, at most a tenth, drawn with LM_SEED."""
        rows = np.flatnonzero(np.diff(self.offsets) > 1)
        order = np.random.default_rng(LM_SEED).permutation(rows)
        held = min(HELD_OUT_ROWS, len(rows) // 10)
        return np.sort(order[held:]), np.sort(order[:held])


def _digest(value: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode("utf-8")).hexdigest()


def _settings() -> dict[str, Any]:
    return {
        "window": WINDOW,
        "batch_size": BATCH_SIZE,
        "negatives": NEGATIVES,
        "learning_rate": LEARNING_RATE,
        "clipnorm": CLIPNORM,
        "activation_penalty": ACTIVATION_PENALTY,
        "seed": LM_SEED,
        "held_out_rows": HELD_OUT_ROWS,
        "optimizer": "adam",
    }


class SampledSoftmax(layers.Layer):
    """Per text window, the mean over WINDOW positions of the sampled-softmax loss of each
    position's target word (0: no word, no loss) against `negatives` words drawn log-uniformly
    over the frequency-ranked indices 1 .. vocabulary_size - 1, plus ACTIVATION_PENALTY times
    the mean square of that position's hidden state."""

    def __init__(self, vocabulary_size: int, units: int, **kwargs):
        super().__init__(**kwargs)
        self.vocabulary_size = vocabulary_size
        self.units = units

    def build(self, *shapes):
        self.kernel = self.add_weight(
            shape=(self.vocabulary_size, self.units), initializer="glorot_uniform", name="kernel"
        )
        self.bias = self.add_weight(shape=(self.vocabulary_size,), initializer="zeros", name="bias")

    def call(self, hidden, targets, negatives, mask=None):
        def log_expected(ids):
            # log(k * q(id)), q the log-uniform distribution `draw_negatives` samples from.
            ids = ops.cast(ops.maximum(ids, 1), "float32")
            share = ops.log((ids + 1.0) / ids) / math.log(self.vocabulary_size)
            return math.log(NEGATIVES) + ops.log(share)

        true_logits = ops.sum(hidden * ops.take(self.kernel, targets, axis=0), axis=-1)
        true_logits = true_logits + ops.take(self.bias, targets) - log_expected(targets)
        sampled = ops.einsum("btu,bku->btk", hidden, ops.take(self.kernel, negatives, axis=0))
        sampled = sampled + ops.expand_dims(ops.take(self.bias, negatives) - log_expected(negatives), 1)
        # A drawn word that is the target itself is not a negative.
        hits = ops.equal(ops.expand_dims(targets, -1), ops.expand_dims(negatives, 1))
        sampled = ops.where(hits, -1e9, sampled)
        logits = ops.concatenate([ops.expand_dims(true_logits, -1), sampled], axis=-1)
        losses = ops.logsumexp(logits, axis=-1) - true_logits
        losses = losses + ACTIVATION_PENALTY * ops.mean(ops.square(hidden), axis=-1)
        weights = ops.cast(ops.greater(targets, 0), losses.dtype)
        return ops.sum(losses * weights, axis=-1) / WINDOW

    def compute_output_shape(self, hidden_shape, *shapes):
        return (hidden_shape[0],)

    def compute_mask(self, *args, **kwargs):
        return None

    def get_config(self):
        return {**super().get_config(), "vocabulary_size": self.vocabulary_size, "units": self.units}


def draw_negatives(rng: np.random.Generator, rows: int, vocabulary_size: int) -> np.ndarray:
    """(rows, NEGATIVES) word indices, log-uniform over 1 .. vocabulary_size - 1: index i with
    probability log((i + 1) / i) / log(vocabulary_size), frequent (low) indices most often."""
    drawn = np.floor(np.exp(rng.random((rows, NEGATIVES)) * math.log(vocabulary_size))).astype(np.int64)
    return np.clip(drawn, 1, vocabulary_size - 1).astype(np.int32)


def _passthrough(y_true, y_pred):
    # The model's output is its loss already.
    return y_pred


def language_model(config: Config, directions: tuple[str, ...]) -> keras.Model:
    """The embedding and recurrent layers of `config`'s encoder (a stack per direction, one
    Embedding), each stack under a shared sampled softmax; outputs the mean loss per window."""
    model = config.model
    size = config.data.num_words
    embedding = layers.Embedding(size, model.embedding_dim, mask_zero=True, name="embedding")
    softmax = SampledSoftmax(size, model.units, name="softmax")
    negatives = keras.Input(shape=(NEGATIVES,), dtype="int32", name="negatives")
    inputs, losses = [], []
    for direction in directions:
        tokens = keras.Input(shape=(WINDOW,), dtype="int32", name=f"{direction}_tokens")
        targets = keras.Input(shape=(WINDOW,), dtype="int32", name=f"{direction}_targets")
        hidden = embedding(tokens)
        for depth in range(model.layers):
            hidden = RECURRENT_LAYERS[model.cell](model.units, return_sequences=True, name=f"{direction}_{depth + 1}")(
                hidden
            )
        inputs += [tokens, targets]
        losses.append(softmax(hidden, targets, negatives))
    loss = losses[0] if len(losses) == 1 else layers.Average(name="mean_loss")(losses)
    network = keras.Model([*inputs, negatives], loss, name="language_model")
    network.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE, clipnorm=CLIPNORM), loss=_passthrough)
    return network


class _Pretraining:
    """One pretraining, from its saved state if it has one; writes the artefact to `path`."""

    def __init__(self, plan: _Plan, path: Path, echo: Callable[[str], None], segment_batches: int):
        self.plan, self.path, self.echo, self.segment_batches = plan, path, echo, segment_batches
        self.keep_state = True
        self.state_path = path.with_name(f"lm-state-{plan.state_key}.npz")

    def run(self) -> None:
        plan, echo = self.plan, self.echo
        keras.utils.set_random_seed(LM_SEED)
        network = language_model(plan.config, plan.directions)
        training_rows, held_out_rows = plan.held_out_rows()
        train = {direction: plan.windows(training_rows, direction) for direction in plan.directions}
        held_out = {direction: plan.windows(held_out_rows, direction) for direction in plan.directions}
        windows = len(train["forward"][0])
        batches = windows // BATCH_SIZE
        if batches == 0:
            raise PretrainingError(
                f"{plan.lm_corpus.source}: {windows:,} windows of text after holding out {len(held_out_rows):,} texts,"
                f" too few for one batch of {BATCH_SIZE} (data.unlabeled needs more text for model.pretrained_encoder)"
            )
        # A text's backward windows number as many as its forward ones, so one order serves both.
        assert all(len(pair[0]) == windows for pair in train.values())
        total = plan.config.model.lm_epochs * batches
        state = self._restore(network, total)
        if state["step"]:
            echo(f"language model: going on from batch {state['step']:,} of {total:,} ({self.state_path})")
        else:
            echo(
                f"pretraining a language model ({', '.join(plan.directions)}) on {len(training_rows):,} texts,"
                f" {windows:,} windows of {WINDOW} words, {batches:,} batches of {BATCH_SIZE} per epoch;"
                f" {len(held_out_rows):,} texts held out"
            )
        while state["step"] < total:
            epoch, first = divmod(state["step"], batches)
            last = min(first + self.segment_batches, batches)
            order = np.random.default_rng([LM_SEED, epoch]).permutation(windows)[first * BATCH_SIZE : last * BATCH_SIZE]
            negatives = draw_negatives(
                np.random.default_rng([LM_SEED, epoch, first]), len(order), plan.config.data.num_words
            )
            inputs = [array[order] for direction in plan.directions for array in train[direction]]
            started = time.perf_counter()
            history = network.fit(
                [*inputs, negatives],
                np.zeros(len(order), np.float32),
                batch_size=BATCH_SIZE,
                epochs=1,
                shuffle=False,
                verbose=0,
            )
            seconds = time.perf_counter() - started
            state["seconds"] += seconds
            state["step"] = epoch * batches + last
            loss = float(history.history["loss"][-1])
            state["segments"].append({"epoch": epoch + 1, "batches": [first, last], "loss": loss, "seconds": seconds})
            perplexity = None
            if last == batches:
                perplexity = held_out_perplexity(network, plan, held_out)
                state["epochs"].append(
                    {"epoch": epoch + 1, "held_out_perplexity": perplexity, "seconds": state["seconds"]}
                )
            # Saved before it is said, so that what a line reports is never lost.
            self._save(network, state)
            if perplexity is not None and epoch + 1 < plan.config.model.lm_epochs:
                # The artefact of this many epochs too, as a pretraining of this many would write
                # it: ablations over model.lm_epochs, and a pretraining stopped for time, read it.
                self._write_artefact(network, state, training_rows, held_out_rows, windows, epoch + 1)
            left = (total - state["step"]) * seconds / (last - first)
            echo(
                f"language model: epoch {epoch + 1}/{plan.config.model.lm_epochs}, batch {last:,}/{batches:,},"
                f" sampled loss {loss:.3f}, {(last - first) * BATCH_SIZE * WINDOW * len(plan.directions) / seconds:,.0f}"
                f" words/s, about {left / 60:.0f} min left"
            )
            if perplexity is not None:
                echo(f"language model: epoch {epoch + 1} done, held-out perplexity {perplexity:,.1f}")
        self._write_artefact(network, state, training_rows, held_out_rows, windows, plan.config.model.lm_epochs)

    def _restore(self, network: keras.Model, total: int) -> dict[str, Any]:
        fresh = {"step": 0, "seconds": 0.0, "segments": [], "epochs": []}
        try:
            with np.load(self.state_path) as saved:
                arrays = {name: saved[name] for name in saved.files}
        except (OSError, ValueError):
            return fresh
        state = tokenize.from_json_bytes(arrays["state"])
        if state["step"] > total:
            # A longer pretraining's state: this shorter one starts afresh and leaves that state be.
            self.keep_state = False
            return fresh
        if not model_factory.restore_training_state(network, arrays):
            self.echo(f"warning: {self.state_path} does not match this language model; pretraining from the start")
            return fresh
        return state

    def _save(self, network: keras.Model, state: dict[str, Any]) -> None:
        if not self.keep_state:
            return
        tokenize.write_cache_entry(
            self.state_path, state=tokenize.json_bytes(state), **model_factory.training_state(network)
        )

    def _write_artefact(
        self,
        network: keras.Model,
        state: dict[str, Any],
        training_rows: np.ndarray,
        held_out_rows: np.ndarray,
        windows: int,
        epochs: int,
    ) -> None:
        """The artefact after `epochs` epochs, under its own key (self.path's for model.lm_epochs)."""
        plan = self.plan
        key = plan.key_after(epochs)
        summary = {
            "kind": "lm",
            "key": key[:16],
            "corpus": plan.lm_corpus.summary(),
            "training_texts": int(len(training_rows)),
            "held_out_texts": int(len(held_out_rows)),
            "windows": windows,
            "directions": list(plan.directions),
            "epochs": state["epochs"],
            "held_out_perplexity": state["epochs"][-1]["held_out_perplexity"] if state["epochs"] else None,
            "settings": _settings(),
            "pretraining_seconds": state["seconds"],
        }
        arrays = {
            "words": tokenize.json_bytes(list(plan.vocabulary.words)),
            "summary": tokenize.json_bytes(summary),
            "embedding": network.get_layer("embedding").get_weights()[0],
        }
        for direction in plan.directions:
            for depth in range(plan.config.model.layers):
                for index, weight in enumerate(network.get_layer(f"{direction}_{depth + 1}").get_weights()):
                    arrays[f"{direction}_{depth}_{index}"] = weight
        tokenize.write_cache_entry(self.path.with_name(f"lm-{key}.npz"), **arrays)


class FullSoftmaxLoss(layers.Layer):
    """Each position's negative log-likelihood of its target word under the full softmax of
    `softmax` (the language model's SampledSoftmax, whose weights it reads)."""

    def __init__(self, softmax: SampledSoftmax, **kwargs):
        super().__init__(**kwargs)
        self.softmax = softmax

    def call(self, hidden, targets):
        logits = ops.matmul(hidden, ops.transpose(self.softmax.kernel)) + self.softmax.bias
        picked = ops.take_along_axis(logits, ops.expand_dims(targets, -1), axis=-1)
        return ops.logsumexp(logits, axis=-1) - picked[..., 0]

    def compute_output_shape(self, hidden_shape, targets_shape):
        return tuple(hidden_shape[:-1])

    def compute_mask(self, *args, **kwargs):
        return None


def held_out_perplexity(network: keras.Model, plan: _Plan, held_out: dict[str, tuple[np.ndarray, np.ndarray]]) -> float:
    """exp of the mean negative log-likelihood of the held-out texts' words under the full softmax,
    over both directions' predictions when there are two: a compiled model per direction (float32,
    on the backend's device) gives each position's, which are added up in float64."""
    softmax = network.get_layer("softmax")
    total, count = 0.0, 0
    for direction in plan.directions:
        inputs, targets = held_out[direction]
        if not len(inputs):
            continue
        words = keras.Input((WINDOW,), dtype="int32", name=f"{direction}_held_out_targets")
        losses = FullSoftmaxLoss(softmax)(network.get_layer(f"{direction}_{plan.config.model.layers}").output, words)
        scorer = keras.Model([network.get_layer(f"{direction}_tokens").output, words], losses)
        scores = scorer.predict([inputs, targets], batch_size=PERPLEXITY_WINDOWS, verbose=0)
        words_there = targets > 0
        total += float(np.asarray(scores, np.float64)[words_there].sum())
        count += int(words_there.sum())
    return float(math.exp(total / count)) if count else float("nan")


def _read(path: Path, plan: _Plan, from_cache: bool) -> Optional[PretrainedEncoder]:
    try:
        with np.load(path) as saved:
            arrays = {name: saved[name] for name in saved.files}
    except (OSError, ValueError):
        return None
    summary = tokenize.from_json_bytes(arrays["summary"])
    summary["read_from_cache"] = from_cache
    recurrent = {
        direction: [
            [arrays[f"{direction}_{depth}_{index}"] for index in range(_count(arrays, f"{direction}_{depth}_"))]
            for depth in range(plan.config.model.layers)
        ]
        for direction in plan.directions
    }
    return PretrainedEncoder(
        words=tuple(tokenize.from_json_bytes(arrays["words"])),
        embedding=arrays["embedding"],
        recurrent=recurrent,
        summary=summary,
    )


def _count(arrays: dict[str, np.ndarray], prefix: str) -> int:
    return sum(name.startswith(prefix) for name in arrays)
