import time

import keras
import numpy as np
import pytest
from click.testing import CliRunner

from rnnbench.cli import main
from rnnbench.config import CELLS, config_from_mapping
from rnnbench.errors import InputError
from rnnbench.model import (
    ENCODER_PARAMETERS,
    ENCODERS,
    MOST_PARAMETERS,
    ModelTooLargeError,
    MultiHot,
    build_model,
    loss_for,
    parameter_formulas,
    planned_parameters,
)


def lecture(cell: str, *overrides: str, maxlen: int = 20):
    return config_from_mapping({"model": {"cell": cell}, "data": {"maxlen": maxlen}}, overrides=overrides)


def test_registry_covers_every_configurable_cell():
    assert set(ENCODERS) == set(CELLS) == set(ENCODER_PARAMETERS)


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


@pytest.mark.parametrize(
    "cell, extra, num_classes",
    [
        *[(cell, (), 2) for cell in CELLS],
        *[(cell, ("model.layers=2", "model.bidirectional=true", "model.units=17", "model.embedding_dim=9", "model.dropout=0.1"), 3) for cell in CELLS],
        ("lstm", ("model.bidirectional=true",), 2),
        ("gru", ("model.layers=3", "model.units=7", "model.dense_units=5"), 5),
    ],
)
def test_planned_parameters_equal_the_built_models(cell, extra, num_classes):
    config = lecture(cell, *extra)
    planned = planned_parameters(config, 1_000, num_classes)
    network = build_model(config, 1_000, num_classes)
    assert planned == parameter_formulas(network)
    assert sum(count for _, _, count in planned) == network.count_params()


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (
            ("data.num_words=2000000", "model.embedding_dim=4096"),
            "model of 8,192,623,865 parameters (embedding 2,000,000 x 4096 = 8,192,000,000) is over rnnbench's limit of "
            "1,000,000,000; lower data.num_words or model.embedding_dim",
        ),
        (
            ("model.cell=lstm", "model.layers=8", "model.bidirectional=true", "model.units=4096"),
            "model of 2,955,452,769 parameters (8 bidirectional lstm layers of 4096 units = 2,954,690,560) is over rnnbench's "
            "limit of 1,000,000,000; lower model.units or model.layers",
        ),
        (
            ("data.num_words=2000000", "model.embedding_dim=4096", "model.cell=lstm", "model.layers=8", "model.bidirectional=true", "model.units=4096"),
            "model of 11,279,532,097 parameters (embedding 2,000,000 x 4096 = 8,192,000,000; 8 bidirectional lstm layers of 4096 units "
            "= 3,087,269,888) is over rnnbench's limit of 1,000,000,000; lower data.num_words, model.embedding_dim, model.units or model.layers",
        ),
        (
            ("model.cell=ann", "data.num_words=2000000", "model.dense_units=4096"),
            "model of 8,192,008,193 parameters (dense 2,000,000 x 4096 = 8,192,004,096) is over rnnbench's limit of "
            "1,000,000,000; lower data.num_words or model.dense_units",
        ),
        (
            ("model.cell=embedding", "data.maxlen=100000", "model.embedding_dim=1000", "model.dense_units=100"),
            "model of 10,010,000,201 parameters (dense 100,000,000 x 100 = 10,000,000,100) is over rnnbench's limit of "
            "1,000,000,000; lower data.maxlen, model.embedding_dim or model.dense_units",
        ),
    ],
)
def test_a_model_too_large_is_refused_before_any_layer_is_made(monkeypatch, overrides, expected):
    config = config_from_mapping({}, overrides=overrides)

    def no_layers(*arguments, **keywords):
        raise AssertionError("a layer was made")

    monkeypatch.setattr(keras, "Input", no_layers)
    started = time.perf_counter()
    with pytest.raises(ModelTooLargeError) as caught:
        build_model(config, config.data.num_words, 2)
    assert time.perf_counter() - started < 0.1
    assert str(caught.value) == expected and len(expected) < 300
    assert isinstance(caught.value, InputError) and caught.value.exit_code == 2
    assert sum(count for _, _, count in planned_parameters(config, config.data.num_words, 2)) > MOST_PARAMETERS


def test_the_largest_lecture_sized_models_are_allowed():
    config = lecture("lstm", "model.layers=8", "model.bidirectional=true", "model.units=1024")
    assert sum(count for _, _, count in planned_parameters(config, 10_000, 2)) < MOST_PARAMETERS


def test_summary_of_a_model_too_large_exits_2_at_once(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text("data:\n  num_words: 2000000\nmodel:\n  embedding_dim: 4096\n", encoding="utf-8")
    started = time.perf_counter()
    outcome = CliRunner().invoke(main, ["summary", str(path)])
    assert time.perf_counter() - started < 1.0
    assert outcome.exit_code == 2
    assert outcome.output == (
        "Error: model of 8,192,623,865 parameters (embedding 2,000,000 x 4096 = 8,192,000,000) is over rnnbench's limit of "
        "1,000,000,000; lower data.num_words or model.embedding_dim\n"
    )


def test_run_of_a_model_too_large_reads_no_data_and_writes_nothing(tmp_path, monkeypatch):
    from rnnbench import data

    def no_reading(*arguments, **keywords):
        raise AssertionError("data was read before the model's size was checked")

    monkeypatch.setattr(data, "load_dataset", no_reading)
    path = tmp_path / "huge.yaml"
    path.write_text(
        "data:\n  dataset: files\n  files: {train: missing.tsv}\n  num_words: 2000000\nmodel:\n  embedding_dim: 4096\ntrain:\n  seeds: [1, 2]\n",
        encoding="utf-8",
    )
    outcome = CliRunner().invoke(main, ["run", str(path), "--runs-dir", str(tmp_path / "runs")])
    assert outcome.exit_code == 2
    assert outcome.output.endswith("is over rnnbench's limit of 1,000,000,000; lower data.num_words or model.embedding_dim\n")
    assert outcome.output.count("\n") == 1
    assert not (tmp_path / "runs").exists()
