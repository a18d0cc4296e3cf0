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
    PoolOverTime,
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
@pytest.mark.parametrize(
    "extra", [(), ("model.layers=2", "model.bidirectional=true", "model.units=17", "model.embedding_dim=9")]
)
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
    keras_own = keras.ops.convert_to_numpy(
        keras.layers.CategoryEncoding(num_tokens=10, output_mode="multi_hot")(tokens)
    )
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
        *[
            (
                cell,
                (
                    "model.layers=2",
                    "model.bidirectional=true",
                    "model.units=17",
                    "model.embedding_dim=9",
                    "model.dropout=0.1",
                ),
                3,
            )
            for cell in CELLS
        ],
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
            (
                "data.num_words=2000000",
                "model.embedding_dim=4096",
                "model.cell=lstm",
                "model.layers=8",
                "model.bidirectional=true",
                "model.units=4096",
            ),
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
    # keras.Input above proves no layer is made; the time only guards against a grind, loosely.
    assert time.perf_counter() - started < 5.0
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
    # Building the model took minutes; the bound is loose enough for a busy machine.
    assert time.perf_counter() - started < 10.0
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
    assert outcome.output.endswith(
        "is over rnnbench's limit of 1,000,000,000; lower data.num_words or model.embedding_dim\n"
    )
    assert outcome.output.count("\n") == 1
    assert not (tmp_path / "runs").exists()


# The recurrent models' options: pooling over time, a padding mask, and three kinds of dropout.

POOLINGS = ["last", "max", "mean", "max_mean"]


def padded(tokens: list[int], maxlen: int, padding: str) -> np.ndarray:
    pads = [0] * (maxlen - len(tokens))
    return np.array([pads + tokens if padding == "pre" else tokens + pads], dtype="int32")


def test_the_options_default_to_the_lecture_model_with_the_same_weights():
    # The network Keras builds from the lecture's layers, drawing its weights in the same order.
    keras.utils.set_random_seed(3)
    ours = build_model(lecture("gru", "model.dropout=0.2"), 1_000, 2)
    keras.utils.set_random_seed(3)
    reference = keras.Sequential(
        [
            keras.Input(shape=(20,), dtype="int32"),
            keras.layers.Embedding(1_000, 50),
            keras.layers.GRU(50),
            keras.layers.Dropout(0.2, seed=1),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    assert [layer.name for layer in ours.layers] == ["embedding", "gru_1", "dropout", "dense", "output"]
    assert not ours.layers[0].mask_zero and ours.layers[1].cell.seed is None
    assert ours.layers[1].dropout == ours.layers[1].recurrent_dropout == 0.0
    for mine, theirs in zip(ours.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_array_equal(mine, theirs)


@pytest.mark.parametrize(
    "pooling, bidirectional, dense_inputs",
    [("max", False, 6), ("mean", False, 6), ("max_mean", False, 12), ("max_mean", True, 24), ("max", True, 12)],
)
def test_pooling_follows_the_last_recurrent_layer(pooling, bidirectional, dense_inputs):
    config = lecture(
        "lstm",
        f"model.pooling={pooling}",
        f"model.bidirectional={str(bidirectional).lower()}",
        "model.units=6",
        "model.layers=2",
    )
    network = build_model(config, 100, 2)
    names = [layer.name for layer in network.layers]
    prefix = "bidirectional_" if bidirectional else ""
    assert names == ["embedding", f"{prefix}lstm_1", f"{prefix}lstm_2", f"{pooling}_pooling", "dense", "output"]
    assert [network.get_layer(f"{prefix}lstm_{depth}").return_sequences for depth in (1, 2)] == [True, True]
    directions = 2 if bidirectional else 1
    assert tuple(network.get_layer(f"{prefix}lstm_2").output.shape) == (None, 20, 6 * directions)
    assert tuple(network.get_layer(f"{pooling}_pooling").output.shape) == (None, dense_inputs)
    assert network.get_layer(f"{pooling}_pooling").count_params() == 0
    assert network.get_layer("dense").count_params() == dense_inputs * 32 + 32
    formulas = {name: formula for name, formula, _ in parameter_formulas(network)}
    assert formulas[f"{pooling}_pooling"] == "no weights"
    assert formulas["dense"] == f"input {dense_inputs} x units 32 + bias 32 = {dense_inputs * 32 + 32:,}"


def test_each_dropout_is_its_layer_or_argument_seeded_apart():
    config = lecture(
        "gru",
        "model.embedding_dropout=0.1",
        "model.recurrent_input_dropout=0.2",
        "model.recurrent_dropout=0.3",
        "model.dropout=0.4",
        "model.layers=2",
        "train.seed=7",
    )
    network = build_model(config, 100, 2)
    assert [layer.name for layer in network.layers] == [
        "embedding",
        "embedding_dropout",
        "gru_1",
        "gru_2",
        "dropout",
        "dense",
        "output",
    ]
    spatial = network.get_layer("embedding_dropout")
    assert isinstance(spatial, keras.layers.SpatialDropout1D) and (spatial.rate, spatial.seed) == (0.1, 8)
    assert tuple(spatial.output.shape) == (None, 20, 50) and spatial.count_params() == 0
    for depth, seed in ((1, 9), (2, 10)):
        recurrent = network.get_layer(f"gru_{depth}")
        assert (recurrent.dropout, recurrent.recurrent_dropout, recurrent.cell.seed) == (0.2, 0.3, seed)
    assert network.get_layer("dropout").seed == 7
    # The generators' states are model variables, so a checkpoint restores where each mask stream was.
    seed_states = [variable for variable in network.non_trainable_variables if "seed_generator" in variable.path]
    assert len(seed_states) == 4


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("padding", ["pre", "post"])
def test_with_a_mask_padding_changes_nothing(pooling, bidirectional, padding):
    text = [5, 6, 7, 8]
    outputs = {}
    for mask in (True, False):
        weights = None
        for maxlen in (4, 9, 15):
            overrides = (
                f"model.pooling={pooling}",
                f"model.bidirectional={str(bidirectional).lower()}",
                f"model.mask_padding={str(mask).lower()}",
            )
            config = lecture(
                "gru", *overrides, f"data.padding={padding}", "model.units=6", "model.embedding_dim=5", maxlen=maxlen
            )
            network = build_model(config, 20, 2)
            # Recurrent weights do not depend on the sequence length, so every length shares them.
            weights = weights or network.get_weights()
            network.set_weights(weights)
            outputs[mask, maxlen] = keras.ops.convert_to_numpy(network(padded(text, maxlen, padding)))
    # Equal up to float rounding (a mean sums in another order); without the mask, pads move the output.
    for maxlen in (9, 15):
        np.testing.assert_allclose(outputs[True, maxlen], outputs[True, 4], rtol=1e-6, atol=1e-7)
        assert not np.allclose(outputs[False, maxlen], outputs[False, 4], rtol=1e-6, atol=1e-7)


def test_masked_max_pooling_ignores_pads_with_huge_embeddings():
    config = lecture(
        "lstm", "model.mask_padding=true", "model.pooling=max", "data.padding=post", "model.units=6", maxlen=12
    )
    network = build_model(config, 20, 2)
    tokens = padded([3, 4, 5], 12, "post")
    before = keras.ops.convert_to_numpy(network(tokens))
    embedding = network.get_layer("embedding")
    vectors = embedding.get_weights()[0]
    vectors[0] = 1e4
    embedding.set_weights([vectors])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(network(tokens)), before)


def test_pool_over_time_leaves_masked_steps_out():
    # Two texts of three steps and two features; the second step of the first text and the
    # whole second text are padding, with values that would win a max or move a mean.
    steps = np.array([[[1.0, -2.0], [1e6, 1e6], [3.0, -4.0]], [[1e6, -1e6], [1e6, 5.0], [7.0, 1e6]]], dtype="float32")
    mask = np.array([[True, False, True], [False, False, False]])
    pooled = keras.ops.convert_to_numpy(PoolOverTime("max_mean")(steps, mask=mask))
    np.testing.assert_array_equal(pooled, [[3.0, -2.0, 2.0, -3.0], [0.0, 0.0, 0.0, 0.0]])
    # Keras' own max pooling takes no mask, so the padding step wins: why PoolOverTime exists.
    assert not keras.layers.GlobalMaxPooling1D().supports_masking
    # Without a mask, the values are Keras' GlobalMaxPooling1D's and GlobalAveragePooling1D's.
    for pooling, keras_layers in (
        ("max", [keras.layers.GlobalMaxPooling1D()]),
        ("mean", [keras.layers.GlobalAveragePooling1D()]),
        ("max_mean", [keras.layers.GlobalMaxPooling1D(), keras.layers.GlobalAveragePooling1D()]),
    ):
        expected = np.concatenate([keras.ops.convert_to_numpy(layer(steps)) for layer in keras_layers], axis=-1)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(PoolOverTime(pooling)(steps)), expected, rtol=1e-6)
    with pytest.raises(ValueError, match=r"^unknown pooling 'min' \(allowed: max, mean, max_mean\)$"):
        PoolOverTime("min")


def test_a_text_of_padding_alone_trains_without_nan():
    config = lecture(
        "gru", "model.mask_padding=true", "model.pooling=max_mean", "data.padding=post", "model.units=4", maxlen=6
    )
    network = build_model(config, 20, 2)
    network.compile(optimizer="adam", loss=loss_for(2))
    tokens = np.array([[0, 0, 0, 0, 0, 0], [3, 4, 0, 0, 0, 0]], dtype="int32")
    loss = network.train_on_batch(tokens, np.array([0, 1]))
    assert np.isfinite(loss)
    assert all(np.isfinite(weights).all() for weights in network.get_weights())


def test_a_saved_pooled_masked_model_loads_again(tmp_path):
    config = lecture(
        "lstm",
        "model.mask_padding=true",
        "model.pooling=max_mean",
        "model.embedding_dropout=0.1",
        "model.recurrent_input_dropout=0.1",
        maxlen=5,
    )
    network = build_model(config, 10, 2)
    network.save(tmp_path / "pooled.keras")
    loaded = keras.saving.load_model(tmp_path / "pooled.keras")
    tokens = np.array([[0, 0, 2, 3, 4]], dtype="int32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(tokens)), keras.ops.convert_to_numpy(network(tokens)))


OPTION_SETS = [
    ("model.pooling=max_mean",),
    ("model.pooling=max_mean", "model.bidirectional=true", "model.layers=2"),
    ("model.pooling=mean", "model.mask_padding=true", "model.embedding_dropout=0.1"),
    (
        "model.pooling=max",
        "model.recurrent_input_dropout=0.2",
        "model.recurrent_dropout=0.2",
        "model.dropout=0.1",
        "model.units=9",
    ),
    ("model.embedding_dropout=0.3", "model.mask_padding=true", "model.bidirectional=true"),
]


@pytest.mark.parametrize("cell", ["simple_rnn", "lstm", "gru"])
@pytest.mark.parametrize("options", OPTION_SETS, ids=lambda options: ",".join(options))
def test_planned_parameters_equal_the_built_models_with_the_options(cell, options):
    config = lecture(cell, *options)
    planned = planned_parameters(config, 1_000, 3)
    network = build_model(config, 1_000, 3)
    assert planned == parameter_formulas(network)
    assert sum(count for _, _, count in planned) == network.count_params()


def test_embedding_dropout_serves_the_flat_embedding_too():
    config = lecture("embedding", "model.embedding_dropout=0.2")
    network = build_model(config, 1_000, 2)
    assert [layer.name for layer in network.layers] == ["embedding", "embedding_dropout", "flatten", "dense", "output"]
    assert planned_parameters(config, 1_000, 2) == parameter_formulas(network)


def test_summary_lists_the_new_layers_with_their_formulas(tmp_path):
    path = tmp_path / "pooled.yaml"
    path.write_text(
        "model:\n  cell: lstm\n  bidirectional: true\n  pooling: max_mean\n  embedding_dropout: 0.2\n  mask_padding: true\ndata:\n  padding: post\n",
        encoding="utf-8",
    )
    outcome = CliRunner().invoke(main, ["summary", str(path)])
    assert outcome.exit_code == 0, outcome.output
    table = outcome.output.split("Parameters per layer:")[1]
    lines = {line.split()[0]: " ".join(line.split()[1:]) for line in table.splitlines()[3:] if line.strip()}
    assert lines["embedding_dropout"] == "no weights 0"
    assert lines["max_mean_pooling"] == "no weights 0"
    # 50 units x 2 directions x (max and mean) = 200 features into the dense head.
    assert lines["dense"] == "input 200 x units 32 + bias 32 = 6,432 6,432"


@pytest.mark.parametrize(
    "options",
    [
        ("model.ngrams=2",),
        ("model.ngram_weighting=tfidf",),
        ("model.ngrams=2", "model.ngram_weighting=tfidf", "model.dropout=0.1"),
    ],
)
def test_bag_of_bigrams_and_tfidf_plan_their_parameters(options):
    config = lecture("ann", *options, maxlen=20)
    network = build_model(config, 1_000, 2)
    bigrams = "model.ngrams=2" in options
    # Input: 20 word ids, and with bigrams the 19 pairs of adjacent ones; the bag holds words and as many bigrams.
    assert network.input_shape == (None, 39 if bigrams else 20)
    tokens = 2_000 if bigrams else 1_000
    assert network.get_layer("dense").kernel.shape == (tokens, 32)
    planned = planned_parameters(config, 1_000, 2)
    assert planned == parameter_formulas(network)
    tfidf = tokens if "model.ngram_weighting=tfidf" in options else 0
    assert sum(count for _, _, count in planned) == network.count_params() == tfidf + tokens * 32 + 32 + 33
    if bigrams:
        assert planned[0] == ("bag_of_words_and_bigrams", "no weights; input = words 1,000 + bigrams 1,000 = 2,000", 0)


def test_the_default_bag_of_words_is_unchanged():
    network = build_model(lecture("ann"), 10_000, 2)
    assert [layer.name for layer in network.layers] == ["bag_of_words", "dense", "output"]
    assert network.input_shape == (None, 20)
    assert planned_parameters(lecture("ann"), 10_000, 2)[0] == ("bag_of_words", "no weights", 0)


def test_tfidf_weights_are_fixed_normalised_and_saved(tmp_path):
    config = lecture("ann", "model.ngram_weighting=tfidf", maxlen=4)
    idf = np.array([1.0, 2.0, 1.5, 3.0, 1.25, 1.0], dtype="float32")
    network = build_model(config, 6, 2, token_weights=idf)
    tfidf = network.get_layer("tfidf")
    assert tfidf.trainable_weights == [] and len(tfidf.non_trainable_weights) == 1
    tokens = np.array([[0, 2, 2, 3], [5, 5, 5, 5]], dtype="int32")
    features = keras.ops.convert_to_numpy(keras.Sequential(network.layers[:2])(tokens))
    expected = np.array([[1.0, 0, 1.5, 3.0, 0, 0], [0, 0, 0, 0, 0, 1.0]])
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(features, expected, rtol=1e-6)
    network.save(tmp_path / "tfidf.keras")
    loaded = keras.saving.load_model(tmp_path / "tfidf.keras")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded.get_layer("tfidf").idf), idf)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(tokens)), keras.ops.convert_to_numpy(network(tokens)))


def test_summary_shows_the_bag_of_bigrams(tmp_path):
    path = tmp_path / "bigrams.yaml"
    path.write_text("name: bigrams\nmodel:\n  cell: ann\n  ngrams: 2\n  ngram_weighting: tfidf\n")
    outcome = CliRunner().invoke(main, ["summary", str(path)])
    assert outcome.exit_code == 0, outcome.output
    assert "no weights; input = words 10,000 + bigrams 10,000 = 20,000" in outcome.output
    assert "fixed idf of 20,000 tokens = 20,000" in outcome.output
    assert "input 20,000 x units 32 + bias 32 = 640,032" in outcome.output
