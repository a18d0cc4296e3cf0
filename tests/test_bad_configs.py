"""The bad-config corpus and property-based tests: a user mistake always gets one line, never a traceback."""

from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rnnbench.cli import main
from rnnbench.config import Config, ConfigError, TuneConfig, config_from_mapping, tune_from_mapping

CORPUS = sorted((Path(__file__).parent / "bad_configs").glob("*.yaml"))
# Mistakes in a tuning config's tune: section, which `rnnbench tune` reads (run and summary refuse
# any file with a tune section).
TUNE_CORPUS = sorted((Path(__file__).parent / "bad_configs" / "tune").glob("*.yaml"))


def expectation(path: Path) -> str:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# expect: "), f"{path} must open with '# expect: <error>'"
    return first.removeprefix("# expect: ")


def test_the_corpus_is_large():
    assert len(CORPUS) >= 30


@pytest.mark.parametrize("path", CORPUS, ids=[path.stem for path in CORPUS])
def test_bad_config_fails_with_its_one_line_error(path, tmp_path):
    for command in (["run", str(path), "--runs-dir", str(tmp_path / "runs")], ["summary", str(path)]):
        outcome = CliRunner().invoke(main, command)
        assert outcome.exit_code == 2, outcome.output
        assert outcome.output == f"Error: {path}: {expectation(path)}\n"
        assert outcome.exception is None or isinstance(outcome.exception, SystemExit)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("path", TUNE_CORPUS, ids=[path.stem for path in TUNE_CORPUS])
def test_bad_tune_section_fails_with_its_one_line_error(path, tmp_path):
    outcome = CliRunner().invoke(main, ["tune", str(path), "--runs-dir", str(tmp_path / "runs")])
    assert outcome.exit_code == 2, outcome.output
    assert outcome.output == f"Error: {path}: {expectation(path)}\n"
    assert outcome.exception is None or isinstance(outcome.exception, SystemExit)
    assert not (tmp_path / "runs").exists()


def test_the_tune_corpus_has_a_case_per_kind_of_mistake():
    assert len(TUNE_CORPUS) >= 10


SECTIONS = {
    name: list(field.annotation.model_fields)
    for name, field in Config.model_fields.items()
    if hasattr(field.annotation, "model_fields")
}
KEYS = st.sampled_from(
    [f"{section}.{key}" for section, keys in SECTIONS.items() for key in keys]
    + ["name", "backend", "model.typo", "junk", "data.files.train"]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-10, 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["gru", "lstm", "test", "files", "imdb", "pre", "adam", "glove-6b-50d", "word"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=5,
)


def nested(pairs: dict) -> dict:
    raw: dict = {}
    for dotted, value in pairs.items():
        node = raw
        parts = dotted.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                break
            node = child
        else:
            node[parts[-1]] = value
    return raw


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(KEYS, VALUES, max_size=6))
def test_any_mapping_is_accepted_or_refused_in_one_line(pairs):
    try:
        config = config_from_mapping(nested(pairs), source="generated.yaml")
    except ConfigError as error:
        message = str(error)
        assert message.startswith("generated.yaml: ") and "\n" not in message and len(message) < 600
    else:
        assert isinstance(config, Config)


TUNE_KEYS = st.sampled_from(
    [*TuneConfig.model_fields, "space.model.units", "space.train.learning_rate", "search.data.limit", "trails"]
)
DIMENSIONS = st.one_of(
    VALUES,
    st.fixed_dictionaries(
        {},
        optional={
            "int": st.lists(SCALARS, max_size=3),
            "float": st.lists(SCALARS, max_size=3),
            "log": SCALARS,
            "step": SCALARS,
            "choices": VALUES,
        },
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(TUNE_KEYS, st.one_of(VALUES, DIMENSIONS), max_size=6))
def test_any_tune_section_is_accepted_or_refused_in_one_line(pairs):
    section: dict = {}
    for key, value in pairs.items():
        head, _, rest = key.partition(".")
        if rest and isinstance(section.setdefault(head, {}), dict):
            section[head][rest] = value
        else:
            section[key] = value
    try:
        tune_from_mapping(section, "generated.yaml")
    except ConfigError as error:
        message = str(error)
        assert message.startswith("generated.yaml: ") and "\n" not in message and len(message) < 600


OVERRIDES = st.lists(
    st.builds(lambda key, text: f"{key}={text}", KEYS, st.text(max_size=10)) | st.text(max_size=15), max_size=3
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(OVERRIDES)
def test_any_set_arguments_get_an_answer_not_a_traceback(tmp_path, overrides):
    config = tmp_path / "plain.yaml"
    config.write_text("model: {cell: gru}\n", encoding="utf-8")
    arguments = ["summary", str(config)]
    for override in overrides:
        arguments += ["--set", override]
    outcome = CliRunner().invoke(main, arguments)
    if outcome.exit_code == 0:
        assert "Total params:" in outcome.output
    else:
        assert outcome.exit_code in (1, 2), outcome.output
        assert isinstance(outcome.exception, SystemExit), repr(outcome.exception)
        assert outcome.output.startswith("Error: ") and outcome.output.count("\n") == 1


def test_line_breaks_in_keys_and_arguments_stay_on_one_line():
    with pytest.raises(ConfigError) as caught:
        config_from_mapping({"model": {"a\nb": 1}}, source="x.yaml")
    assert str(caught.value).startswith("x.yaml: unknown key 'model.a\\nb' (allowed: ")
    outcome = CliRunner().invoke(
        main, ["summary", str(Path(__file__).parent.parent / "configs" / "gru.yaml"), "--set", "\n"]
    )
    assert (
        outcome.exit_code == 2
        and outcome.output == "Error: --set '\\n': expected KEY=VALUE, e.g. --set model.layers=2\n"
    )


@pytest.mark.parametrize("override", [".=1", "model..cell=gru", ".model=1", "model.=1", "model. .cell=gru"])
def test_a_set_key_with_an_empty_part_is_named_as_written(override):
    outcome = CliRunner().invoke(
        main, ["summary", str(Path(__file__).parent.parent / "configs" / "gru.yaml"), "--set", override]
    )
    key = override.rpartition("=")[0]
    assert (outcome.exit_code, outcome.output) == (
        2,
        f"Error: --set {override}: the key {key!r} has an empty part; a key is names joined by dots, e.g. --set model.layers=2\n",
    )


@pytest.mark.parametrize("stem", ["😀", "שלום", "日本語", "---"])
def test_a_file_name_that_gives_no_run_name_is_refused(tmp_path, stem):
    # Each would have been named `run`, so their runs would have counted as one config.
    path = tmp_path / f"{stem}.yaml"
    path.write_text("model: {cell: gru}\n", encoding="utf-8")
    for command in (["run", str(path), "--runs-dir", str(tmp_path / "runs")], ["summary", str(path)]):
        outcome = CliRunner().invoke(main, command)
        assert (outcome.exit_code, outcome.output) == (
            2,
            f"Error: {path}: no run name can be made from the file name (it has no ASCII letter or digit); give the config one, e.g. name: my_run\n",
        )
    assert not (tmp_path / "runs").exists()
    # With a name written in it, the same file runs.
    path.write_text("name: greeting\nmodel: {cell: gru}\n", encoding="utf-8")
    assert CliRunner().invoke(main, ["summary", str(path)]).exit_code == 0
