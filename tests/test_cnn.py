"""The convolutional baseline (model.cell cnn): its options, parameter formulas, summary and a real slice."""

import keras
import numpy as np
import pytest
from click.testing import CliRunner

from rnnbench import results
from rnnbench.cli import main
from rnnbench.config import ConfigError, config_from_mapping
from rnnbench.model import (
    ConvolutionBranches,
    ModelTooLargeError,
    build_model,
    parameter_formulas,
    planned_parameters,
)
from rnnbench.train import run_experiment


def cnn(*overrides: str, maxlen: int = 40):
    return config_from_mapping({"model": {"cell": "cnn"}, "data": {"maxlen": maxlen}}, overrides=overrides)


def expected_count(vocabulary: int, embedding: int, widths: list[int], filters: int, dense: int, outputs: int) -> int:
    # The formulas of the brief, written out independently of rnnbench.model.
    convolutions = sum(width * embedding * filters + filters for width in widths)
    head = (len(widths) * filters) * dense + dense
    return vocabulary * embedding + convolutions + head + dense * outputs + outputs


@pytest.mark.parametrize(
    "overrides, embedding, widths, filters, dense",
    [
        ((), 50, [3, 4, 5], 100, 32),
        (("model.conv_widths=[2]", "model.conv_filters=7"), 50, [2], 7, 32),
        (("model.conv_widths=[1, 6, 20]", "model.embedding_dim=12", "model.dense_units=5"), 12, [1, 6, 20], 100, 5),
        (("model.conv_filters=64", "model.embedding_dim=30", "model.dropout=0.5"), 30, [3, 4, 5], 64, 32),
    ],
)
@pytest.mark.parametrize("num_classes", [2, 3])
def test_parameter_count_is_the_formula_and_keras_count(overrides, embedding, widths, filters, dense, num_classes):
    config = cnn(*overrides)
    model = build_model(config, 1_000, num_classes)
    outputs = 1 if num_classes == 2 else num_classes
    expected = expected_count(1_000, embedding, widths, filters, dense, outputs)
    assert model.count_params() == expected
    assert sum(count for _, _, count in parameter_formulas(model)) == expected
    assert planned_parameters(config, 1_000, num_classes) == parameter_formulas(model)
    convolutions = model.get_layer("convolutions")
    assert [branch.count_params() for branch in convolutions.branches] == [
        width * embedding * filters + filters for width in widths
    ]
    assert model.get_layer("dense").count_params() == len(widths) * filters * dense + dense


def test_layers_and_output_shape():
    model = build_model(cnn("model.dropout=0.5", "model.embedding_dropout=0.1"), 500, 3)
    assert [layer.name for layer in model.layers] == [
        "embedding",
        "embedding_dropout",
        "convolutions",
        "dropout",
        "dense",
        "output",
    ]
    batch = np.random.default_rng(0).integers(0, 500, size=(4, 40)).astype("int32")
    assert tuple(model(batch).shape) == (4, 3)
    assert tuple(model.get_layer("convolutions").compute_output_shape((4, 40, 50))) == (4, 300)


@pytest.mark.parametrize("maxlen", [1, 4])
def test_every_width_works_on_texts_shorter_than_it(maxlen):
    # The convolutions pad, so a width of 5 reads a text of 1 word.
    model = build_model(cnn(maxlen=maxlen), 100, 2)
    assert tuple(model(np.ones((2, maxlen), dtype="int32")).shape) == (2, 1)


def test_the_branches_are_max_pooled_relu_convolutions():
    layer = ConvolutionBranches([2, 3], 4)
    inputs = np.random.default_rng(1).normal(size=(2, 9, 5)).astype("float32")
    pooled = keras.ops.convert_to_numpy(layer(inputs))
    expected = [keras.ops.convert_to_numpy(branch(inputs)).max(axis=1) for branch in layer.branches]
    np.testing.assert_allclose(pooled, np.concatenate(expected, axis=-1), rtol=1e-6)
    assert pooled.min() >= 0.0


def test_a_saved_model_loads_with_the_same_predictions(tmp_path):
    model = build_model(cnn("model.conv_widths=[2, 5]", "model.conv_filters=8"), 200, 2)
    batch = np.random.default_rng(2).integers(0, 200, size=(3, 40)).astype("int32")
    model.save(tmp_path / "cnn.keras")
    loaded = keras.models.load_model(tmp_path / "cnn.keras")
    np.testing.assert_allclose(model.predict(batch, verbose=0), loaded.predict(batch, verbose=0), rtol=1e-6)
    assert loaded.get_layer("convolutions").widths == (2, 5)


def test_summary_shows_each_formula(tmp_path):
    path = tmp_path / "cnn.yaml"
    path.write_text("model:\n  cell: cnn\n  conv_widths: [2, 3]\n  conv_filters: 10\n", encoding="utf-8")
    outcome = CliRunner().invoke(main, ["summary", str(path)])
    assert outcome.exit_code == 0, outcome.output
    table = outcome.output.split("Parameters per layer:")[1]
    lines = {line.split()[0]: " ".join(line.split()[1:]) for line in table.splitlines()[3:] if line.strip()}
    assert lines["convolutions"] == (
        "widths 2, 3, each width x embedding 50 x filters 10 + bias 10: 1,010 + 1,510 = 2,520 2,520"
    )
    assert lines["dense"] == "input 20 x units 32 + bias 32 = 672 672"
    assert lines["total"] == f"{10_000 * 50 + 2_520 + 672 + 33:,}"


def test_one_width_has_a_one_term_formula():
    rows = planned_parameters(cnn("model.conv_widths=[4]", "model.conv_filters=3"), 100, 2)
    assert ("convolutions", "width 4 x embedding 50 x filters 3 + bias 3 = 603", 603) in rows


@pytest.mark.parametrize(
    "raw, message",
    [
        (
            {"model": {"cell": "gru", "conv_filters": 64}},
            "<config>: model.conv_filters=64 is for the convolutional model (model.cell='cnn'); model.cell='gru' has no convolutions",
        ),
        (
            {"model": {"cell": "ann", "conv_widths": [2, 3]}},
            "<config>: model.conv_widths=[2, 3] is for the convolutional model (model.cell='cnn'); model.cell='ann' has no convolutions",
        ),
        (
            {"model": {"cell": "embedding", "conv_widths": [3]}},
            "<config>: model.conv_widths=[3] is for the convolutional model (model.cell='cnn'); model.cell='embedding' has no convolutions",
        ),
        (
            {"model": {"cell": "cnn", "conv_widths": [3, 4, 3]}},
            "<config>: model.conv_widths=[3, 4, 3] repeats width 3; for more filters of one width raise model.conv_filters",
        ),
        (
            {"model": {"cell": "cnn", "conv_widths": [21]}},
            "<config>: model.conv_widths[0]=21 is out of range (allowed: >= 1 and <= 20)",
        ),
        ({"model": {"cell": "cnn", "conv_widths": []}}, "<config>: model.conv_widths=[] must hold at least 1 value"),
        (
            {"model": {"cell": "cnn", "conv_filters": 0}},
            "<config>: model.conv_filters=0 is out of range (allowed: >= 1 and <= 4096)",
        ),
        (
            {"model": {"cell": "cnn", "pooling": "max"}},
            "<config>: model.pooling='max' needs a recurrent cell (gru, lstm or simple_rnn); model.cell='cnn' has none",
        ),
        (
            {"model": {"cell": "cnn", "mask_padding": True}},
            "<config>: model.mask_padding needs a recurrent cell (gru, lstm or simple_rnn); model.cell='cnn' has none",
        ),
        (
            {"model": {"cell": "cnn", "recurrent_dropout": 0.2}},
            "<config>: model.recurrent_dropout needs a recurrent cell (gru, lstm or simple_rnn); model.cell='cnn' has none",
        ),
        (
            {"model": {"cell": "cnn", "recurrent_input_dropout": 0.2}},
            "<config>: model.recurrent_input_dropout needs a recurrent cell (gru, lstm or simple_rnn); model.cell='cnn' has none",
        ),
        (
            {"model": {"cell": "cnn", "ngrams": 2}},
            "<config>: model.ngrams=2 is for the bag-of-words model (model.cell='ann'); model.cell='cnn' reads words in order",
        ),
    ],
)
def test_options_of_other_models_are_refused_in_one_line(raw, message):
    with pytest.raises(ConfigError) as raised:
        config_from_mapping(raw)
    assert str(raised.value) == message


def test_a_mistake_in_a_cnn_override_names_the_override(tmp_path):
    path = tmp_path / "gru.yaml"
    path.write_text("model:\n  cell: gru\n", encoding="utf-8")
    outcome = CliRunner().invoke(main, ["summary", str(path), "--set", "model.conv_filters=8"])
    assert outcome.exit_code == 2
    assert outcome.output == (
        "Error: --set model.conv_filters=8: model.conv_filters=8 is for the convolutional model (model.cell='cnn');"
        " model.cell='gru' has no convolutions\n"
    )


def test_a_convolution_too_large_names_its_keys():
    config = cnn(
        "model.conv_widths=[13, 14, 15, 16, 17, 18, 19, 20]", "model.conv_filters=4096", "model.embedding_dim=4096"
    )
    convolutions = 132 * 4096 * 4096 + 8 * 4096
    total = 10_000 * 4096 + convolutions + (8 * 4096 * 32 + 32) + 33
    with pytest.raises(ModelTooLargeError) as raised:
        build_model(config, 10_000, 2)
    assert str(raised.value) == (
        f"model of {total:,} parameters (convolutions of widths 13, 14, 15, 16, 17, 18, 19, 20 x 4096 filters ="
        f" {convolutions:,}) is over rnnbench's limit of 1,000,000,000;"
        " lower model.conv_widths, model.conv_filters or model.embedding_dim"
    )


def test_a_recorded_cnn_config_validates_again():
    config = cnn("model.conv_widths=[2, 7]", "model.conv_filters=16")
    assert config_from_mapping(config.to_dict()) == config


def test_default_convolution_keys_change_no_fingerprint():
    gru = config_from_mapping({"model": {"cell": "gru"}})
    assert "conv_widths" not in gru.model.model_dump(exclude_defaults=True)
    assert gru.fingerprint() == config_from_mapping({"model": {"cell": "gru", "conv_filters": 100}}).fingerprint()


@pytest.mark.slow
def test_real_imdb_slice_learns(real_data_dir, tmp_path):
    # The text CNN on 2,000 real reviews (1,600 train), two epochs. Measured here (TensorFlow, 2-core
    # CPU) at seeds 1, 2, 3: best val_accuracy 0.688, 0.675, 0.655 and test accuracy 0.713, 0.664,
    # 0.660, about 25 s each; chance is 0.5.
    config = config_from_mapping(
        {"name": "cnn_slice", "model": {"cell": "cnn"}, "data": {"limit": 2000}, "train": {"epochs": 2}}
    )
    run_experiment(config, str(real_data_dir), tmp_path / "runs", "test", echo=lambda line: None)
    [record] = results.read_records(tmp_path / "runs")
    assert record.data["train_rows"] == 1600 and record.data["test_rows"] == 25_000
    assert record.result.best_val_accuracy > 0.6
    assert record.result.test_accuracy > 0.6
