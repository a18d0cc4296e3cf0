from pathlib import Path

import pytest

from rnnbench.config import CELLS, Config, ConfigError, config_from_mapping, load_config

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(tmp_path: Path, text: str, overrides=()) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, overrides)
    message = str(caught.value)
    assert "\n" not in message
    return message.replace(str(path), "exp.yaml")


def test_defaults_are_the_lectures_model():
    config = Config()
    assert (config.model.cell, config.model.embedding_dim, config.model.units, config.model.dense_units) == ("gru", 50, 50, 32)
    assert (config.data.num_words, config.data.maxlen, config.data.padding, config.data.truncating) == (10000, 200, "pre", "pre")
    assert (config.train.epochs, config.train.batch_size, config.train.optimizer) == (5, 32, "adam")
    assert config.data.validation == 0.2


def test_name_defaults_to_file_stem(tmp_path):
    config = load_config(write(tmp_path, "model: {cell: lstm}\n", "my_lstm.yaml"))
    assert config.name == "my_lstm"
    assert config.model.cell == "lstm"


def test_config_is_frozen(tmp_path):
    config = load_config(write(tmp_path, "model: {cell: lstm}\n"))
    with pytest.raises(Exception):
        config.model.cell = "gru"


def test_unknown_cell_names_file_key_choices_and_suggestion(tmp_path):
    assert error_of(tmp_path, "model:\n  cell: lstn\n") == (
        "exp.yaml: model.cell='lstn' is not one of ann, embedding, gru, lstm, simple_rnn (did you mean 'lstm'?)"
    )


@pytest.mark.parametrize(
    "text, expected",
    [
        ("model:\n  embeding_dim: 8\n", "exp.yaml: unknown key model.embeding_dim (allowed: bidirectional, cell, dense_units, dropout, embedding_dim, embedding_trainable, layers, pretrained_embedding, units) (did you mean 'embedding_dim'?)"),
        ("modle:\n  cell: gru\n", "exp.yaml: unknown key modle (allowed: backend, data, model, name, train) (did you mean 'model'?)"),
        ("model:\n  layers: two\n", "exp.yaml: model.layers='two' is not an integer"),
        ("model:\n  layers: 0\n", "exp.yaml: model.layers=0 is out of range (allowed: >= 1 and <= 8)"),
        ("model:\n  dropout: 1.0\n", "exp.yaml: model.dropout=1.0 is out of range (allowed: >= 0.0 and < 1.0)"),
        ("model:\n  bidirectional: yes please\n", "exp.yaml: model.bidirectional='yes please' is not true or false"),
        ("data:\n  validation: tset\n", "exp.yaml: data.validation='tset' is not allowed (allowed: > 0.0 and < 1.0, or 'test') (did you mean 'test'?)"),
        ("data:\n  validation: 1.5\n", "exp.yaml: data.validation=1.5 is out of range (allowed: > 0.0 and < 1.0, or 'test')"),
        ("data:\n  padding: left\n", "exp.yaml: data.padding='left' is not one of post, pre"),
        ("train:\n  optimizer: adma\n", "exp.yaml: train.optimizer='adma' is not one of adam, adamw, rmsprop, sgd (did you mean 'adam'?)"),
        ("train:\n  learning_rate: fast\n", "exp.yaml: train.learning_rate='fast' is not a number"),
        ("model: gru\n", "exp.yaml: model must be a mapping with keys bidirectional, cell, dense_units, dropout, embedding_dim, embedding_trainable, layers, pretrained_embedding, units, got a string"),
        ("backend: tensorflw\n", "exp.yaml: backend='tensorflw' is not one of auto, jax, tensorflow, torch (did you mean 'tensorflow'?)"),
        ("- model\n", "exp.yaml: expected a mapping of sections (name, backend, model, data, train), got a list"),
        ("", "exp.yaml: the file is empty (write at least one key, e.g. 'model: {cell: gru}')"),
        ("model: [\n", "exp.yaml: invalid YAML at line 2, column 1: expected the node content, but found '<stream end>'"),
    ],
)
def test_error_messages(tmp_path, text, expected):
    assert error_of(tmp_path, text) == expected


def test_overrides_are_validated_and_named(tmp_path):
    config = load_config(write(tmp_path, "model: {cell: gru}\n"), ["model.layers=2", "data.validation=test", "train.learning_rate=0.01"])
    assert (config.model.layers, config.data.validation, config.train.learning_rate) == (2, "test", 0.01)
    assert error_of(tmp_path, "model: {cell: gru}\n", ["model.cell=lstn"]).startswith("--set model.cell=lstn: model.cell='lstn' is not one of")
    assert error_of(tmp_path, "model: {cell: gru}\n", ["model.layers"]) == "--set model.layers: expected KEY=VALUE, e.g. --set model.layers=2"
    assert error_of(tmp_path, "model: {cell: gru}\n", ["model.unit=3"]).startswith("--set model.unit=3: unknown key model.unit")


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"missing.yaml: config file not found$"):
        load_config(tmp_path / "missing.yaml")


def test_every_shipped_config_loads():
    paths = sorted(path for path in (ROOT / "configs").rglob("*.yaml") if path.parent.name != "sweeps")
    assert len(paths) >= 12
    for path in paths:
        config = load_config(path)
        assert config.model.cell in CELLS
        # Configs in a sub-folder are named after it, so that `compare` tells them apart.
        expected = path.stem if path.parent.name == "configs" else f"{path.parent.name}_{path.stem}"
        assert config.name == expected
        assert path.read_text().startswith("# ") and "# Run: rnnbench run " in path.read_text()
    lecture = {path.stem: load_config(path) for path in (ROOT / "configs" / "lecture").glob("*.yaml")}
    assert set(lecture) == {"ann", "embedding", "pretrained", "simple_rnn", "lstm", "gru", "gru2"}
    assert all(config.data.maxlen == 20 for config in lecture.values())
    assert lecture["gru2"].model.layers == 2


def test_mapping_round_trip():
    config = config_from_mapping({"model": {"cell": "lstm", "layers": 2}})
    assert config_from_mapping(config.to_dict()) == config
