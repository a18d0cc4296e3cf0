import time
from pathlib import Path

import pytest

from rnnbench.config import CELLS, Config, ConfigError, config_from_mapping, load_config, parse_override, read_mapping

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
    assert (config.model.cell, config.model.embedding_dim, config.model.units, config.model.dense_units) == (
        "gru",
        50,
        50,
        32,
    )
    assert (config.data.num_words, config.data.maxlen, config.data.padding, config.data.truncating) == (
        10000,
        200,
        "pre",
        "pre",
    )
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
        "exp.yaml: model.cell='lstn' is not one of ann, cnn, embedding, gru, lstm, simple_rnn (did you mean 'lstm'?)"
    )


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "model:\n  embeding_dim: 8\n",
            "exp.yaml: unknown key model.embeding_dim (allowed: bidirectional, cell, conv_filters, conv_widths, dense_units, dropout, embedding_dim, embedding_dropout, embedding_trainable, layers, lm_epochs, mask_padding, ngram_weighting, ngrams, pooling, pretrained_embedding, pretrained_encoder, recurrent_dropout, recurrent_input_dropout, units) (did you mean 'embedding_dim'?)",
        ),
        (
            "modle:\n  cell: gru\n",
            "exp.yaml: unknown key modle (allowed: backend, data, model, name, train) (did you mean 'model'?)",
        ),
        ("model:\n  layers: two\n", "exp.yaml: model.layers='two' is not an integer"),
        ("model:\n  layers: 0\n", "exp.yaml: model.layers=0 is out of range (allowed: >= 1 and <= 8)"),
        ("model:\n  dropout: 1.0\n", "exp.yaml: model.dropout=1.0 is out of range (allowed: >= 0.0 and < 1.0)"),
        ("model:\n  bidirectional: yes please\n", "exp.yaml: model.bidirectional='yes please' is not true or false"),
        (
            "data:\n  validation: tset\n",
            "exp.yaml: data.validation='tset' is not allowed (allowed: > 0.0 and < 1.0, or 'test') (did you mean 'test'?)",
        ),
        (
            "data:\n  validation: 1.5\n",
            "exp.yaml: data.validation=1.5 is out of range (allowed: > 0.0 and < 1.0, or 'test')",
        ),
        ("data:\n  padding: left\n", "exp.yaml: data.padding='left' is not one of post, pre"),
        (
            "train:\n  optimizer: adma\n",
            "exp.yaml: train.optimizer='adma' is not one of adam, adamw, rmsprop, sgd (did you mean 'adam'?)",
        ),
        ("train:\n  learning_rate: fast\n", "exp.yaml: train.learning_rate='fast' is not a number"),
        (
            "model: gru\n",
            "exp.yaml: model must be a mapping with keys bidirectional, cell, conv_filters, conv_widths, dense_units, dropout, embedding_dim, embedding_dropout, embedding_trainable, layers, lm_epochs, mask_padding, ngram_weighting, ngrams, pooling, pretrained_embedding, pretrained_encoder, recurrent_dropout, recurrent_input_dropout, units, got a string",
        ),
        (
            "backend: tensorflw\n",
            "exp.yaml: backend='tensorflw' is not one of auto, jax, tensorflow, torch (did you mean 'tensorflow'?)",
        ),
        ("- model\n", "exp.yaml: expected a mapping of sections (name, backend, model, data, train), got a list"),
        ("", "exp.yaml: the file is empty (write at least one key, e.g. 'model: {cell: gru}')"),
        (
            "model: [\n",
            "exp.yaml: invalid YAML at line 2, column 1: expected the node content, but found '<stream end>'",
        ),
    ],
)
def test_error_messages(tmp_path, text, expected):
    assert error_of(tmp_path, text) == expected


def test_overrides_are_validated_and_named(tmp_path):
    config = load_config(
        write(tmp_path, "model: {cell: gru}\n"), ["model.layers=2", "data.validation=test", "train.learning_rate=0.01"]
    )
    assert (config.model.layers, config.data.validation, config.train.learning_rate) == (2, "test", 0.01)
    assert error_of(tmp_path, "model: {cell: gru}\n", ["model.cell=lstn"]).startswith(
        "--set model.cell=lstn: model.cell='lstn' is not one of"
    )
    assert (
        error_of(tmp_path, "model: {cell: gru}\n", ["model.layers"])
        == "--set model.layers: expected KEY=VALUE, e.g. --set model.layers=2"
    )
    assert error_of(tmp_path, "model: {cell: gru}\n", ["model.unit=3"]).startswith(
        "--set model.unit=3: unknown key model.unit"
    )


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"missing.yaml: config file not found$"):
        load_config(tmp_path / "missing.yaml")


# Shipped configs that are one point of a shipped sweep, named as the sweep names that point so
# that both commands train (and reuse) the same runs.
SWEEP_POINTS = {"best/gru.yaml": ("best/cells.yaml", "best-gru")}


def test_every_shipped_config_loads():
    paths = sorted(
        path
        for path in (ROOT / "configs").rglob("*.yaml")
        if path.parent.name != "sweeps" and "\nsweep:" not in path.read_text()
    )
    assert len(paths) >= 12
    for path in paths:
        config = load_config(path)
        assert config.model.cell in CELLS
        # Configs in a sub-folder are named after it, so that `compare` tells them apart.
        expected = path.stem if path.parent.name == "configs" else f"{path.parent.name}_{path.stem}"
        relative = path.relative_to(ROOT / "configs").as_posix()
        assert config.name == (SWEEP_POINTS[relative][1] if relative in SWEEP_POINTS else expected)
        assert path.read_text().startswith("# ") and "# Run: rnnbench run " in path.read_text()
    lecture = {path.stem: load_config(path) for path in (ROOT / "configs" / "lecture").glob("*.yaml")}
    assert set(lecture) == {"ann", "embedding", "pretrained", "simple_rnn", "lstm", "gru", "gru2"}
    assert all(config.data.maxlen == 20 for config in lecture.values())
    assert lecture["gru2"].model.layers == 2


def test_mapping_round_trip():
    config = config_from_mapping({"model": {"cell": "lstm", "layers": 2}})
    assert config_from_mapping(config.to_dict()) == config


def test_a_key_written_twice_is_refused_with_its_lines_and_mapping(tmp_path):
    variants = (
        "sweep:\n  variants:\n    gru: {model.cell: gru}\n    lstm: {model.cell: lstm}\n    gru: {model.layers: 2}\n"
    )
    path = write(tmp_path, variants)
    with pytest.raises(ConfigError) as caught:
        read_mapping(path)
    assert str(caught.value) == f"{path}: line 5: key 'gru' appears twice in sweep.variants (first on line 3)"
    assert error_of(tmp_path, "model: {cell: gru}\ntrain: {epochs: 2}\nmodel: {cell: lstm}\n") == (
        "exp.yaml: line 3: key 'model' appears twice at the top level (first on line 1)"
    )
    assert (
        error_of(tmp_path, "model: {cell: gru, units: 8, cell: lstm}\n")
        == "exp.yaml: line 1: key 'cell' appears twice in model (first on line 1)"
    )
    # Keys are compared as the values they stand for, as a Python dict would.
    assert (
        error_of(tmp_path, "train:\n  seeds: [1]\n  seeds: [2]\n")
        == "exp.yaml: line 3: key 'seeds' appears twice in train (first on line 2)"
    )
    assert error_of(tmp_path, "model: {cell: gru}\n", ["model={cell: gru, cell: lstm}"]) == (
        "--set model={cell: gru, cell: lstm}: key 'cell' appears twice in model"
    )


def test_a_merge_key_may_override_what_it_merges(tmp_path):
    text = "model:\n  <<: {cell: lstm, units: 8}\n  units: 16\n"
    config = load_config(write(tmp_path, text))
    assert (config.model.cell, config.model.units) == ("lstm", 16)


BILLION_LAUGHS = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]\n" for previous, name in zip("abcdefgh", "bcdefghi")
)


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            BILLION_LAUGHS,
            "exp.yaml: its aliases expand it to more than 10,000 values, the most rnnbench reads in a config (a config needs a few dozen)",
        ),
        (
            "model:\n  cell: &a [*a]\n",
            "exp.yaml: line 2: anchor &a holds an alias to itself (*a), so its value would never end",
        ),
        (
            "model: &m {cell: gru, extra: *m}\n",
            "exp.yaml: line 1: anchor &m holds an alias to itself (*m), so its value would never end",
        ),
        (
            "model: {units: " + "[" * 60 + "]" * 60 + "}\n",
            "exp.yaml: line 1: values nested more than 50 levels deep (a config needs a few)",
        ),
        (
            "".join(f"l{depth}: &l{depth} [{f'*l{depth - 1}' if depth else 1}]\n" for depth in range(60)),
            "exp.yaml: line 50: its aliases nest values more than 50 levels deep (a config needs a few)",
        ),
    ],
)
def test_documents_that_expand_without_end_are_refused_at_once(tmp_path, text, expected):
    assert len(text) < 2_000
    started = time.perf_counter()
    assert error_of(tmp_path, text) == expected
    # A guard against a hang (the old loader never finished), loose enough for a busy machine.
    assert time.perf_counter() - started < 5.0


def test_aliases_within_bounds_still_work(tmp_path):
    path = write(
        tmp_path,
        "defaults: &small {model.units: 8}\nsweep:\n  variants:\n    a: *small\n    b: {<<: *small, model.layers: 2}\n",
    )
    raw = read_mapping(path)
    assert raw["sweep"]["variants"] == {"a": {"model.units": 8}, "b": {"model.units": 8, "model.layers": 2}}


def test_set_values_with_runaway_aliases_are_refused():
    with pytest.raises(ConfigError) as caught:
        parse_override("model.cell=&a [*a]")
    assert (
        str(caught.value)
        == "--set model.cell=&a [*a]: anchor &a holds an alias to itself (*a), so its value would never end"
    )


def test_floats_in_exponent_notation_are_numbers(tmp_path):
    config = load_config(write(tmp_path, "train:\n  learning_rate: 1e-3\n"))
    assert config.train.learning_rate == 0.001
    assert config.model.layers == 1 and isinstance(config.model.layers, int)
    values = [
        parse_override(f"x={text}")[1]
        for text in ("1e-3", "1E5", ".5e-2", "-2.5e+3", "2.5e3", "3", "1_000", "1.5", "e5", "1e")
    ]
    assert values == [0.001, 100000.0, 0.005, -2500.0, 2500.0, 3, 1000, 1.5, "e5", "1e"]
    assert [type(value) for value in values[:7]] == [float] * 5 + [int] * 2
    assert (
        load_config(write(tmp_path, "model: {cell: gru}\n"), ["train.learning_rate=1E-2"]).train.learning_rate == 0.01
    )
    # Ints stay ints, so an integer key written as a float is still refused.
    assert error_of(tmp_path, "train:\n  epochs: 1e3\n") == "exp.yaml: train.epochs=1000.0 is not an integer"


def test_name_is_made_from_a_stem_that_is_not_a_valid_name(tmp_path):
    assert load_config(write(tmp_path, "model: {cell: gru}\n", "my run é.yaml")).name == "my_run_e"
    assert load_config(write(tmp_path, "model: {cell: gru}\n", "(draft) Çà & ça!.yaml")).name == "draft_Ca_ca"
    # Nothing left of the stem: refused (tests/test_bad_configs.py), not named `run`.
    with pytest.raises(ConfigError, match="no run name can be made from the file name"):
        load_config(write(tmp_path, "model: {cell: gru}\n", "日本語.yaml"))
    assert load_config(write(tmp_path, "model: {cell: gru}\n", "x" * 150 + ".yaml")).name == "x" * 100
    # A name the user wrote is validated as written.
    assert error_of(tmp_path, "name: my run\n") == (
        "exp.yaml: name='my run' may only hold letters, digits, '_', '-' and '.', starting with a letter or digit"
    )


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "train: {seeds: [1, 1]}\n",
            "exp.yaml: train.seeds=[1, 1] repeats seed 1; each seed gives one independent run",
        ),
        (
            "train: {seeds: [3, 1, 3, 2, 1]}\n",
            "exp.yaml: train.seeds=[3, 1, 3, 2, 1] repeats seeds 1, 3; each seed gives one independent run",
        ),
        (
            "train: {seeds: [1, 2147483648]}\n",
            "exp.yaml: train.seeds[1]=2147483648 is out of range (allowed: >= 0 and <= 2147483647)",
        ),
        (
            "name: " + "x" * 200 + "\n",
            "exp.yaml: name='" + "x" * 69 + "... (202 characters) is longer than 100 characters",
        ),
    ],
)
def test_seed_and_long_value_messages(tmp_path, text, expected):
    assert error_of(tmp_path, text) == expected


def test_a_file_far_larger_than_a_config_is_refused_unread(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_text("text,label\n" + "a fine film,1\n" * 100_000, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert (
        str(caught.value) == f"{path}: longer than 1,000,000 bytes, far more than a config holds (is it a data file?)"
    )
    if Path("/dev/zero").exists():
        with pytest.raises(ConfigError, match=r"^/dev/zero: longer than 1,000,000 bytes"):
            load_config("/dev/zero")


def test_unreadable_files_are_one_line(tmp_path):
    (tmp_path / "latin1.yaml").write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1.yaml: not valid UTF-8 \(byte 9\)$"):
        load_config(tmp_path / "latin1.yaml")
    with pytest.raises(ConfigError, match=r": cannot read the file \(Is a directory\)$"):
        load_config(tmp_path)


def test_fingerprints_depend_only_on_settings_that_differ_from_the_defaults():
    from rnnbench.config import config_from_mapping

    plain = config_from_mapping({"name": "probe"})
    spelled_out = config_from_mapping({"name": "probe", "model": {"cell": "gru", "units": 50}, "train": {"seed": 1}})
    assert plain.fingerprint() == spelled_out.fingerprint()
    # A record written before a key existed lacks it; read back, it is the same run as today's.
    recorded = plain.to_dict()
    del recorded["data"]["hold_out"]
    assert Config.model_validate(recorded).fingerprint() == plain.fingerprint()
    other_seed = config_from_mapping({"name": "probe", "train": {"seed": 2}})
    assert other_seed.fingerprint() != plain.fingerprint()
    assert other_seed.group_fingerprint() == plain.group_fingerprint()
    assert (
        config_from_mapping({"name": "probe", "model": {"units": 64}}).group_fingerprint() != plain.group_fingerprint()
    )


def test_a_key_added_with_a_behaviour_keeping_default_changes_no_fingerprint():
    import pydantic

    from rnnbench.config import ModelConfig

    # Tomorrow's version with one more model key, at a default that keeps today's behaviour.
    Extended = pydantic.create_model("ExtendedModelConfig", __base__=ModelConfig, future_option=(str, "off"))
    ExtendedConfig = pydantic.create_model("ExtendedConfig", __base__=Config, model=(Extended, Extended()))
    today = config_from_mapping({"name": "probe", "train": {"seed": 3}})
    tomorrow = ExtendedConfig.model_validate(today.to_dict())
    assert "future_option" in tomorrow.to_dict()["model"]
    assert tomorrow.fingerprint() == today.fingerprint()
    assert tomorrow.group_fingerprint() == today.group_fingerprint()


def test_a_config_that_is_a_sweep_point_trains_the_sweeps_runs():
    from rnnbench.sweep import expand

    for relative, (sweep_path, name) in SWEEP_POINTS.items():
        alone = expand(ROOT / "configs" / relative)
        in_sweep = [config for config in expand(ROOT / "configs" / sweep_path) if config.name == name]
        assert len(alone) == len(in_sweep) == 3
        assert [config.fingerprint() for config in alone] == [config.fingerprint() for config in in_sweep]
