"""config.TuneConfig: the `tune:` section validated by the schema, with its one-line errors, and
the shipped tuning configs read to the same settings (and study digests) as before it existed."""

from pathlib import Path

import pytest
from click.testing import CliRunner

from rnnbench import tune
from rnnbench.cli import main
from rnnbench.config import ConfigError, tune_from_mapping

CONFIGS = Path(__file__).parent.parent / "configs" / "tune"


def test_a_typo_in_the_tune_section_gets_a_did_you_mean_through_the_cli(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text(
        "sweep:\n  variants:\n    gru: {model.cell: gru}\ntune:\n  trails: 4\n  space:\n    model.units: [4, 8]\n",
        encoding="utf-8",
    )
    outcome = CliRunner().invoke(main, ["tune", str(path), "--runs-dir", str(tmp_path / "runs")])
    assert (outcome.exit_code, outcome.output) == (
        2,
        f"Error: {path}: unknown key tune.trails (allowed: pruner, random_trials, sampler, search, seeds, space,"
        " trial_seed, trials) (did you mean 'trials'?)\n",
    )
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "name, digests",
    [
        (
            "imdb_cells.yaml",
            {
                "tune_imdb-simple_rnn": "4fffe080ca0479ab",
                "tune_imdb-lstm": "0067f3a18473a080",
                "tune_imdb-gru": "1321bc584b68eea7",
            },
        ),
        (
            "chatbot_cells.yaml",
            {
                "tune_chatbot-simple_rnn": "cda796d6a562602b",
                "tune_chatbot-lstm": "9e7c1cd378ce3a28",
                "tune_chatbot-gru": "bbdf1cbfb061547d",
            },
        ),
    ],
)
def test_the_study_digests_of_the_shipped_tunings_are_those_of_the_studies_already_made(name, digests):
    # Computed by the release before the tune section's schema and before data.unlabeled existed:
    # tune.sqlite keys its studies by these, so a study under way is continued, not refused. A key
    # added to Config changes them unless tune.ADDED_AFTER_STUDIES lists it.
    settings, candidates = tune.read_plan(CONFIGS / name)
    assert {candidate.name: tune._settings_digest(candidate, settings) for candidate in candidates} == digests


@pytest.mark.parametrize("name", ["imdb_cells.yaml", "chatbot_cells.yaml"])
def test_the_shipped_tunings_read_to_the_same_settings(name):
    settings, _ = tune.read_plan(CONFIGS / name)
    assert (settings.trials, settings.pruner, settings.sampler) == (10, "median", "tpe")
    assert (settings.seeds, settings.trial_seed, settings.random_trials) == ((1, 2, 3), 0, 3)
    assert settings.space == (
        tune.Dimension("model.units", kind="int", low=16, high=128, log=True),
        tune.Dimension("model.embedding_dim", choices=(32, 64, 128)),
        tune.Dimension("train.learning_rate", kind="float", low=3.0e-4, high=1.0e-2, log=True),
        tune.Dimension("model.dropout", kind="float", low=0.0, high=0.5),
    )
    expected_search = {"data.limit": 12000, "train.epochs": 3} if name == "imdb_cells.yaml" else {}
    assert settings.search == expected_search


def test_a_range_keeps_its_ends_as_written():
    # A study's digest holds them: `{float: [0, 1]}` must not become [0.0, 1.0].
    section = {"trials": 4, "space": {"model.dropout": {"float": [0, 0.5], "step": 0.1}}, "sampler": "random"}
    [dimension] = tune.Settings.from_config(tune_from_mapping(section, "t.yaml")).space
    assert (dimension.low, type(dimension.low), dimension.high, dimension.step) == (0, int, 0.5, 0.1)
    settings = tune.Settings.from_config(tune_from_mapping(section, "t.yaml"))
    assert (settings.random_trials, settings.seeds) == (None, (1, 2, 3))


def test_seeds_count_on_from_the_trial_seed_and_random_trials_default_to_a_third():
    tuned = tune_from_mapping({"trials": 40, "space": {"model.units": [4]}, "trial_seed": 7, "seeds": 2}, "t.yaml")
    assert (tuned.final_seeds, tuned.random_start) == ((8, 9), 10)
    tuned = tune_from_mapping({"trials": 2, "space": {"model.units": [4]}, "seeds": [5, 3]}, "t.yaml")
    assert (tuned.final_seeds, tuned.random_start) == ((5, 3), 1)


SPACE = {"model.units": [4]}


@pytest.mark.parametrize(
    "section, expected",
    [
        (
            {"trials": 2, "space": {"model.units": {"integer": [1, 8]}}},
            "unknown key tune.space.model.units.integer (allowed: choices, float, int, log, step) (did you mean 'int'?)",
        ),
        (
            {"trials": 2, "space": SPACE, "pruner": "medain"},
            "tune.pruner='medain' is not one of hyperband, median, none (did you mean 'median'?)",
        ),
        ({"trials": "2", "space": SPACE}, "tune.trials='2' is not an integer"),
        ({"trials": 2, "space": {}}, "tune.space={} must hold at least 1 value"),
        ({"trials": 2, "space": SPACE, "search": [1]}, "tune.search=[1] is not a mapping"),
        ({"trials": 2, "space": {"model.units": []}}, "tune.space.model.units must list at least one choice"),
        (
            {"trials": 2, "space": {"model.units": [{"a": 1}]}},
            "tune.space.model.units: choices must be plain values (numbers, strings, booleans, null), got [{'a': 1}]",
        ),
        (
            {"trials": 2, "space": {"model.units": {"int": [1.5, 8]}}},
            "tune.space.model.units.int[0]=1.5 is not an integer",
        ),
        (
            {"trials": 2, "space": {"model.units": {"int": [1]}}},
            "tune.space.model.units.int=[1] must hold at least 2 values",
        ),
        (
            {"trials": 2, "space": {"model.dropout": {"float": [0, float("inf")]}}},
            "tune.space.model.dropout.float[1]=inf is not a finite number",
        ),
        (
            {"trials": 2, "space": {"model.units": {"int": [1, 8], "float": [1, 8]}}},
            "tune.space.model.units holds both int and float; a range is one or the other",
        ),
        (
            {"trials": 2, "space": {"model.units": {"int": [1, 8], "step": 0.5}}},
            "tune.space.model.units.step=0.5 must be a whole number > 0",
        ),
        (
            {"trials": 2, "space": {"model.units": {"int": [1, 8], "step": 2, "log": True}}},
            "tune.space.model.units: step and log can't be used together (Optuna samples one or the other)",
        ),
        ({"trials": 2, "space": SPACE, "seeds": [1]}, "tune.seeds=[1] must hold at least 2 values"),
        (
            {"trials": 2, "space": SPACE, "seeds": [1, -2]},
            "tune.seeds[1]=-2 is out of range (allowed: >= 0 and <= 2147483647)",
        ),
        (
            {"trials": 2, "space": SPACE, "seeds": [1, 1]},
            "tune.seeds=[1, 1] repeats a seed; each seed gives one independent run",
        ),
        (
            {"trials": 2, "space": SPACE, "random_trials": 3},
            "tune.random_trials=3 is out of range (allowed: >= 1 and <= tune.trials, 2)",
        ),
        (
            {"trials": 2, "space": SPACE, "trial_seed": -1},
            "tune.trial_seed=-1 is out of range (allowed: >= 0 and <= 2147483547)",
        ),
        (
            None,
            "tune must be a mapping with keys pruner, random_trials, sampler, search, seeds, space, trial_seed, trials, got null",
        ),
    ],
)
def test_a_tune_section_mistake_is_one_line(section, expected):
    with pytest.raises(ConfigError) as raised:
        tune_from_mapping(section, "t.yaml")
    assert str(raised.value) == f"t.yaml: {expected}"


def test_set_reaches_dotted_keys_under_space_and_search_and_is_validated_as_the_file_is():
    section = {"trials": 2, "space": SPACE, "search": None}
    tuned = tune_from_mapping(section, "t.yaml", ["tune.search.data.limit=500", "tune.space.model.units={int: [2, 8]}"])
    assert tuned.search == {"data.limit": 500} and tuned.space["model.units"].int_range == [2, 8]
    with pytest.raises(ConfigError) as raised:
        tune_from_mapping(section, "t.yaml", ["tune.sampler=grd"])
    assert str(raised.value) == "--set tune.sampler=grd: tune.sampler='grd' is not one of random, tpe"
