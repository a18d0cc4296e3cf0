import keras
import numpy as np
import pytest

from rnnbench.config import CELLS, config_from_mapping
from rnnbench.model import ENCODERS, MultiHot, build_model, loss_for, parameter_formulas


def lecture(cell: str, *overrides: str, maxlen: int = 20):
    return config_from_mapping({"model": {"cell": cell}, "data": {"maxlen": maxlen}}, overrides=overrides)


def test_registry_covers_every_configurable_cell():
    assert set(ENCODERS) == set(CELLS)


@pytest.mark.parametrize(
    "cell, recurrent, total",
    [("simple_rnn", 5_050, 506_715), ("lstm", 20_200, 521_865), ("gru", 15_300, 516_965)],
)
def test_lecture_parameter_counts(cell, recurrent, total):
    model = build_model(lecture(cell), 10_000, 2)
    counts = [layer.count_params() for layer in model.layers]
    assert counts == [500_000, recurrent, 1_632, 33]
    assert model.count_params() == total


@pytest.mark.parametrize("cell, per_layer", [("simple_rnn", 5_050), ("lstm", 20_200), ("gru", 15_300)])
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_stacked_layers_return_sequences_except_the_last(cell, per_layer, depth):
    model = build_model(lecture(cell, f"model.layers={depth}"), 10_000, 2)
    recurrent = model.layers[1 : 1 + depth]
    assert [layer.return_sequences for layer in recurrent] == [True] * (depth - 1) + [False]
    # Later layers read the 50 units of the one before, which equals the embedding width here.
    assert model.count_params() == 500_000 + depth * per_layer + 1_632 + 33


def test_bidirectional_doubles_the_recurrent_layer_and_the_dense_input():
    model = build_model(lecture("lstm", "model.bidirectional=true"), 10_000, 2)
    assert model.layers[1].count_params() == 2 * 20_200
    assert model.layers[2].count_params() == 100 * 32 + 32


def test_baselines():
    ann = build_model(lecture("ann"), 10_000, 2)
    assert [layer.count_params() for layer in ann.layers] == [0, 320_032, 33]
    flat = build_model(lecture("embedding"), 10_000, 2)
    assert [layer.count_params() for layer in flat.layers] == [500_000, 0, 20 * 50 * 32 + 32, 33]


def test_multi_class_head_and_loss():
    model = build_model(lecture("gru"), 10_000, 3)
    assert model.layers[-1].units == 3
    assert model.layers[-1].activation.__name__ == "softmax"
    assert loss_for(3) == "sparse_categorical_crossentropy" and loss_for(2) == "binary_crossentropy"
    with pytest.raises(ValueError, match="at least 2 classes"):
        build_model(lecture("gru"), 10_000, 1)


@pytest.mark.parametrize("cell", CELLS)
def test_output_shapes(cell):
    model = build_model(lecture(cell, "model.dropout=0.2"), 500, 2)
    batch = np.random.default_rng(0).integers(0, 500, size=(4, 20)).astype("int32")
    assert tuple(model(batch).shape) == (4, 1)
    assert any(isinstance(layer, keras.layers.Dropout) for layer in model.layers)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("extra", [(), ("model.layers=2", "model.bidirectional=true", "model.units=17", "model.embedding_dim=9")])
def test_formulas_equal_keras_counts(cell, extra):
    model = build_model(lecture(cell, *extra), 1_000, 2)
    formulas = parameter_formulas(model)
    assert [count for _, _, count in formulas] == [layer.count_params() for layer in model.layers]


def test_formula_text_spells_out_the_lecture_numbers():
    formulas = {name: formula for name, formula, _ in parameter_formulas(build_model(lecture("lstm"), 10_000, 2))}
    assert formulas["embedding"] == "vocabulary 10,000 x embedding 50 = 500,000"
    assert formulas["lstm_1"] == "4 gates x units 50 x (input 50 + recurrent 50 + bias 1) = 20,200"
    assert formulas["dense"] == "input 50 x units 32 + bias 32 = 1,632"
    assert formulas["output"] == "input 32 x units 1 + bias 1 = 33"


def test_multi_hot_gives_category_encodings_values():
    # Padding, repeated ids and the largest id, in rows of the same length.
    tokens = np.array([[0, 0, 3, 3, 9], [1, 2, 3, 4, 5], [9, 9, 9, 9, 9]], dtype="int32")
    ours = keras.ops.convert_to_numpy(MultiHot(10)(tokens))
    keras_own = keras.ops.convert_to_numpy(keras.layers.CategoryEncoding(num_tokens=10, output_mode="multi_hot")(tokens))
    np.testing.assert_array_equal(ours, keras_own)
    assert ours.tolist()[0] == [1, 0, 0, 1, 0, 0, 0, 0, 0, 1]


def test_a_saved_bag_of_words_model_loads_again(tmp_path):
    network = build_model(config_from_mapping({"model": {"cell": "ann"}, "data": {"maxlen": 5}}), 10, 2)
    network.save(tmp_path / "ann.keras")
    loaded = keras.saving.load_model(tmp_path / "ann.keras")
    tokens = np.array([[0, 1, 2, 3, 4]], dtype="int32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(tokens)), keras.ops.convert_to_numpy(network(tokens)))
