"""`rnnbench tune`: the tune section's errors, the equal budget of epochs, pruning (never after a
trial's last epoch), resume after SIGKILL, two processes sharing one study, a silent owner, and
the report's expected-best curves."""

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner

from rnnbench import expected_max, results, tune
from rnnbench.cli import main
from rnnbench.config import ConfigError, tune_from_mapping
from rnnbench.record import RunRecord

TINY = {
    "name": "tiny",
    "data": {"num_words": 100, "maxlen": 24},
    "model": {"embedding_dim": 8, "units": 4, "dense_units": 4},
    "train": {"epochs": 2, "batch_size": 32},
    "sweep": {"variants": {"gru": {"model.cell": "gru"}, "ann": {"model.cell": "ann"}}},
    "tune": {
        "trials": 3,
        "space": {"model.embedding_dim": [4, 8], "train.learning_rate": {"float": [1.0e-3, 2.0e-2], "log": True}},
        "search": {"data.limit": 300},
        "seeds": 2,
    },
}


def write_config(tmp_path: Path, settings: dict, name: str = "tiny.yaml") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(settings))
    return path


def with_tune(**changes) -> dict:
    settings = json.loads(json.dumps(TINY))
    settings["tune"].update(changes)
    return settings


def trials_of(storage: str, study_name: str) -> list:
    return optuna.load_study(study_name=study_name, storage=storage).get_trials()


def counted(trials: list) -> list:
    return [trial for trial in trials if trial.state.name in ("COMPLETE", "PRUNED")]


@pytest.mark.parametrize(
    "tune_section, expected",
    [
        (
            {"trials": 0, "space": {"model.units": [4]}},
            "tune.trials=0 is out of range (allowed: >= 1 and <= 1000)",
        ),
        (
            {"trials": 2, "space": {"model.units": [4]}, "budget": 3},
            "unknown key tune.budget (allowed: pruner, random_trials, sampler, search, seeds, space, trial_seed, trials)",
        ),
        (
            {"trials": 2},
            "tune.space is required: dotted keys mapped to choices or ranges, e.g. model.units: {int: [16, 256], log: true}",
        ),
        (
            {"trials": 2, "space": {"model.units": {"int": [16, 8]}}},
            "tune.space.model.units.int=[16, 8] needs low < high",
        ),
        (
            {"trials": 2, "space": {"model.units": {"int": [0, 8], "log": True}}},
            "tune.space.model.units: a log range needs low > 0, got 0",
        ),
        (
            {"trials": 2, "space": {"model.units": {"range": [1, 8]}}},
            "unknown key tune.space.model.units.range (allowed: choices, float, int, log, step)",
        ),
        (
            {"trials": 2, "space": {"model.units": 8}},
            "tune.space.model.units must be a list of choices, or {int: [low, high]} or {float: [low, high]} with optional log: true and step, got 8",
        ),
        ({"trials": 2, "space": {"model.units": [4, 4]}}, "tune.space.model.units repeats a choice: [4, 4]"),
        (
            {"trials": 2, "space": {"train.seed": [1, 2]}},
            "tune.space.train.seed: train.seed can't be searched (the tuning protocol sets name, backend, train.seed, train.seeds)",
        ),
        (
            {"trials": 2, "space": {"model.units": [4]}, "pruner": "sometimes"},
            "tune.pruner='sometimes' is not one of hyperband, median, none",
        ),
        (
            {"trials": 2, "space": {"model.units": [4]}, "seeds": 1},
            "tune.seeds=1 is out of range (allowed: >= 2 and <= 100)",
        ),
        (
            {"trials": 2, "space": {"model.units": [4]}, "seeds": [0, 1]},
            "tune.seeds=[0, 1] holds the trial seed 0; the final runs need fresh seeds, not the one the search chose on",
        ),
        (
            {"trials": 2, "space": {"model.units": [4]}, "search": {"model.units": 8}},
            "tune.search.model.units is also in tune.space; a key is either searched or fixed for the search",
        ),
        # The search may not set what the protocol sets either: every trial would share it.
        (
            {"trials": 2, "space": {"model.units": [4]}, "search": {"train.seed": 1}},
            "tune.search.train.seed can't be set: every trial trains with tune.trial_seed; set that instead",
        ),
        (
            {"trials": 2, "space": {"model.units": [4]}, "search": {"train.seeds": [7, 8]}},
            "tune.search.train.seeds can't be set: every trial trains with tune.trial_seed, and the winners with tune.seeds; set those instead",
        ),
        (
            {"trials": 2, "space": {"model.units": [4]}, "search": {"name": "x"}},
            "tune.search.name can't be set: trials are named <candidate>-tNNN so that each is a run of its own; one name for all would make one run count as several trials",
        ),
        (
            {"trials": 2, "space": {"train.epochs": [1, 2]}},
            "tune.space.train.epochs: train.epochs can't be searched: the budget is tune.trials x the trials' train.epochs (set it in tune.search)",
        ),
        (
            {"trials": 2, "space": {"model.units": [4]}, "sampler": "grid"},
            "tune.sampler='grid' is not one of random, tpe",
        ),
        (
            {"trials": 2, "space": {"model.units": [4]}, "sampler": "random", "random_trials": 1},
            "tune.random_trials is read only with sampler: tpe; with sampler: random every trial is random",
        ),
    ],
)
def test_tune_section_errors_are_one_line(tmp_path, tune_section, expected):
    path = write_config(tmp_path, {**TINY, "tune": tune_section})
    outcome = CliRunner().invoke(main, ["tune", str(path), "--runs-dir", str(tmp_path / "runs")])
    assert outcome.exit_code == 2, outcome.output
    assert outcome.output == f"Error: {path}: {expected}\n"
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "space, expected",
    [
        # Keys and values are validated against the config, as --set would be, before anything trains.
        (
            {"model.unitz": [4, 8]},
            "tune.space.model.unitz=4: unknown key model.unitz (allowed: bidirectional, cell, conv_filters, conv_widths, dense_units, dropout,"
            " embedding_dim, embedding_dropout, embedding_trainable, layers, lm_epochs, mask_padding, ngram_weighting, ngrams,"
            " pooling, pretrained_embedding, pretrained_encoder, recurrent_dropout, recurrent_input_dropout, units) (did you mean 'units'?)",
        ),
        (
            {"model.dropout": {"float": [0.0, 1.5]}},
            "tune.space.model.dropout=1.5: model.dropout=1.5 is out of range (allowed: >= 0.0 and < 1.0)",
        ),
    ],
)
def test_a_space_the_config_refuses_is_refused_before_training(tmp_path, space, expected):
    path = write_config(tmp_path, with_tune(space=space))
    with pytest.raises(ConfigError) as raised:
        tune.read_plan(path)
    assert str(raised.value) == f"{path}: {expected}"


def test_run_and_tune_point_at_each_other(tmp_path):
    tuned = write_config(tmp_path, TINY)
    outcome = CliRunner().invoke(main, ["run", str(tuned)])
    assert (
        outcome.exit_code == 2
        and outcome.output == f"Error: {tuned}: has a tune section; tune it with: rnnbench tune {tuned}\n"
    )
    plain = write_config(tmp_path, {"name": "plain"}, "plain.yaml")
    outcome = CliRunner().invoke(main, ["tune", str(plain)])
    assert outcome.exit_code == 2
    assert (
        outcome.output
        == f"Error: {plain}: has no tune section; `rnnbench tune` needs one (see configs/tune/), or train it with: rnnbench run {plain}\n"
    )


def test_seeds_and_search_settings(tmp_path):
    settings, candidates = tune.read_plan(write_config(tmp_path, with_tune(seeds=3, trial_seed=7)))
    assert settings.seeds == (8, 9, 10)
    assert (settings.trial_epochs, settings.budget) == (2, 6)  # 3 trials of train.epochs 2
    assert [candidate.name for candidate in candidates] == ["tiny-gru", "tiny-ann"]
    assert all(candidate.config.train.seed == 7 and candidate.config.train.seeds is None for candidate in candidates)
    trial = tune.trial_config(candidates[0], settings, {"model.embedding_dim": 4}, 12)
    assert (trial.name, trial.data.limit, trial.model.embedding_dim, trial.train.seed) == ("tiny-gru-t012", 300, 4, 7)
    finals = tune.final_configs(candidates[0], settings, {"model.embedding_dim": 4})
    assert [(config.name, config.train.seed, config.data.limit, config.model.embedding_dim) for config in finals] == [
        ("tiny-gru-tuned", seed, None, 4) for seed in (8, 9, 10)
    ]
    # The budget's last trial trains only the epochs left.
    assert tune.trial_config(candidates[0], settings, {}, 3, epochs=1).train.epochs == 1
    searched = tune.read_plan(write_config(tmp_path, with_tune(search={"train.epochs": 3})))[0]
    assert (searched.trial_epochs, searched.budget) == (3, 9)


def refused(tmp_path, settings: dict) -> tuple[Path, object]:
    path = write_config(tmp_path, settings)
    return path, CliRunner().invoke(main, ["tune", str(path), "--runs-dir", str(tmp_path / "runs")])


def test_a_tuning_that_would_choose_on_the_test_split_is_refused_in_one_line(tmp_path):
    on_test = (
        "='test' would choose the tuning's winners on the test split; hold validation out of the training rows instead"
        " (data.validation: a fraction such as 0.2, or a data.files.validation file)"
    )
    path, outcome = refused(tmp_path, {**TINY, "data": {**TINY["data"], "validation": "test"}})
    assert (outcome.exit_code, outcome.output) == (2, f"Error: {path}: data.validation{on_test}\n")
    path, outcome = refused(tmp_path, with_tune(search={"data.limit": 300, "data.validation": "test"}))
    assert (outcome.exit_code, outcome.output) == (2, f"Error: {path}: tune.search.data.validation{on_test}\n")
    assert not (tmp_path / "runs").exists()


def test_rows_held_out_beside_rows_of_their_group_are_refused_too(tmp_path):
    # IMDB's reviews are grouped by film: a random split puts a film's reviews on both sides.
    path, outcome = refused(tmp_path, {**TINY, "data": {**TINY["data"], "hold_out": "rows"}})
    assert outcome.exit_code == 2
    assert outcome.output == (
        f"Error: {path}: data.hold_out='rows' would choose the tuning's winners on validation rows whose films also have rows"
        " in training, which rewards memorising them as the test split never does; tune with data.hold_out: groups\n"
    )
    files = {
        **TINY,
        "data": {**TINY["data"], "dataset": "files", "files": {"train": "reviews.tsv", "group_column": "author"}},
        "tune": {**TINY["tune"], "search": {"data.hold_out": "rows"}},
    }
    path, outcome = refused(tmp_path, files)
    assert (outcome.exit_code, outcome.output) == (
        2,
        (
            f"Error: {path}: tune.search.data.hold_out='rows' would choose the tuning's winners on validation rows whose groups"
            " (author) also have rows in training, which rewards memorising them as the test split never does; tune with data.hold_out: groups\n"
        ),
    )
    # Without groups, rows are all there is to hold out.
    plain = {**files, "data": {**files["data"], "files": {"train": "reviews.tsv"}}}
    assert tune.read_plan(write_config(tmp_path, plain))[0].search == {"data.hold_out": "rows"}
    assert not (tmp_path / "runs").exists()


def test_candidates_whose_trials_train_different_epochs_are_refused(tmp_path):
    settings = {**TINY, "sweep": {"variants": {"short": {"train.epochs": 1}, "long": {"train.epochs": 3}}}}
    path, outcome = refused(tmp_path, settings)
    assert (outcome.exit_code, outcome.output) == (
        2,
        (
            f"Error: {path}: the candidates' trials would train different epochs (tiny-short 1, tiny-long 3), and the budget,"
            " tune.trials x epochs, must be the same for every candidate; set tune.search.train.epochs\n"
        ),
    )
    settings["tune"] = {**TINY["tune"], "search": {"train.epochs": 2}}
    assert tune.read_plan(write_config(tmp_path, settings))[0].budget == 6


def test_a_storage_path_that_is_a_folder_is_one_line(tmp_path):
    path = write_config(tmp_path, TINY)
    (tmp_path / "runs" / "tune.sqlite").mkdir(parents=True)
    outcome = CliRunner().invoke(main, ["tune", str(path), "--runs-dir", str(tmp_path / "runs")])
    assert outcome.exit_code == 2
    assert outcome.output == (
        f"Error: {(tmp_path / 'runs' / 'tune.sqlite').resolve()}: is a folder, not a study storage (an SQLite file);"
        " move it away, or give --storage another file\n"
    )


def test_a_study_made_when_the_budget_counted_trials_is_refused(tmp_path):
    settings, candidates = tune.read_plan(write_config(tmp_path, TINY))
    storage = f"sqlite:///{tmp_path / 'old.sqlite'}"
    old = optuna.create_study(study_name="tiny-gru", storage=storage, direction="maximize")
    old.set_user_attr(tune.SETTINGS, "digest of the old rule")
    with pytest.raises(tune.TuneError) as raised:
        tune.open_studies(candidates, settings, storage)
    assert str(raised.value) == (
        f"{storage}: study tiny-gru was tuned when the budget counted trials, not epochs (a pruned trial counted as a whole"
        " one), so its epochs can't be made equal to another candidate's; give the config another name, or use another --storage"
    )


class PruneSecondTrial(optuna.pruners.BasePruner):
    """Prunes trial 1 of every study after its first epoch, and nothing else."""

    def prune(self, study, trial) -> bool:
        return trial.number == 1


class PruneSome(optuna.pruners.BasePruner):
    """Prunes trial 1 of tiny-gru, and trials 1 and 2 of tiny-ann, whenever it is asked."""

    def prune(self, study, trial) -> bool:
        return (study.study_name, trial.number) in {("tiny-gru", 1), ("tiny-ann", 1), ("tiny-ann", 2)}


def trained_epochs(runs: Path, record: dict) -> int:
    return len((runs / record.run_id / "history.jsonl").read_text().splitlines())


@pytest.mark.slow
def test_every_candidate_trains_the_same_epochs_and_pruned_epochs_fund_more_trials(
    tiny_data_dir, tmp_path, monkeypatch
):
    monkeypatch.setattr(tune, "_pruner", lambda settings: PruneSome())
    path = write_config(tmp_path, TINY)
    runs = tmp_path / "runs"
    outcome = CliRunner().invoke(
        main,
        [
            "tune",
            str(path),
            "--data-dir",
            str(tiny_data_dir),
            "--runs-dir",
            str(runs),
            "--out",
            str(tmp_path / "report"),
        ],
    )
    assert outcome.exit_code == 0, outcome.output
    assert "6 epochs each (3 trials of 2; a pruned trial's unused epochs fund more trials)" in outcome.output
    storage = tune.default_storage(runs)
    records = results.read_records(runs, statuses=None)
    by_name = {record.name: record for record in records}
    # gru: 2 + 1 (pruned) + 2, then the budget's last epoch; ann: 2 + 1 + 1 (both pruned) + 2.
    for candidate, states, spent in (
        ("tiny-gru", ["COMPLETE", "PRUNED", "COMPLETE", "COMPLETE"], [2, 1, 2, 1]),
        ("tiny-ann", ["COMPLETE", "PRUNED", "PRUNED", "COMPLETE"], [2, 1, 1, 2]),
    ):
        trials = trials_of(storage, candidate)
        assert [trial.state.name for trial in trials] == states
        assert [trial.user_attrs[tune.SPENT] for trial in trials] == spent
        # What the runs trained, read from their histories, is what the study counted: the budget, exactly.
        assert [trained_epochs(runs, by_name[f"{candidate}-t00{number}"]) for number in range(4)] == spent
        assert sum(spent) == 6
        pruned = states.count("PRUNED")
        assert f"[{candidate}] 6 epochs in 4 trials, {pruned} pruned; best: t00" in outcome.output
        assert f"[{candidate}] trial 2: pruned after epoch 1: val_accuracy" in outcome.output
    assert "; 1 epoch, the budget's last (a full trial trains 2)" in outcome.output
    assert "[tiny-gru] trial 4: " in outcome.output and "; 6 of 6 epochs spent" in outcome.output
    assert by_name["tiny-gru-t003"].config["train"]["epochs"] == 1 and by_name["tiny-gru-t003"].status == "completed"
    # Every trial is an ordinary run; a pruned one is recorded as pruned, with its one epoch.
    assert by_name["tiny-gru-t001"].status == "pruned" and by_name["tiny-gru-t001"].result.to_json() == {
        "epochs_run": 1
    }
    assert not (runs / by_name["tiny-gru-t001"].run_id / results.CHECKPOINT_FILE).exists()
    assert by_name["tiny-gru-t000"].config["data"]["limit"] == 300
    finals = [record for record in records if record.name.endswith("-tuned")]
    assert sorted((record.name, record.config["train"]["seed"]) for record in finals) == [
        ("tiny-ann-tuned", 1),
        ("tiny-ann-tuned", 2),
        ("tiny-gru-tuned", 1),
        ("tiny-gru-tuned", 2),
    ]
    assert all(record.config["data"]["limit"] is None for record in finals)
    # The winner's settings are the best completed trial's (the budget's shortened last trial may win too).
    best = max(counted(trials_of(storage, "tiny-gru")), key=lambda trial: (trial.value or -1, -trial.number))
    gru_final = next(record for record in finals if record.name == "tiny-gru-tuned")
    assert gru_final.config["model"]["embedding_dim"] == best.params["model.embedding_dim"]
    assert gru_final.config["train"]["learning_rate"] == best.params["train.learning_rate"]
    assert "Verdict" in outcome.output  # The winners' comparison (verdict.py says how).
    tuning = (tmp_path / "report" / "tuning.md").read_text()
    assert (
        "## tiny-gru" in tuning
        and "6 epochs in 4 trials, 1 pruned. Best:" in tuning
        and "6 epochs in 4 trials, 2 pruned. Best:" in tuning
    )
    assert "| t001 | tpe | pruned | (" in tuning and "| t003 | tpe | completed (the budget's last 1) |" in tuning
    assert (tmp_path / "report" / "tune_history_tiny-gru.png").stat().st_size > 1000
    # TPE's random start is trial 0 alone (random_trials defaults to a third of the trials).
    assert "- tiny-gru: 1 of 1 random trials (none left out); expected best " in tuning
    assert (tmp_path / "report" / "tune_expected_max.png").stat().st_size > 1000

    # Again: the budget is used up, nothing trains, the same winners are reported.
    again = CliRunner().invoke(
        main,
        [
            "tune",
            str(path),
            "--data-dir",
            str(tiny_data_dir),
            "--runs-dir",
            str(runs),
            "--out",
            str(tmp_path / "report"),
        ],
    )
    assert again.exit_code == 0, again.output
    assert "] trial " not in again.output and "already completed" in again.output
    assert len(results.read_records(runs, statuses=None)) == len(records)

    # A changed search is refused rather than mixed into the old study.
    changed = write_config(tmp_path, with_tune(search={"data.limit": 200}))
    refused = CliRunner().invoke(
        main, ["tune", str(changed), "--data-dir", str(tiny_data_dir), "--runs-dir", str(runs)]
    )
    assert refused.exit_code == 1
    assert refused.output == (
        f"Error: {storage}: study tiny-gru was tuned with other settings (config, space, search, pruner or trial seed);"
        " keep them, or give the config another name, or use another --storage\n"
    )


class PruneEverything(optuna.pruners.BasePruner):
    def prune(self, study, trial) -> bool:
        return True


def test_the_pruner_is_never_asked_after_a_trials_last_epoch(tmp_path):
    study = optuna.create_study(direction="maximize", pruner=PruneEverything())

    def watched(epochs: int, patience=None) -> tune.TrialObserver:
        observer = tune.TrialObserver(study.ask())
        train = {"epochs": epochs, "early_stopping_patience": patience}
        observer.opened(tmp_path, RunRecord(name="trial", config={"train": train}), [])
        return observer

    def epoch(number: int, accuracy: float = 0.8) -> dict:
        return {"epoch": number, "loss": 0.5, "val_loss": 0.5, "val_accuracy": accuracy}

    with pytest.raises(tune.Pruned):
        watched(2).epoch_ended(epoch(1), [epoch(1)])  # Not its last: judged, and pruned.
    last = watched(2)
    last.epoch_ended(epoch(2), [epoch(1), epoch(2)])  # Its last: reported, not judged.
    assert (last.pruned_at, last.trial.storage.get_trial(last.trial._trial_id).intermediate_values) == (None, {2: 0.8})
    # The last epoch by early stopping too: the best epoch is `patience` epochs old.
    early = watched(5, patience=1)
    history = [epoch(1, 0.8), epoch(2, 0.7)]
    early.epoch_ended(history[-1], history)
    assert early.pruned_at is None
    # A resumed trial whose run had trained its last epoch is not judged on opening either.
    resumed = tune.TrialObserver(study.ask())
    resumed.opened(tmp_path, RunRecord(name="trial", config={"train": {"epochs": 2}}), [epoch(1), epoch(2)])
    assert resumed.pruned_at is None


def test_a_trial_asked_past_the_budget_is_dropped(tmp_path, monkeypatch):
    """Processes on other machines can count and ask at the same moment as this one: a trial
    that turns out to be past the budget once asked is dropped, not counted."""
    settings, candidates = tune.read_plan(write_config(tmp_path, with_tune(trials=2)))
    runs = tmp_path / "runs"
    runs.mkdir()
    tune.open_studies(candidates, settings, tune.default_storage(runs))
    study = candidates[0].study
    elsewhere = study.ask()
    elsewhere.set_user_attr(tune.OWNER, {"host": "elsewhere", "pid": 1})
    asking = study.ask

    def another_machine_asks_first(distributions):
        asking().set_user_attr(tune.OWNER, {"host": "elsewhere", "pid": 2})
        return asking(distributions)

    monkeypatch.setattr(study, "ask", another_machine_asks_first)
    # Until their askers write how many epochs they were given, the other machine's trials hold a full trial's.
    assert tune.next_trial(candidates[0], settings, runs) is None
    trials = study.get_trials()
    assert [trial.state.name for trial in trials] == ["RUNNING", "RUNNING", "FAIL"]
    assert trials[2].user_attrs[tune.OVER_BUDGET] is True
    monkeypatch.setattr(study, "ask", asking)
    assert (
        tune.next_trial(candidates[0], settings, runs) is None
    )  # The two running ones hold the budget (2 x 2 epochs).
    study.tell(trials[0].number, state=optuna.trial.TrialState.FAIL)  # One fails: room for one more.
    trial, taken_over = tune.next_trial(candidates[0], settings, runs)
    assert (trial.number, taken_over, trial.user_attrs[tune.ALLOTTED]) == (3, None, 2)
    assert trial.user_attrs[tune.OWNER] == results.this_process()
    # One that ends pruned after 1 epoch leaves 1 to fund a last, shorter trial.
    study._storage.set_trial_user_attr(trials[1]._trial_id, tune.SPENT, 1)
    study.tell(trials[1].number, state=optuna.trial.TrialState.PRUNED)
    last, _ = tune.next_trial(candidates[0], settings, runs)
    assert (last.number, last.user_attrs[tune.ALLOTTED]) == (4, 1)
    assert tune.next_trial(candidates[0], settings, runs) is None


@pytest.fixture
def another_process():
    """A live process that is not rnnbench: the pid a dead trial owner's may be given next."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield process
    process.kill()
    process.wait()


def test_a_trial_whose_owner_is_silent_is_taken_over_though_its_pid_lives(tmp_path, monkeypatch, another_process):
    clock = [1_000_000.0]
    monkeypatch.setattr(tune, "_now", lambda: clock[0])
    settings, candidates = tune.read_plan(write_config(tmp_path, TINY))
    runs = tmp_path / "runs"
    runs.mkdir()
    tune.open_studies(candidates, settings, tune.default_storage(runs))
    trial, _ = tune.next_trial(candidates[0], settings, runs)
    trial.set_user_attr(tune.OWNER, {"pid": another_process.pid, "host": os.uname().nodename})
    clock[0] += tune.SILENT_SECONDS  # Silent for exactly the limit: still its owner's.
    second, _ = tune.next_trial(candidates[0], settings, runs)
    assert second.number == 1
    clock[0] += 1
    taken, why = tune.next_trial(candidates[0], settings, runs)
    assert taken.number == 0
    assert why == f"pid {another_process.pid} on {os.uname().nodename} has not been heard of for 601 s; finishing it"
    assert taken.user_attrs[tune.OWNER] == results.this_process() and taken.user_attrs[tune.HEARTBEAT] == clock[0]


@pytest.mark.slow
def test_a_process_waiting_for_a_trial_names_it_and_takes_it_over_once_silent(
    tiny_data_dir, tmp_path, monkeypatch, another_process
):
    clock = [1_000_000.0]
    monkeypatch.setattr(tune, "_now", lambda: clock[0])
    # Each look at the waited-for trial moves the clock on by a minute.
    monkeypatch.setattr(tune, "_pause", lambda seconds: clock.__setitem__(0, clock[0] + 60))
    config = {**TINY, "train": {"epochs": 1, "batch_size": 32}, "sweep": {"variants": {"gru": {"model.cell": "gru"}}}}
    path = write_config(tmp_path, {**config, "tune": {**TINY["tune"], "trials": 1, "pruner": "none"}})
    runs = tmp_path / "runs"
    runs.mkdir()
    settings, candidates = tune.read_plan(path)
    tune.open_studies(candidates, settings, tune.default_storage(runs))
    # A trial whose owner died, its pid since given to another process, last heard of 30 s ago.
    trial, _ = tune.next_trial(candidates[0], settings, runs)
    trial.set_user_attr(tune.OWNER, {"pid": another_process.pid, "host": os.uname().nodename})
    trial.set_user_attr(tune.HEARTBEAT, clock[0] - 30)
    outcome = CliRunner().invoke(
        main,
        [
            "tune",
            str(path),
            "--data-dir",
            str(tiny_data_dir),
            "--runs-dir",
            str(runs),
            "--out",
            str(tmp_path / "report"),
        ],
    )
    assert outcome.exit_code == 0, outcome.output
    owner = f"pid {another_process.pid} on {os.uname().nodename}"
    waiting = [line for line in outcome.output.splitlines() if line.startswith("waiting for")]
    assert waiting[0] == (
        f"waiting for tiny-gru-t000, which {owner} trains: last heard of 30 s ago, waited for 0 s; it is taken over here"
        " once it is silent for 600 s, or at once when its process stops (Ctrl-C there releases it)"
    )
    # Said again each minute while it waits, with how long it has waited.
    assert waiting[1].startswith(
        f"waiting for tiny-gru-t000, which {owner} trains: last heard of 90 s ago, waited for 60 s;"
    )
    assert len(waiting) == 10
    [taken_over] = [line for line in outcome.output.splitlines() if line.startswith("[tiny-gru] trial 1: model.")]
    assert taken_over.endswith(f"; 1 epoch ({owner} has not been heard of for 630 s; finishing it)")
    assert [state.state.name for state in trials_of(tune.default_storage(runs), "tiny-gru")] == ["COMPLETE"]


@pytest.mark.slow
def test_the_owner_beats_for_its_trials_while_they_train(tmp_path, monkeypatch):
    monkeypatch.setattr(tune, "_now", lambda: 42.0)
    monkeypatch.setattr(tune, "HEARTBEAT_SECONDS", 0.01)
    settings, candidates = tune.read_plan(write_config(tmp_path, TINY))
    runs = tmp_path / "runs"
    runs.mkdir()
    tune.open_studies(candidates, settings, tune.default_storage(runs))
    trial, _ = tune.next_trial(candidates[0], settings, runs)
    trial.set_user_attr(tune.HEARTBEAT, 0.0)
    with tune._beating({1: (candidates[0], trial)}):
        deadline = time.monotonic() + 10
        while trials_of(tune.default_storage(runs), "tiny-gru")[0].user_attrs[tune.HEARTBEAT] != 42.0:
            assert time.monotonic() < deadline, "no heartbeat written"
            time.sleep(0.01)


# Subprocess cases: bigger data and small batches, so that an epoch lasts long enough to be killed in.
SLOW = {
    **TINY,
    "data": {"num_words": 100, "maxlen": 24},
    "train": {"epochs": 3, "batch_size": 4},
    "tune": {**TINY["tune"], "search": {}, "trials": 3, "pruner": "none"},
}


def _environment(data_dir: Path, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "RNNBENCH_DATA_DIR": str(data_dir),
        "RNNBENCH_CACHE_DIR": str(tmp_path / "cache"),
        "KERAS_BACKEND": "jax",
    }


def _tune(config: Path, runs: Path, environment: dict[str, str], *arguments: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rnnbench",
            "tune",
            str(config),
            "--runs-dir",
            str(runs),
            "--out",
            str(runs.parent / f"report-{runs.name}"),
            *arguments,
        ],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(process: subprocess.Popen, deadline: float = 600) -> str:
    output, _ = process.communicate(timeout=deadline)
    assert process.returncode == 0, output
    return output


def _outcome(storage: str, study_name: str) -> list[tuple]:
    return [(trial.number, trial.state.name, trial.params, trial.value) for trial in trials_of(storage, study_name)]


def _finals(runs: Path) -> list[tuple]:
    return sorted(
        (
            record.name,
            record.config["train"]["seed"],
            record.result.best_val_accuracy,
            record.result.test_accuracy,
        )
        for record in results.read_records(runs)
        if record.name.endswith("-tuned")
    )


@pytest.mark.slow
def test_killed_mid_trial_and_run_again_completes_the_same_study(slow_data_dir, tmp_path):
    config = write_config(tmp_path, SLOW)
    environment = _environment(slow_data_dir, tmp_path)
    runs = tmp_path / "killed"
    process = _tune(config, runs, environment)
    # Wait for trial t001 of the first candidate to checkpoint an epoch, then kill it inside the next.
    # The checkpoint, not history.jsonl: the history is written a moment before it, and a kill in
    # between leaves nothing to resume from (the run then starts again, and says no 'resuming').
    started = time.monotonic()
    while not any(runs.glob(f"*-tiny-gru-t001-*/{results.CHECKPOINT_FILE}")):
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() - started < 300, "the trial never reached its first epoch"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    [killed] = [record for record in results.read_records(runs, statuses=None) if record.name == "tiny-gru-t001"]
    assert killed.status == "incomplete"
    storage = tune.default_storage(runs)
    assert [trial.state.name for trial in trials_of(storage, "tiny-gru")] == ["COMPLETE", "RUNNING"]

    output = _finish(_tune(config, runs, environment))
    assert "[tiny-gru] trial 2: " in output and "(its process stopped; finishing it)" in output
    assert f"resuming {runs / killed.run_id} after epoch" in output

    reference = tmp_path / "uninterrupted"
    _finish(_tune(config, reference, environment))
    reference_storage = tune.default_storage(reference)
    for study_name in ("tiny-gru", "tiny-ann"):
        # Exactly the budget, no trial lost or counted twice, and the same trials as without the kill.
        assert _outcome(storage, study_name) == _outcome(reference_storage, study_name)
        assert [trial.state.name for trial in trials_of(storage, study_name)] == ["COMPLETE"] * 3
    trial_runs = [record.name for record in results.read_records(runs, statuses=None) if "-t00" in record.name]
    assert sorted(trial_runs) == sorted(f"tiny-{cell}-t00{number}" for cell in ("gru", "ann") for number in range(3))
    assert _finals(runs) == _finals(reference)


@pytest.mark.slow
def test_two_processes_on_one_study_run_exactly_the_budget(slow_data_dir, tmp_path):
    config = write_config(
        tmp_path, {**SLOW, "train": {"epochs": 1, "batch_size": 8}, "tune": {**SLOW["tune"], "trials": 4}}
    )
    environment = _environment(slow_data_dir, tmp_path)
    storage = f"sqlite:///{tmp_path / 'shared.sqlite'}"
    # Separate runs folders, as on two machines: only the shared storage keeps the count.
    first, second = (_tune(config, tmp_path / name, environment, "--storage", storage) for name in ("first", "second"))
    outputs = [_finish(first), _finish(second)]
    for study_name in ("tiny-gru", "tiny-ann"):
        trials = trials_of(storage, study_name)
        assert len(counted(trials)) == 4, [(trial.number, trial.state.name) for trial in trials]
        assert all(trial.state.name in ("COMPLETE", "FAIL") for trial in trials)
        trained = [
            record.name
            for runs in ("first", "second")
            for record in results.read_records(tmp_path / runs, statuses=None)
            if re.fullmatch(rf"{study_name}-t\d{{3}}", record.name)
        ]
        # Each counted trial trained once, in one process or the other.
        assert sorted(trained) == sorted(f"{study_name}-t{trial.number:03d}" for trial in counted(trials))
    assert all("Verdict" in output for output in outputs)
    connection = sqlite3.connect(tmp_path / "shared.sqlite")
    numbers = connection.execute("SELECT study_id, number FROM trials").fetchall()
    assert len(numbers) == len(set(numbers))


@pytest.mark.slow
def test_a_tuning_is_one_mlflow_parent_run_with_every_trial_and_final_run_nested(tiny_data_dir, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)  # A store without a server keeps its artifacts in ./mlruns.
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    path = write_config(tmp_path, with_tune(trials=1, pruner="none"))
    runs = tmp_path / "runs"
    outcome = CliRunner().invoke(
        main,
        ["tune", str(path), "--data-dir", str(tiny_data_dir), "--runs-dir", str(runs), "--mlflow", uri],
        env={"MLFLOW_EXPERIMENT_NAME": "tuning"},
    )
    assert outcome.exit_code == 0, outcome.output
    client = MlflowClient(uri)
    logged = client.search_runs([client.get_experiment_by_name("tuning").experiment_id])
    [parent] = [run for run in logged if "rnnbench.run_id" not in run.data.tags]
    assert parent.info.run_name == "tune-tiny" and parent.info.status == "FINISHED"
    children = {run.data.tags["rnnbench.run_id"]: run for run in logged if run is not parent}
    assert sorted(children) == sorted(record.run_id for record in results.read_records(runs, statuses=None))
    assert len(children) == 2 + 4  # a trial per candidate, then two seeds per winner
    assert {run.data.tags["mlflow.parentRunId"] for run in children.values()} == {parent.info.run_id}


def test_the_median_pruner_waits_for_three_trials_and_never_judges_a_first_epoch():
    settings = tune.Settings.from_config(
        tune_from_mapping({"trials": 10, "space": {"model.units": [4, 8]}}, "tune.yaml")
    )
    study = optuna.create_study(direction="maximize", pruner=tune._pruner(settings))
    for number in range(4):
        trial = study.ask()
        trial.report(0.9, 1)
        trial.report(0.9, 2)
        if number == 0:  # With one trial finished, no other is judged yet.
            judged = study.ask()
            judged.report(0.1, 2)
            assert not judged.should_prune()
            study.tell(judged, state=optuna.trial.TrialState.FAIL)
        study.tell(trial, 0.9)
    slow_starter = study.ask()
    slow_starter.report(0.1, 1)
    assert not slow_starter.should_prune()  # Far below the median, but after one epoch only.
    slow_starter.report(0.1, 2)
    assert slow_starter.should_prune()
    assert tune.pruner_description(settings) == "median, after 3 trials, from epoch 2"


def test_a_storage_that_is_not_a_database_is_one_line(tmp_path):
    settings, candidates = tune.read_plan(write_config(tmp_path, TINY))
    junk = tmp_path / "junk.sqlite"
    junk.write_text("not a database")
    with pytest.raises(tune.TuneError) as raised:
        tune.open_studies(candidates, settings, f"sqlite:///{junk}")
    assert (
        str(raised.value)
        == f"--storage sqlite:///{junk}: cannot open the study storage: (sqlite3.DatabaseError) file is not a database"
    )


def all_random(**changes) -> dict:
    """TINY with every trial sampled at random: trial n's settings follow from its number alone."""
    return with_tune(sampler="random", **changes)


@pytest.mark.slow
def test_jobs_2_trains_two_trials_at_a_time_each_reporting_and_pruned_in_its_own_process(
    tiny_data_dir, tmp_path, monkeypatch
):
    # The pruner travels to each worker process with its trial (spawned processes import this module).
    monkeypatch.setattr(tune, "_pruner", lambda settings: PruneSecondTrial())
    path = write_config(tmp_path, all_random())
    runs = tmp_path / "runs"
    outcome = CliRunner().invoke(
        main,
        [
            "tune",
            str(path),
            "--jobs",
            "2",
            "--data-dir",
            str(tiny_data_dir),
            "--runs-dir",
            str(runs),
            "--out",
            str(tmp_path / "report"),
        ],
    )
    assert outcome.exit_code == 0, outcome.output
    assert "training 6 runs, 2 at a time" in outcome.output
    storage = tune.default_storage(runs)
    for candidate in ("tiny-gru", "tiny-ann"):
        trials = trials_of(storage, candidate)
        assert [trial.state.name for trial in trials] == ["COMPLETE", "PRUNED", "COMPLETE", "COMPLETE"]
        # Reported by the process that trained the trial, through the study's storage; the epoch
        # the pruned trial left funds a last trial of one epoch, whenever the two trials ended.
        assert [list(trial.intermediate_values) for trial in trials] == [[1, 2], [1], [1, 2], [1]]
        assert [trial.user_attrs[tune.SAMPLED] for trial in trials] == ["random"] * 4
    statuses = sorted((record.name, record.status) for record in results.read_records(runs, statuses=None))
    assert statuses == sorted(
        [
            (f"tiny-{cell}-t00{number}", "pruned" if number == 1 else "completed")
            for cell in ("gru", "ann")
            for number in range(4)
        ]
        + [(f"tiny-{cell}-tuned", "completed") for cell in ("gru", "ann") for _ in (1, 2)]
    )
    # The report's curves: the random trials that trained a full trial (t000 and t002), every candidate on one picture.
    tuning = (tmp_path / "report" / "tuning.md").read_text()
    curves = []
    for candidate in ("tiny-gru", "tiny-ann"):
        values = [trial.value for trial in trials_of(storage, candidate) if trial.number in (0, 2)]
        curve = expected_max.curve(candidate, values)
        curves.append(curve)
        assert (
            f"- {candidate}: 2 of 4 random trials (1 pruned, 1 shortened by the budget: left out); expected best"
            f" {curve.expected[0]:.4f} at k=1, {curve.expected[1]:.4f} at k=2"
        ) in tuning
    assert f"**{expected_max.ranking_sentence(curves)}**" in tuning
    assert " leads " in expected_max.ranking_sentence(curves)
    assert "![Expected best validation accuracy after k random trials](tune_expected_max.png)" in tuning
    assert (tmp_path / "report" / "tune_expected_max.png").stat().st_size > 1000


@pytest.mark.slow
def test_ctrl_c_in_a_trial_then_the_same_command_finishes_that_trial_from_its_last_epoch(
    tiny_data_dir, tmp_path, monkeypatch
):
    told = tune.TrialObserver.epoch_ended

    def interrupted_once(self, entry, history):
        if self.trial.number == 1 and entry["epoch"] == 1 and not (tmp_path / "interrupted").exists():
            (tmp_path / "interrupted").touch()
            raise KeyboardInterrupt
        told(self, entry, history)

    monkeypatch.setattr(tune.TrialObserver, "epoch_ended", interrupted_once)
    path = write_config(tmp_path, {**with_tune(pruner="none"), "sweep": {"variants": {"gru": {"model.cell": "gru"}}}})
    runs = tmp_path / "runs"
    command = [
        "tune",
        str(path),
        "--data-dir",
        str(tiny_data_dir),
        "--runs-dir",
        str(runs),
        "--out",
        str(tmp_path / "report"),
    ]
    stopped = CliRunner().invoke(main, command)
    assert stopped.exit_code == 130, stopped.output
    storage = tune.default_storage(runs)
    assert [trial.state.name for trial in trials_of(storage, "tiny-gru")] == ["COMPLETE", "RUNNING"]
    [interrupted] = [record for record in results.read_records(runs, statuses=None) if record.name == "tiny-gru-t001"]
    assert interrupted.status == "interrupted"

    # This process still lives: the trial was released, so the same command here finishes it.
    again = CliRunner().invoke(main, command)
    assert again.exit_code == 0, again.output
    assert "[tiny-gru] trial 2: " in again.output and "(its process stopped; finishing it)" in again.output
    assert "[tiny-gru] trial 2: resuming" in again.output
    assert [trial.state.name for trial in trials_of(storage, "tiny-gru")] == ["COMPLETE"] * 3
    [finished] = [record for record in results.read_records(runs, statuses=None) if record.name == "tiny-gru-t001"]
    assert finished.run_id == interrupted.run_id and finished.status == "completed"
    assert len((runs / finished.run_id / "history.jsonl").read_text().splitlines()) == 2


@pytest.mark.slow
def test_a_trial_that_fails_is_told_failed_and_said_in_one_line(tiny_data_dir, tmp_path, monkeypatch):
    told = tune.TrialObserver.epoch_ended

    def disk_full(self, entry, history):
        if self.trial.number == 1:
            raise OSError(28, "No space left on device")
        told(self, entry, history)

    monkeypatch.setattr(tune.TrialObserver, "epoch_ended", disk_full)
    path = write_config(tmp_path, with_tune(pruner="none"))
    runs = tmp_path / "runs"
    failed = CliRunner().invoke(main, ["tune", str(path), "--data-dir", str(tiny_data_dir), "--runs-dir", str(runs)])
    assert failed.exit_code == 1, failed.output
    assert failed.output.splitlines()[-1] == (
        "Error: [tiny-gru] trial 2 failed: [Errno 28] No space left on device; run the same command again to retry it"
    )
    # Not counted: the next invocation asks a trial in its place.
    assert [trial.state.name for trial in trials_of(tune.default_storage(runs), "tiny-gru")] == ["COMPLETE", "FAIL"]


def test_a_trial_whose_worker_cant_reach_the_sqlite_storage_says_what_would(tmp_path):
    watch = tune.TrialWatch(
        f"sqlite:///{tmp_path / 'elsewhere' / 'tune.sqlite'}", "tiny-gru", 1, optuna.pruners.NopPruner()
    )
    with pytest.raises(tune.TuneError) as raised:
        watch.observer()
    assert str(raised.value) == (
        f"the study storage sqlite:///{tmp_path / 'elsewhere' / 'tune.sqlite'} is not on node {os.uname().nodename}: trials on a"
        " cluster report their epochs to it, so put the runs folder on storage every node sees, or give --storage a"
        " database server every node reaches (postgresql://, mysql://)"
    )
    assert not (tmp_path / "elsewhere").exists()


def test_set_changes_the_tune_section_too(tmp_path):
    path = write_config(tmp_path, TINY)
    settings, candidates = tune.read_plan(
        path,
        [
            "tune.trials=5",
            "tune.search.data.limit=200",
            "tune.space.model.embedding_dim=[4, 16]",
            "tune.pruner=none",
            "model.units=6",
        ],
    )
    assert (settings.trials, settings.search, settings.pruner) == (5, {"data.limit": 200}, "none")
    assert [(dimension.key, dimension.choices) for dimension in settings.space][0] == ("model.embedding_dim", (4, 16))
    assert [dimension.key for dimension in settings.space] == ["model.embedding_dim", "train.learning_rate"]
    assert {candidate.config.model.units for candidate in candidates} == {6}
    # The file itself is left as it was.
    assert tune.read_plan(path)[0].trials == 3


@pytest.mark.parametrize(
    "override, expected",
    [
        ("tune.trials=0", "tune.trials=0 is out of range (allowed: >= 1 and <= 1000)"),
        (
            "tune.budget=3",
            "unknown key tune.budget (allowed: pruner, random_trials, sampler, search, seeds, space, trial_seed, trials)",
        ),
        (
            "tune.space.model.units={integr: [4, 8]}",
            "unknown key tune.space.model.units.integr (allowed: choices, float, int, log, step) (did you mean 'int'?)",
        ),
    ],
)
def test_a_bad_tune_override_names_itself(tmp_path, override, expected):
    path = write_config(tmp_path, TINY)
    outcome = CliRunner().invoke(main, ["tune", str(path), "--set", override, "--runs-dir", str(tmp_path / "runs")])
    assert outcome.exit_code == 2, outcome.output
    assert outcome.output == f"Error: --set {override}: {expected}\n"


def test_a_diverged_epoch_is_neither_reported_nor_judged_by_the_pruner():
    class Trial:
        number, reported = 0, []

        def report(self, value, step):
            self.reported.append((step, value))

        def should_prune(self):
            raise AssertionError("a diverged epoch asked the pruner")

    observer = tune.TrialObserver(Trial())
    observer.epoch_ended({"epoch": 1, "loss": float("nan"), "val_loss": 0.7, "val_accuracy": 0.5}, [])
    assert Trial.reported == []
