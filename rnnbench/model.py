"""The model factory: a config and a vocabulary size in, a `keras.Sequential` out.

Every model is  input -> encoder -> [Dropout] -> Dense(dense_units, relu) -> output,  where
the encoder comes from one registry keyed by `model.cell`, so no cell can differ from another
in its embedding, head or output. A recurrent encoder is
Embedding -> [SpatialDropout1D] -> recurrent layers -> [pooling over time]; the convolutional
one (`cnn`) is Embedding -> [SpatialDropout1D] -> parallel convolutions, each max-pooled over
time. Nothing here reads files, seeds or prints: the dropout layers take their seeds from the config.

Each layer's parameter count has one formula, below, that serves both a built model
(`parameter_formulas`, for `rnnbench summary`) and a config alone (`planned_parameters`), so
that `build_model` refuses a model too large to build before it creates any layer.
"""

from __future__ import annotations

from typing import Callable, Optional

import keras
import numpy as np
from keras import layers, ops

from rnnbench.config import LARGEST_SEED, Config
from rnnbench.errors import InputError

# Sizes that are each within their limits can together describe a model of billions of
# parameters (2,000,000 words x 4096 dimensions), whose weights alone take tens of gigabytes
# and whose building grinds for minutes; the largest model rnnbench builds.
MOST_PARAMETERS = 1_000_000_000


class ModelTooLargeError(InputError):
    """A config whose model has more than MOST_PARAMETERS parameters, described in one line."""


# Per layer: its name, the formula of its parameter count with the numbers filled in, the count.
ParameterRows = list[tuple[str, str, int]]

RECURRENT_LAYERS = {
    "simple_rnn": layers.SimpleRNN,
    "lstm": layers.LSTM,
    "gru": layers.GRU,
}


def _embedding(config: Config, vocabulary_size: int) -> list[layers.Layer]:
    """The Embedding, and the dropout of whole word-vector channels after it when asked for."""
    model = config.model
    # Pre-trained vectors are set by `build_model` after the layer is built, not through an
    # initializer, which would copy the whole matrix into the saved model's config. With
    # mask_zero, the padding index 0 masks its positions for every layer after it.
    stack: list[layers.Layer] = [
        layers.Embedding(
            vocabulary_size,
            model.embedding_dim,
            mask_zero=model.mask_padding,
            trainable=model.embedding_trainable,
            name="embedding",
        )
    ]
    if model.embedding_dropout > 0:
        stack.append(layers.SpatialDropout1D(model.embedding_dropout, seed=_seed(config, 1), name="embedding_dropout"))
    return stack


def _embedding_rows(config: Config, vocabulary_size: int) -> ParameterRows:
    rows = [("embedding", *_embedding_formula(vocabulary_size, config.model.embedding_dim))]
    if config.model.embedding_dropout > 0:
        rows.append(("embedding_dropout", "no weights", 0))
    return rows


def _seed(config: Config, offset: int) -> int:
    """The seed of one dropout layer: train.seed for the head's, train.seed + offset for the others.

    A seeded layer draws its masks from a generator whose state is a model variable, so a
    checkpoint restores it; unseeded, the torch backend would use torch's global generator.
    Layers seeded alike would draw the same random numbers, hence an offset for each.
    """
    return (config.train.seed + offset) % (LARGEST_SEED + 1)


def _recurrent_encoder(cell: str) -> Callable[[Config, int], list[layers.Layer]]:
    def encoder(config: Config, vocabulary_size: int) -> list[layers.Layer]:
        model = config.model
        stack = _embedding(config, vocabulary_size)
        for depth in range(model.layers):
            dropout: dict[str, float] = {}
            if model.recurrent_input_dropout > 0 or model.recurrent_dropout > 0:
                dropout = {
                    "dropout": model.recurrent_input_dropout,
                    "recurrent_dropout": model.recurrent_dropout,
                    # A Bidirectional layer's backward copy is made from this layer's config, seed included.
                    "seed": _seed(config, 2 + depth),
                }
            # Every layer but the last hands its whole sequence to the next one, and so does the
            # last when its outputs are pooled over time.
            recurrent = RECURRENT_LAYERS[cell](
                model.units,
                return_sequences=depth < model.layers - 1 or model.pooling != "last",
                name=f"{cell}_{depth + 1}",
                **dropout,
            )
            if model.bidirectional:
                recurrent = layers.Bidirectional(recurrent, name=f"bidirectional_{cell}_{depth + 1}")
            stack.append(recurrent)
        if model.pooling != "last":
            stack.append(PoolOverTime(model.pooling, name=f"{model.pooling}_pooling"))
        return stack

    return encoder


def _recurrent_parameters(cell: str) -> Callable[[Config, int], tuple[ParameterRows, int]]:
    def parameters(config: Config, vocabulary_size: int) -> tuple[ParameterRows, int]:
        model = config.model
        rows = _embedding_rows(config, vocabulary_size)
        directions = 2 if model.bidirectional else 1
        inputs = model.embedding_dim
        for depth in range(model.layers):
            formula, count = _recurrent_formula(cell, inputs, model.units)
            name = f"{cell}_{depth + 1}"
            if model.bidirectional:
                formula, count = _bidirectional_formula(formula, count)
                name = f"bidirectional_{name}"
            rows.append((name, formula, count))
            # The next layer reads this one's output: units per direction, concatenated.
            inputs = directions * model.units
        if model.pooling != "last":
            rows.append((f"{model.pooling}_pooling", "no weights", 0))
            inputs *= len(POOLING_STATISTICS[model.pooling])
        return rows, inputs

    return parameters


# What each model.pooling other than `last` computes over time, side by side in this order.
POOLING_STATISTICS = {"max": ("max",), "mean": ("mean",), "max_mean": ("max", "mean")}


@keras.saving.register_keras_serializable(package="rnnbench")
class PoolOverTime(layers.Layer):
    """The maximum and/or the mean of each feature over the time steps of a (batch, steps,
    features) sequence, concatenated in the order of POOLING_STATISTICS[`pooling`]: (batch,
    features x statistics).

    Steps that a mask marks as padding are left out of both. Keras' GlobalMaxPooling1D takes
    no mask (keras/src/layers/pooling/global_max_pooling1d.py reduces every step with ops.max),
    so a padding step could win the max; GlobalAveragePooling1D honours a mask but divides by
    zero for a text with no tokens at all, which gives NaN. Here such a text pools to zeros.
    Without a mask the values equal those two layers' (tests/test_model.py).
    """

    def __init__(self, pooling: str, **kwargs):
        super().__init__(**kwargs)
        if pooling not in POOLING_STATISTICS:
            raise ValueError(f"unknown pooling {pooling!r} (allowed: {', '.join(POOLING_STATISTICS)})")
        self.pooling = pooling
        self.supports_masking = True

    def call(self, inputs, mask=None):
        if mask is None:
            pooled = {"max": ops.max(inputs, axis=1), "mean": ops.mean(inputs, axis=1)}
        else:
            kept = ops.expand_dims(ops.cast(mask, "bool"), axis=2)
            any_kept = ops.any(kept, axis=1)
            # Padding steps become -inf, which never wins the max; a text of padding alone gives 0.
            largest = ops.max(ops.where(kept, inputs, float("-inf")), axis=1)
            counts = ops.sum(ops.cast(kept, inputs.dtype), axis=1)
            total = ops.sum(ops.where(kept, inputs, 0), axis=1)
            pooled = {
                "max": ops.where(any_kept, largest, 0),
                "mean": total / ops.maximum(counts, 1),
            }
        return ops.concatenate([pooled[statistic] for statistic in POOLING_STATISTICS[self.pooling]], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2] * len(POOLING_STATISTICS[self.pooling]))

    def compute_mask(self, inputs, mask=None):
        # The time axis is gone, and with it what the mask described.
        return None

    def get_config(self):
        return {**super().get_config(), "pooling": self.pooling}


@keras.saving.register_keras_serializable(package="rnnbench")
class MultiHot(layers.Layer):
    """Which of `num_tokens` token ids occur in each row, as 0/1: the values of
    `CategoryEncoding(output_mode="multi_hot")`, made by one scatter.

    CategoryEncoding builds a (batch, length, num_tokens) one-hot tensor on every backend but
    TensorFlow (which has a bincount path): 64 M floats per batch of 32 reviews at maxlen 200,
    which made an epoch of the `ann` model take minutes on the JAX backend instead of seconds.
    rnnbench uses this layer on JAX and torch, and CategoryEncoding on TensorFlow.
    """

    def __init__(self, num_tokens: int, **kwargs):
        super().__init__(**kwargs)
        self.num_tokens = num_tokens

    def call(self, inputs):
        inputs = ops.cast(inputs, "int32")
        batch, length = ops.shape(inputs)[0], ops.shape(inputs)[1]
        rows = ops.repeat(ops.arange(batch, dtype="int32"), length)
        indices = ops.stack([rows, ops.reshape(inputs, (-1,))], axis=1)
        counts = ops.scatter(indices, ops.ones((batch * length,), dtype=self.compute_dtype), (batch, self.num_tokens))
        return ops.minimum(counts, 1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_tokens)

    def get_config(self):
        return {**super().get_config(), "num_tokens": self.num_tokens}


@keras.saving.register_keras_serializable(package="rnnbench")
class TfIdf(layers.Layer):
    """A bag's 0/1 values times each token's inverse document frequency, each row then scaled
    to L2 norm 1 (as scikit-learn's TfidfVectorizer does by default).

    The frequencies are a fixed (non-trainable) weight, set by `build_model` from the training
    rows, so the saved model carries them; they start as ones.
    """

    def __init__(self, num_tokens: int, **kwargs):
        super().__init__(**kwargs)
        self.num_tokens = num_tokens

    def build(self, input_shape):
        self.idf = self.add_weight(shape=(self.num_tokens,), initializer="ones", trainable=False, name="idf")

    def call(self, inputs):
        weighted = inputs * ops.cast(self.idf, inputs.dtype)
        norm = ops.sqrt(ops.sum(ops.square(weighted), axis=-1, keepdims=True))
        return weighted / ops.maximum(norm, 1e-12)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "num_tokens": self.num_tokens}


# The bag's name when it holds bigrams as well as words, which its formula spells out.
_BIGRAM_BAG = "bag_of_words_and_bigrams"


def bag_size(config: Config, vocabulary_size: int) -> int:
    """The bag of words' tokens: the vocabulary, and with model.ngrams 2 as many bigrams again."""
    return vocabulary_size * config.model.ngrams


def input_length(config: Config) -> int:
    """Ids per text: maxlen words, and with model.ngrams 2 the maxlen - 1 pairs of adjacent ones."""
    return config.data.maxlen if config.model.ngrams == 1 else 2 * config.data.maxlen - 1


def _bag_of_words(config: Config, vocabulary_size: int) -> list[layers.Layer]:
    # The lecture's ANN: which vocabulary words occur in the text, as a multi-hot vector. Both
    # layers give the same values; TensorFlow's bincount path is the faster one there
    # (scripts/bench_multi_hot.py).
    num_tokens = bag_size(config, vocabulary_size)
    name = "bag_of_words" if config.model.ngrams == 1 else _BIGRAM_BAG
    if keras.backend.backend() == "tensorflow":
        stack: list[layers.Layer] = [layers.CategoryEncoding(num_tokens=num_tokens, output_mode="multi_hot", name=name)]
    else:
        stack = [MultiHot(num_tokens, name=name)]
    if config.model.ngram_weighting == "tfidf":
        stack.append(TfIdf(num_tokens, name="tfidf"))
    return stack


def _bag_of_words_parameters(config: Config, vocabulary_size: int) -> tuple[ParameterRows, int]:
    num_tokens = bag_size(config, vocabulary_size)
    if config.model.ngrams == 1:
        rows = [("bag_of_words", "no weights", 0)]
    else:
        rows = [(_BIGRAM_BAG, *_bigram_bag_formula(num_tokens))]
    if config.model.ngram_weighting == "tfidf":
        rows.append(("tfidf", *_tfidf_formula(num_tokens)))
    return rows, num_tokens


def _flat_embedding(config: Config, vocabulary_size: int) -> list[layers.Layer]:
    # The lecture's "train data embedding": word vectors concatenated in order.
    return [*_embedding(config, vocabulary_size), layers.Flatten(name="flatten")]


def _flat_embedding_parameters(config: Config, vocabulary_size: int) -> tuple[ParameterRows, int]:
    rows = [*_embedding_rows(config, vocabulary_size), ("flatten", "no weights", 0)]
    return rows, config.data.maxlen * config.model.embedding_dim


@keras.saving.register_keras_serializable(package="rnnbench")
class ConvolutionBranches(layers.Layer):
    """Kim (2014)'s text CNN after the embedding: one Conv1D (relu) of `filters` filters per
    width in `widths`, side by side over the same (batch, steps, features) sequence, each
    max-pooled over time; the pooled features concatenated in the order of `widths`: (batch,
    len(widths) x filters).

    The branches are parallel, which a `keras.Sequential` can't hold as layers of its own, so
    they are this one layer's sublayers. Each convolution pads with zeros ("same"), so every
    width works at any data.maxlen and the output has as many steps as the input.
    """

    def __init__(self, widths, filters: int, **kwargs):
        super().__init__(**kwargs)
        self.widths = tuple(widths)
        self.filters = filters
        self.branches = [
            layers.Conv1D(filters, width, padding="same", activation="relu", name=f"conv_width_{width}")
            for width in self.widths
        ]

    def build(self, input_shape):
        for branch in self.branches:
            branch.build(input_shape)

    def call(self, inputs):
        return ops.concatenate([ops.max(branch(inputs), axis=1) for branch in self.branches], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], len(self.widths) * self.filters)

    def get_config(self):
        return {**super().get_config(), "widths": list(self.widths), "filters": self.filters}


def _convolutions(config: Config, vocabulary_size: int) -> list[layers.Layer]:
    model = config.model
    return [
        *_embedding(config, vocabulary_size),
        ConvolutionBranches(model.conv_widths, model.conv_filters, name="convolutions"),
    ]


def _convolutions_parameters(config: Config, vocabulary_size: int) -> tuple[ParameterRows, int]:
    model = config.model
    formula, count = _convolutions_formula(model.conv_widths, model.embedding_dim, model.conv_filters)
    rows = [*_embedding_rows(config, vocabulary_size), ("convolutions", formula, count)]
    return rows, len(model.conv_widths) * model.conv_filters


ENCODERS: dict[str, Callable[[Config, int], list[layers.Layer]]] = {
    **{cell: _recurrent_encoder(cell) for cell in RECURRENT_LAYERS},
    "ann": _bag_of_words,
    "embedding": _flat_embedding,
    "cnn": _convolutions,
}

# Per cell, the rows (name, formula, count) of the layers its encoder above builds, and the
# width of the features it hands the dense head, computed from the config alone.
ENCODER_PARAMETERS: dict[str, Callable[[Config, int], tuple[ParameterRows, int]]] = {
    **{cell: _recurrent_parameters(cell) for cell in RECURRENT_LAYERS},
    "ann": _bag_of_words_parameters,
    "embedding": _flat_embedding_parameters,
    "cnn": _convolutions_parameters,
}


def build_model(
    config: Config,
    vocabulary_size: int,
    num_classes: int,
    embedding_matrix: Optional[np.ndarray] = None,
    token_weights: Optional[np.ndarray] = None,
) -> keras.Sequential:
    """Build (not compile) the model for `config`: sigmoid output for 2 classes, softmax above.

    `embedding_matrix` (vocabulary_size x embedding_dim) replaces the Embedding's random start;
    `token_weights` (one per bag token) are the inverse document frequencies of model.ngram_weighting tfidf.
    """
    if num_classes < 2:
        raise ValueError(f"a classifier needs at least 2 classes, got {num_classes}")
    refuse_too_large(config, vocabulary_size, num_classes)
    stack: list[layers.Layer] = [keras.Input(shape=(input_length(config),), dtype="int32", name="tokens")]
    stack += ENCODERS[config.model.cell](config, vocabulary_size)
    if config.model.dropout > 0:
        stack.append(layers.Dropout(config.model.dropout, seed=_seed(config, 0), name="dropout"))
    stack.append(layers.Dense(config.model.dense_units, activation="relu", name="dense"))
    activation = "sigmoid" if num_classes == 2 else "softmax"
    stack.append(layers.Dense(output_units(num_classes), activation=activation, name="output"))
    model = keras.Sequential(stack, name=f"{config.model.cell}_classifier")
    if embedding_matrix is not None:
        model.get_layer("embedding").set_weights([embedding_matrix])
    if token_weights is not None:
        model.get_layer("tfidf").set_weights([np.asarray(token_weights, dtype="float32")])
    return model


def recurrent_layers(network: keras.Model, config: Config) -> list[tuple[layers.Layer, Optional[layers.Layer]]]:
    """The recurrent layers of a model `build_model` made for `config`, from the bottom: each
    layer's forward copy and its backward one (None unless model.bidirectional)."""
    cell = config.model.cell
    found: list[tuple[layers.Layer, Optional[layers.Layer]]] = []
    for depth in range(config.model.layers):
        if config.model.bidirectional:
            wrapper = network.get_layer(f"bidirectional_{cell}_{depth + 1}")
            found.append((wrapper.forward_layer, wrapper.backward_layer))
        else:
            found.append((network.get_layer(f"{cell}_{depth + 1}"), None))
    return found


def training_state(network: keras.Model) -> dict[str, np.ndarray]:
    """What training needs to go on exactly: the model's variables (its weights and its dropout
    layers' random-generator states) and its optimizer's, as arrays named variable_i and optimizer_i."""
    arrays: dict[str, np.ndarray] = {}
    for prefix, variables in (("variable", network.variables), ("optimizer", network.optimizer.variables)):
        arrays.update({f"{prefix}_{index}": np.asarray(variable.numpy()) for index, variable in enumerate(variables)})
    return arrays


def restore_training_state(network: keras.Model, arrays: dict[str, np.ndarray]) -> bool:
    """Assign `training_state`'s arrays to `network` (compiled); False, assigning nothing, when
    their number or shapes do not match its variables."""
    network.optimizer.build(network.trainable_variables)
    pairs = []
    for prefix, variables in (("variable", network.variables), ("optimizer", network.optimizer.variables)):
        count = sum(name.startswith(f"{prefix}_") for name in arrays)
        values = [arrays[f"{prefix}_{index}"] for index in range(count)]
        if [tuple(value.shape) for value in values] != [tuple(variable.shape) for variable in variables]:
            return False
        pairs += zip(variables, values)
    for variable, value in pairs:
        variable.assign(value)
    return True


def output_units(num_classes: int) -> int:
    """Two classes need one sigmoid unit (the probability of the second); more need one softmax unit each."""
    return 1 if num_classes == 2 else num_classes


def loss_for(num_classes: int) -> str:
    return "binary_crossentropy" if num_classes == 2 else "sparse_categorical_crossentropy"


def parameter_formulas(model: keras.Model) -> ParameterRows:
    """Per layer: (name, the parameter-count formula with its numbers filled in, the count)."""
    rows = []
    for layer in model.layers:
        formula, count = _formula(layer)
        rows.append((layer.name, formula, count))
    return rows


def planned_parameters(config: Config, vocabulary_size: int, num_classes: int) -> ParameterRows:
    """Per layer of the model `build_model` would build: (name, formula, count), from the config alone.

    The same rows as `parameter_formulas(build_model(config, vocabulary_size, num_classes))`,
    with nothing built, so that a model's size is known in microseconds.
    """
    return _plan(config, vocabulary_size, num_classes)[0]


def _plan(config: Config, vocabulary_size: int, num_classes: int) -> tuple[ParameterRows, int]:
    """planned_parameters' rows, and the width of the features the encoder hands the dense head."""
    rows, features = ENCODER_PARAMETERS[config.model.cell](config, vocabulary_size)
    if config.model.dropout > 0:
        rows.append(("dropout", "no weights", 0))
    rows.append(("dense", *_dense_formula(features, config.model.dense_units)))
    rows.append(("output", *_dense_formula(config.model.dense_units, output_units(num_classes))))
    return rows, features


def refuse_too_large(config: Config, vocabulary_size: int, num_classes: int) -> None:
    """Raise ModelTooLargeError for a model of more than MOST_PARAMETERS parameters, naming
    its largest parts and the keys that size them."""
    rows, features = _plan(config, vocabulary_size, num_classes)
    total = sum(count for _, _, count in rows)
    if total <= MOST_PARAMETERS:
        return
    model = config.model
    counts = {name: count for name, _, count in rows}
    recurrent = sum(
        count for name, _, count in rows if name.removeprefix("bidirectional_").startswith(f"{model.cell}_")
    )
    outputs = output_units(num_classes)
    # Each part of the model: (its count, how it is made, the keys that size it).
    dense_keys = _DENSE_KEYS.get(model.cell, ("model.units", "model.dense_units"))
    parts = [
        (counts["dense"], f"dense {features:,} x {model.dense_units} = {counts['dense']:,}", dense_keys),
        (counts["output"], f"output {model.dense_units} x {outputs:,} = {counts['output']:,}", ("model.dense_units",)),
    ]
    if "embedding" in counts:
        description = f"embedding {vocabulary_size:,} x {model.embedding_dim} = {counts['embedding']:,}"
        parts.append((counts["embedding"], description, ("data.num_words", "model.embedding_dim")))
    if "convolutions" in counts:
        widths = ", ".join(str(width) for width in model.conv_widths)
        description = f"convolutions of widths {widths} x {model.conv_filters} filters = {counts['convolutions']:,}"
        parts.append(
            (counts["convolutions"], description, ("model.conv_widths", "model.conv_filters", "model.embedding_dim"))
        )
    if recurrent:
        layer_noun = "layer" if model.layers == 1 else "layers"
        direction = "bidirectional " if model.bidirectional else ""
        description = f"{model.layers} {direction}{model.cell} {layer_noun} of {model.units} units = {recurrent:,}"
        parts.append((recurrent, description, ("model.units", "model.layers")))
    # The largest parts that together make up most of the total: those are the ones to lower.
    named: list[str] = []
    keys: list[str] = []
    covered = 0
    for count, description, part_keys in sorted(parts, key=lambda part: part[0], reverse=True):
        if covered >= 0.9 * total or len(named) == 3:
            break
        named.append(description)
        keys += [key for key in part_keys if key not in keys]
        covered += count
    lower = keys[0] if len(keys) == 1 else f"{', '.join(keys[:-1])} or {keys[-1]}"
    raise ModelTooLargeError(
        f"model of {total:,} parameters ({'; '.join(named)}) is over rnnbench's limit of {MOST_PARAMETERS:,}; lower {lower}"
    )


# What sizes the dense head's input: the vocabulary for the bag of words, the flattened
# sequence for `embedding`, and (the default) the last recurrent layer's units.
_DENSE_KEYS = {
    "ann": ("data.num_words", "model.dense_units"),
    "embedding": ("data.maxlen", "model.embedding_dim", "model.dense_units"),
    "cnn": ("model.conv_widths", "model.conv_filters", "model.dense_units"),
}


# The formulas, one per kind of layer, with their numbers filled in: each returns (formula, count).


def _embedding_formula(vocabulary_size: int, embedding_dim: int) -> tuple[str, int]:
    count = vocabulary_size * embedding_dim
    return f"vocabulary {vocabulary_size:,} x embedding {embedding_dim} = {count:,}", count


# Per cell: its gates, its bias vectors per gate, and how the formula names the gates. Each gate
# has an input kernel, a recurrent kernel and a bias; Keras 3's GRU (reset_after=True) keeps
# separate input and recurrent biases, hence 2.
_GATES = {"simple_rnn": (1, 1, ""), "lstm": (4, 1, "4 gates x "), "gru": (3, 2, "3 gates x ")}


def _recurrent_formula(cell: str, inputs: int, units: int, biases: Optional[int] = None) -> tuple[str, int]:
    gates, default_biases, what = _GATES[cell]
    biases = default_biases if biases is None else biases
    count = gates * units * (inputs + units + biases)
    return f"{what}units {units} x (input {inputs} + recurrent {units} + bias {biases}) = {count:,}", count


def _bidirectional_formula(inner: str, count: int) -> tuple[str, int]:
    # A forward and a backward copy of the layer, each with its own weights.
    return f"2 directions x [{inner}]", 2 * count


def _bigram_bag_formula(num_tokens: int) -> tuple[str, int]:
    # The bigram vocabulary is as large as the word vocabulary.
    return f"no weights; input = words {num_tokens // 2:,} + bigrams {num_tokens // 2:,} = {num_tokens:,}", 0


def _tfidf_formula(num_tokens: int) -> tuple[str, int]:
    return f"fixed idf of {num_tokens:,} tokens = {num_tokens:,}", num_tokens


def _convolutions_formula(widths, embedding_dim: int, filters: int) -> tuple[str, int]:
    # Each branch: a kernel of width x input channels x filters, and a bias per filter.
    branches = [width * embedding_dim * filters + filters for width in widths]
    count = sum(branches)
    if len(widths) == 1:
        return f"width {widths[0]} x embedding {embedding_dim} x filters {filters} + bias {filters} = {count:,}", count
    listed = ", ".join(str(width) for width in widths)
    each = f"width x embedding {embedding_dim} x filters {filters} + bias {filters}"
    return f"widths {listed}, each {each}: {' + '.join(f'{branch:,}' for branch in branches)} = {count:,}", count


def _dense_formula(inputs: int, units: int) -> tuple[str, int]:
    count = inputs * units + units
    return f"input {inputs:,} x units {units} + bias {units} = {count:,}", count


def _formula(layer: layers.Layer) -> tuple[str, int]:
    if isinstance(layer, layers.Bidirectional):
        return _bidirectional_formula(*_formula(layer.forward_layer))
    if isinstance(layer, layers.Embedding):
        return _embedding_formula(layer.input_dim, layer.output_dim)
    for cell, recurrent_layer in RECURRENT_LAYERS.items():
        if type(layer) is recurrent_layer:
            # A GRU built with reset_after=False has one bias per gate; rnnbench builds none.
            biases = 1 if cell == "gru" and not getattr(layer, "reset_after", True) else None
            return _recurrent_formula(cell, layer.cell.kernel.shape[0], layer.units, biases)
    if isinstance(layer, layers.Dense):
        return _dense_formula(layer.kernel.shape[0], layer.units)
    if isinstance(layer, TfIdf):
        return _tfidf_formula(layer.num_tokens)
    if isinstance(layer, ConvolutionBranches):
        return _convolutions_formula(layer.widths, layer.branches[0].kernel.shape[1], layer.filters)
    if layer.name == _BIGRAM_BAG:
        return _bigram_bag_formula(layer.num_tokens)
    count = layer.count_params() if layer.built else 0
    return ("no weights" if count == 0 else f"{count:,}"), count
