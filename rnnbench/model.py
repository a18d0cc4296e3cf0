"""The model factory: a config and a vocabulary size in, a `keras.Sequential` out.

Every model is  input -> encoder -> [Dropout] -> Dense(dense_units, relu) -> output,  where
the encoder comes from one registry keyed by `model.cell`, so no cell can differ from another
in its embedding, head or output. Nothing here reads files, seeds or prints.
"""

from __future__ import annotations

from typing import Callable, Optional

import keras
import numpy as np
from keras import layers, ops

from rnnbench.config import Config

RECURRENT_LAYERS = {
    "simple_rnn": layers.SimpleRNN,
    "lstm": layers.LSTM,
    "gru": layers.GRU,
}


def _embedding(config: Config, vocabulary_size: int) -> layers.Embedding:
    # Pre-trained vectors are set by `build_model` after the layer is built, not through an
    # initializer, which would copy the whole matrix into the saved model's config.
    return layers.Embedding(
        vocabulary_size, config.model.embedding_dim, trainable=config.model.embedding_trainable, name="embedding"
    )


def _recurrent_encoder(cell: str) -> Callable[[Config, int], list[layers.Layer]]:
    def encoder(config: Config, vocabulary_size: int) -> list[layers.Layer]:
        model = config.model
        stack: list[layers.Layer] = [_embedding(config, vocabulary_size)]
        for depth in range(model.layers):
            # Every layer but the last hands its whole sequence to the next one.
            recurrent = RECURRENT_LAYERS[cell](
                model.units, return_sequences=depth < model.layers - 1, name=f"{cell}_{depth + 1}"
            )
            if model.bidirectional:
                recurrent = layers.Bidirectional(recurrent, name=f"bidirectional_{cell}_{depth + 1}")
            stack.append(recurrent)
        return stack

    return encoder


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


def _bag_of_words(config: Config, vocabulary_size: int) -> list[layers.Layer]:
    # The lecture's ANN: which vocabulary words occur in the text, as a multi-hot vector. Both
    # layers give the same values; TensorFlow's bincount path is the faster one there
    # (scripts/bench_multi_hot.py).
    if keras.backend.backend() == "tensorflow":
        return [layers.CategoryEncoding(num_tokens=vocabulary_size, output_mode="multi_hot", name="bag_of_words")]
    return [MultiHot(vocabulary_size, name="bag_of_words")]


def _flat_embedding(config: Config, vocabulary_size: int) -> list[layers.Layer]:
    # The lecture's "train data embedding": word vectors concatenated in order.
    return [_embedding(config, vocabulary_size), layers.Flatten(name="flatten")]


ENCODERS: dict[str, Callable[[Config, int], list[layers.Layer]]] = {
    **{cell: _recurrent_encoder(cell) for cell in RECURRENT_LAYERS},
    "ann": _bag_of_words,
    "embedding": _flat_embedding,
}


def build_model(
    config: Config, vocabulary_size: int, num_classes: int, embedding_matrix: Optional[np.ndarray] = None
) -> keras.Sequential:
    """Build (not compile) the model for `config`: sigmoid output for 2 classes, softmax above.

    `embedding_matrix` (vocabulary_size x embedding_dim) replaces the Embedding's random start.
    """
    if num_classes < 2:
        raise ValueError(f"a classifier needs at least 2 classes, got {num_classes}")
    stack: list[layers.Layer] = [keras.Input(shape=(config.data.maxlen,), dtype="int32", name="tokens")]
    stack += ENCODERS[config.model.cell](config, vocabulary_size)
    if config.model.dropout > 0:
        # A seeded Dropout draws its masks from a generator whose state is a model variable, so a
        # checkpoint restores it; unseeded, the torch backend would use torch's global generator.
        stack.append(layers.Dropout(config.model.dropout, seed=config.train.seed, name="dropout"))
    stack.append(layers.Dense(config.model.dense_units, activation="relu", name="dense"))
    if num_classes == 2:
        stack.append(layers.Dense(1, activation="sigmoid", name="output"))
    else:
        stack.append(layers.Dense(num_classes, activation="softmax", name="output"))
    model = keras.Sequential(stack, name=f"{config.model.cell}_classifier")
    if embedding_matrix is not None:
        model.get_layer("embedding").set_weights([embedding_matrix])
    return model


def loss_for(num_classes: int) -> str:
    return "binary_crossentropy" if num_classes == 2 else "sparse_categorical_crossentropy"


def parameter_formulas(model: keras.Model) -> list[tuple[str, str, int]]:
    """Per layer: (name, the parameter-count formula with its numbers filled in, the count)."""
    rows = []
    for layer in model.layers:
        formula, count = _formula(layer)
        rows.append((layer.name, formula, count))
    return rows


def _formula(layer: layers.Layer) -> tuple[str, int]:
    if isinstance(layer, layers.Bidirectional):
        inner, count = _formula(layer.forward_layer)
        return f"2 directions x [{inner}]", 2 * count
    if isinstance(layer, layers.Embedding):
        count = layer.input_dim * layer.output_dim
        return f"vocabulary {layer.input_dim:,} x embedding {layer.output_dim} = {count:,}", count
    if isinstance(layer, (layers.SimpleRNN, layers.LSTM, layers.GRU)):
        units = layer.units
        inputs = layer.cell.kernel.shape[0]
        # Each gate has an input kernel, a recurrent kernel and a bias; Keras 3's GRU
        # (reset_after=True) keeps separate input and recurrent biases, hence "+ 2".
        gates, biases, what = {
            layers.SimpleRNN: (1, 1, ""),
            layers.LSTM: (4, 1, "4 gates x "),
            layers.GRU: (3, 2 if getattr(layer, "reset_after", True) else 1, "3 gates x "),
        }[type(layer)]
        count = gates * units * (inputs + units + biases)
        return (
            f"{what}units {units} x (input {inputs} + recurrent {units} + bias {biases}) = {count:,}",
            count,
        )
    if isinstance(layer, layers.Dense):
        inputs = layer.kernel.shape[0]
        count = inputs * layer.units + layer.units
        return f"input {inputs:,} x units {layer.units} + bias {layer.units} = {count:,}", count
    count = layer.count_params() if layer.built else 0
    return ("no weights" if count == 0 else f"{count:,}"), count
