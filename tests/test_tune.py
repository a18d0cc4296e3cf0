"""`rnnbench tune`: the tune section's errors, the equal budget, pruning, resume after SIGKILL,
and two processes sharing one study."""

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

from rnnbench import results, tune
from rnnbench.cli import main
from rnnbench.config import ConfigError

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
        ({"trials": 0, "space": {"model.units": [4]}}, "tune.trials must be a whole number from 1 to 1000 (trials per candidate), got 0"),
        ({"trials": 2, "space": {"model.units": [4]}, "budget": 3}, "tune: unknown key tune.budget (allowed: trials, space, search, pruner, seeds, trial_seed, random_trials)"),
        ({"trials": 2}, "tune.space must map dotted keys to choices or ranges, e.g. model.units: {int: [16, 256], log: true}"),
        ({"trials": 2, "space": {"model.units": {"int": [16, 8]}}}, "tune.space.model.units.int must be [low, high] with whole numbers and low < high, got [16, 8]"),
        ({"trials": 2, "space": {"model.units": {"int": [0, 8], "log": True}}}, "tune.space.model.units: a log range needs low > 0, got 0"),
        ({"trials": 2, "space": {"model.units": {"range": [1, 8]}}}, "tune.space.model.units must be a list of choices, or {int: [low, high]} or {float: [low, high]} with optional log: true and step, got {'range': [1, 8]}"),
        ({"trials": 2, "space": {"model.units": [4, 4]}}, "tune.space.model.units repeats a choice: [4, 4]"),
        ({"trials": 2, "space": {"train.seed": [1, 2]}}, "tune.space.train.seed: train.seed can't be searched (the tuning protocol sets name, backend, train.seed, train.seeds)"),
        ({"trials": 2, "space": {"model.units": [4]}, "pruner": "sometimes"}, "tune.pruner must be one of median, hyperband, none, got 'sometimes'"),
        ({"trials": 2, "space": {"model.units": [4]}, "seeds": 1}, "tune.seeds must be 2 to 100 seeds (or a list of them): a verdict needs at least 2, got 1"),
        ({"trials": 2, "space": {"model.units": [4]}, "seeds": [0, 1]}, "tune.seeds=[0, 1] holds the trial seed 0; the final runs need fresh seeds, not the one the search chose on"),
        ({"trials": 2, "space": {"model.units": [4]}, "search": {"model.units": 8}}, "tune.search.model.units is also in tune.space; a key is either searched or fixed for the search"),
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
        ({"model.unitz": [4, 8]}, "tune.space.model.unitz=4: unknown key model.unitz (allowed: bidirectional, cell, dense_units, dropout, embedding_dim,"
         " embedding_dropout, embedding_trainable, layers, mask_padding, ngram_weighting, ngrams, pooling, pretrained_embedding,"
         " recurrent_dropout, recurrent_input_dropout, units) (did you mean 'units'?)"),
        ({"model.dropout": {"float": [0.0, 1.5]}}, "tune.space.model.dropout=1.5: model.dropout=1.5 is out of range (allowed: >= 0.0 and < 1.0)"),
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
    assert outcome.exit_code == 2 and outcome.output == f"Error: {tuned}: has a tune section; tune it with: rnnbench tune {tuned}\n"
    plain = write_config(tmp_path, {"name": "plain"}, "plain.yaml")
    outcome = CliRunner().invoke(main, ["tune", str(plain)])
    assert outcome.exit_code == 2
    assert outcome.output == f"Error: {plain}: has no tune section; `rnnbench tune` needs one (see configs/tune/), or train it with: rnnbench run {plain}\n"


def test_seeds_and_search_settings(tmp_path):
    settings, candidates = tune.read_plan(write_config(tmp_path, with_tune(seeds=3, trial_seed=7)))
    assert settings.seeds == (8, 9, 10)
    assert [candidate.name for candidate in candidates] == ["tiny-gru", "tiny-ann"]
    assert all(candidate.config.train.seed == 7 and candidate.config.train.seeds is None for candidate in candidates)
    trial = tune.trial_config(candidates[0], settings, {"model.embedding_dim": 4}, 12)
    assert (trial.name, trial.data.limit, trial.model.embedding_dim, trial.train.seed) == ("tiny-gru-t012", 300, 4, 7)
    finals = tune.final_configs(candidates[0], settings, {"model.embedding_dim": 4})
    assert [(config.name, config.train.seed, config.data.limit, config.model.embedding_dim) for config in finals] == [
        ("tiny-gru-tuned", seed, None, 4) for seed in (8, 9, 10)
    ]


class PruneSecondTrial(optuna.pruners.BasePruner):
    """Prunes trial 1 of every study after its first epoch, and nothing else."""

    def prune(self, study, trial) -> bool:
        return trial.number == 1


def test_every_candidate_gets_the_budget_and_pruned_trials_are_recorded_as_pruned(tiny_data_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(tune, "_pruner", lambda settings: PruneSecondTrial())
    path = write_config(tmp_path, TINY)
    runs = tmp_path / "runs"
    outcome = CliRunner().invoke(main, ["tune", str(path), "--data-dir", str(tiny_data_dir), "--runs-dir", str(runs), "--out", str(tmp_path / "report")])
    assert outcome.exit_code == 0, outcome.output
    storage = tune.default_storage(runs)
    for candidate in ("tiny-gru", "tiny-ann"):
        trials = trials_of(storage, candidate)
        assert [trial.number for trial in trials] == [0, 1, 2]
        assert [trial.state.name for trial in trials] == ["COMPLETE", "PRUNED", "COMPLETE"]
        assert list(trials[1].intermediate_values) == [1]
        assert f"[{candidate}] trial 2 of 3: pruned after epoch 1: val_accuracy" in outcome.output
    records = results.read_runs(runs, statuses=None)
    by_name = {record["name"]: record for record in records}
    # Every trial is an ordinary run; the pruned one is recorded as pruned, with its one epoch.
    assert sorted(by_name) == sorted(
        [f"tiny-{cell}-t00{number}" for cell in ("gru", "ann") for number in range(3)] + ["tiny-gru-tuned", "tiny-ann-tuned"]
    )
    assert by_name["tiny-gru-t001"]["status"] == "pruned" and by_name["tiny-gru-t001"]["result"] == {"epochs_run": 1}
    assert not (runs / by_name["tiny-gru-t001"]["run_id"] / results.CHECKPOINT_FILE).exists()
    assert by_name["tiny-gru-t000"]["config"]["data"]["limit"] == 300
    finals = [record for record in records if record["name"].endswith("-tuned")]
    assert sorted((record["name"], record["config"]["train"]["seed"]) for record in finals) == [
        ("tiny-ann-tuned", 1), ("tiny-ann-tuned", 2), ("tiny-gru-tuned", 1), ("tiny-gru-tuned", 2)
    ]
    assert all(record["config"]["data"]["limit"] is None for record in finals)
    # The winner's settings are the best completed trial's.
    best = max(counted(trials_of(storage, "tiny-gru")), key=lambda trial: (trial.value or -1, -trial.number))
    gru_final = next(record for record in finals if record["name"] == "tiny-gru-tuned")
    assert gru_final["config"]["model"]["embedding_dim"] == best.params["model.embedding_dim"]
    assert gru_final["config"]["train"]["learning_rate"] == best.params["train.learning_rate"]
    assert "Verdict (Welch's t-test" in outcome.output
    tuning = (tmp_path / "report" / "tuning.md").read_text()
    assert "## tiny-gru" in tuning and "3 trials (1 pruned)" in tuning and "| t001 | pruned |" in tuning
    assert (tmp_path / "report" / "tune_history_tiny-gru.png").stat().st_size > 1000

    # Again: the budget is used up, nothing trains, the same winners are reported.
    again = CliRunner().invoke(main, ["tune", str(path), "--data-dir", str(tiny_data_dir), "--runs-dir", str(runs), "--out", str(tmp_path / "report")])
    assert again.exit_code == 0, again.output
    assert "trial 1 of 3" not in again.output and "already completed" in again.output
    assert len(results.read_runs(runs, statuses=None)) == len(records)

    # A changed search is refused rather than mixed into the old study.
    changed = write_config(tmp_path, with_tune(search={"data.limit": 200}))
    refused = CliRunner().invoke(main, ["tune", str(changed), "--data-dir", str(tiny_data_dir), "--runs-dir", str(runs)])
    assert refused.exit_code == 1
    assert refused.output == (
        f"Error: {storage}: study tiny-gru was tuned with other settings (config, space, search, pruner or trial seed);"
        " keep them, or give the config another name, or use another --storage\n"
    )


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
    assert tune.next_trial(candidates[0], settings, runs) is None
    trials = study.get_trials()
    assert [trial.state.name for trial in trials] == ["RUNNING", "RUNNING", "FAIL"]
    assert trials[2].user_attrs[tune.OVER_BUDGET] is True
    monkeypatch.setattr(study, "ask", asking)
    assert tune.next_trial(candidates[0], settings, runs) is None  # The two running ones are the budget.
    study.tell(trials[0].number, state=optuna.trial.TrialState.FAIL)  # One fails: room for one more.
    trial, resumed = tune.next_trial(candidates[0], settings, runs)
    assert (trial.number, resumed) == (3, False)
    assert trial.user_attrs[tune.OWNER] == results.this_process()


# Subprocess cases: bigger data and small batches, so that an epoch lasts long enough to be killed in.
SLOW = {
    **TINY,
    "data": {"num_words": 100, "maxlen": 24},
    "train": {"epochs": 3, "batch_size": 4},
    "tune": {**TINY["tune"], "search": {}, "trials": 3, "pruner": "none"},
}


def _environment(data_dir: Path, tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "RNNBENCH_DATA_DIR": str(data_dir), "RNNBENCH_CACHE_DIR": str(tmp_path / "cache"), "KERAS_BACKEND": "jax"}


def _tune(config: Path, runs: Path, environment: dict[str, str], *arguments: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "rnnbench", "tune", str(config), "--runs-dir", str(runs), "--out", str(runs.parent / f"report-{runs.name}"), *arguments],
        env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def _finish(process: subprocess.Popen, deadline: float = 600) -> str:
    output, _ = process.communicate(timeout=deadline)
    assert process.returncode == 0, output
    return output


def _outcome(storage: str, study_name: str) -> list[tuple]:
    return [(trial.number, trial.state.name, trial.params, trial.value) for trial in trials_of(storage, study_name)]


def _finals(runs: Path) -> list[tuple]:
    return sorted(
        (record["name"], record["config"]["train"]["seed"], record["result"]["best_val_accuracy"], record["result"]["test_accuracy"])
        for record in results.read_runs(runs) if record["name"].endswith("-tuned")
    )


def test_killed_mid_trial_and_run_again_completes_the_same_study(slow_data_dir, tmp_path):
    config = write_config(tmp_path, SLOW)
    environment = _environment(slow_data_dir, tmp_path)
    runs = tmp_path / "killed"
    process = _tune(config, runs, environment)
    # Wait for trial t001 of the first candidate to finish an epoch, then kill it inside the next.
    started = time.monotonic()
    while not any(len(path.read_text().splitlines()) >= 1 for path in runs.glob("*-tiny-gru-t001-*/history.jsonl")):
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() - started < 300, "the trial never reached its first epoch"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    [killed] = [record for record in results.read_runs(runs, statuses=None) if record["name"] == "tiny-gru-t001"]
    assert killed["status"] == "incomplete"
    storage = tune.default_storage(runs)
    assert [trial.state.name for trial in trials_of(storage, "tiny-gru")] == ["COMPLETE", "RUNNING"]

    output = _finish(_tune(config, runs, environment))
    assert "[tiny-gru] trial 2 of 3: " in output and "(its process stopped; finishing it)" in output
    assert f"resuming {runs / killed['run_id']} after epoch" in output

    reference = tmp_path / "uninterrupted"
    _finish(_tune(config, reference, environment))
    reference_storage = tune.default_storage(reference)
    for study_name in ("tiny-gru", "tiny-ann"):
        # Exactly the budget, no trial lost or counted twice, and the same trials as without the kill.
        assert _outcome(storage, study_name) == _outcome(reference_storage, study_name)
        assert [trial.state.name for trial in trials_of(storage, study_name)] == ["COMPLETE"] * 3
    trial_runs = [record["name"] for record in results.read_runs(runs, statuses=None) if "-t00" in record["name"]]
    assert sorted(trial_runs) == sorted(f"tiny-{cell}-t00{number}" for cell in ("gru", "ann") for number in range(3))
    assert _finals(runs) == _finals(reference)


def test_two_processes_on_one_study_run_exactly_the_budget(slow_data_dir, tmp_path):
    config = write_config(tmp_path, {**SLOW, "train": {"epochs": 1, "batch_size": 8}, "tune": {**SLOW["tune"], "trials": 4}})
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
            record["name"] for runs in ("first", "second")
            for record in results.read_runs(tmp_path / runs, statuses=None) if re.fullmatch(rf"{study_name}-t\d{{3}}", record["name"])
        ]
        # Each counted trial trained once, in one process or the other.
        assert sorted(trained) == sorted(f"{study_name}-t{trial.number:03d}" for trial in counted(trials))
    assert all("Verdict" in output for output in outputs)
    connection = sqlite3.connect(tmp_path / "shared.sqlite")
    numbers = connection.execute("SELECT study_id, number FROM trials").fetchall()
    assert len(numbers) == len(set(numbers))


def test_a_tuning_is_one_mlflow_parent_run_with_every_trial_and_final_run_nested(tiny_data_dir, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)  # A store without a server keeps its artifacts in ./mlruns.
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    path = write_config(tmp_path, with_tune(trials=1, pruner="none"))
    runs = tmp_path / "runs"
    outcome = CliRunner().invoke(
        main, ["tune", str(path), "--data-dir", str(tiny_data_dir), "--runs-dir", str(runs), "--mlflow", uri],
        env={"MLFLOW_EXPERIMENT_NAME": "tuning"},
    )
    assert outcome.exit_code == 0, outcome.output
    client = MlflowClient(uri)
    logged = client.search_runs([client.get_experiment_by_name("tuning").experiment_id])
    [parent] = [run for run in logged if "rnnbench.run_id" not in run.data.tags]
    assert parent.info.run_name == "tune-tiny" and parent.info.status == "FINISHED"
    children = {run.data.tags["rnnbench.run_id"]: run for run in logged if run is not parent}
    assert sorted(children) == sorted(record["run_id"] for record in results.read_runs(runs, statuses=None))
    assert len(children) == 2 + 4  # a trial per candidate, then two seeds per winner
    assert {run.data.tags["mlflow.parentRunId"] for run in children.values()} == {parent.info.run_id}


def test_the_median_pruner_waits_for_three_trials_and_never_judges_a_first_epoch():
    settings = tune.parse_settings({"trials": 10, "space": {"model.units": [4, 8]}}, "tune.yaml")
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
    assert str(raised.value) == f"--storage sqlite:///{junk}: cannot open the study storage: (sqlite3.DatabaseError) file is not a database"


def all_random(**changes) -> dict:
    """TINY with every trial sampled at random: trial n's settings follow from its number alone."""
    return with_tune(random_trials=3, **changes)


def test_jobs_2_trains_two_trials_at_a_time_each_reporting_and_pruned_in_its_own_process(tiny_data_dir, tmp_path, monkeypatch):
    # The pruner travels to each worker process with its trial (spawned processes import this module).
    monkeypatch.setattr(tune, "_pruner", lambda settings: PruneSecondTrial())
    path = write_config(tmp_path, all_random())
    runs = tmp_path / "runs"
    outcome = CliRunner().invoke(main, ["tune", str(path), "--jobs", "2", "--data-dir", str(tiny_data_dir), "--runs-dir", str(runs), "--out", str(tmp_path / "report")])
    assert outcome.exit_code == 0, outcome.output
    assert "training 6 runs, 2 at a time" in outcome.output
    storage = tune.default_storage(runs)
    for candidate in ("tiny-gru", "tiny-ann"):
        trials = trials_of(storage, candidate)
        assert [trial.state.name for trial in trials] == ["COMPLETE", "PRUNED", "COMPLETE"]
        # Reported by the process that trained the trial, through the study's storage.
        assert [list(trial.intermediate_values) for trial in trials] == [[1, 2], [1], [1, 2]]
    statuses = sorted((record["name"], record["status"]) for record in results.read_runs(runs, statuses=None))
    assert statuses == sorted(
        [(f"tiny-{cell}-t00{number}", "pruned" if number == 1 else "completed") for cell in ("gru", "ann") for number in range(3)]
        + [(f"tiny-{cell}-tuned", "completed") for cell in ("gru", "ann") for _ in (1, 2)]
    )


def test_ctrl_c_in_a_trial_then_the_same_command_finishes_that_trial_from_its_last_epoch(tiny_data_dir, tmp_path, monkeypatch):
    told = tune.TrialObserver.epoch_ended

    def interrupted_once(self, entry, history):
        if self.trial.number == 1 and entry["epoch"] == 1 and not (tmp_path / "interrupted").exists():
            (tmp_path / "interrupted").touch()
            raise KeyboardInterrupt
        told(self, entry, history)

    monkeypatch.setattr(tune.TrialObserver, "epoch_ended", interrupted_once)
    path = write_config(tmp_path, {**with_tune(pruner="none"), "sweep": {"variants": {"gru": {"model.cell": "gru"}}}})
    runs = tmp_path / "runs"
    command = ["tune", str(path), "--data-dir", str(tiny_data_dir), "--runs-dir", str(runs), "--out", str(tmp_path / "report")]
    stopped = CliRunner().invoke(main, command)
    assert stopped.exit_code == 130, stopped.output
    storage = tune.default_storage(runs)
    assert [trial.state.name for trial in trials_of(storage, "tiny-gru")] == ["COMPLETE", "RUNNING"]
    [interrupted] = [record for record in results.read_runs(runs, statuses=None) if record["name"] == "tiny-gru-t001"]
    assert interrupted["status"] == "interrupted"

    # This process still lives: the trial was released, so the same command here finishes it.
    again = CliRunner().invoke(main, command)
    assert again.exit_code == 0, again.output
    assert "[tiny-gru] trial 2 of 3: " in again.output and "(its process stopped; finishing it)" in again.output
    assert "[tiny-gru] trial 2 of 3: resuming" in again.output
    assert [trial.state.name for trial in trials_of(storage, "tiny-gru")] == ["COMPLETE"] * 3
    [finished] = [record for record in results.read_runs(runs, statuses=None) if record["name"] == "tiny-gru-t001"]
    assert finished["run_id"] == interrupted["run_id"] and finished["status"] == "completed"
    assert len((runs / finished["run_id"] / "history.jsonl").read_text().splitlines()) == 2


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
        "Error: [tiny-gru] trial 2 of 3 failed: [Errno 28] No space left on device; run the same command again to retry it"
    )
    # Not counted: the next invocation asks a trial in its place.
    assert [trial.state.name for trial in trials_of(tune.default_storage(runs), "tiny-gru")] == ["COMPLETE", "FAIL"]


def test_a_trial_whose_worker_cant_reach_the_sqlite_storage_says_what_would(tmp_path):
    watch = tune.TrialWatch(f"sqlite:///{tmp_path / 'elsewhere' / 'tune.sqlite'}", "tiny-gru", 1, optuna.pruners.NopPruner())
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
        path, ["tune.trials=5", "tune.search.data.limit=200", "tune.space.model.embedding_dim=[4, 16]", "tune.pruner=none", "model.units=6"]
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
        ("tune.trials=0", "tune.trials must be a whole number from 1 to 1000 (trials per candidate), got 0"),
        ("tune.budget=3", "tune: unknown key tune.budget (allowed: trials, space, search, pruner, seeds, trial_seed, random_trials)"),
    ],
)
def test_a_bad_tune_override_names_itself(tmp_path, override, expected):
    path = write_config(tmp_path, TINY)
    outcome = CliRunner().invoke(main, ["tune", str(path), "--set", override, "--runs-dir", str(tmp_path / "runs")])
    assert outcome.exit_code == 2, outcome.output
    assert outcome.output == f"Error: {path} with --set {override}: {expected}\n"


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
