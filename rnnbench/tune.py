"""Tuning every candidate with the same budget of epochs, then comparing the winners over fresh seeds.

A config's `tune:` section turns its sweep variants (or grid points) into candidates:

    sweep:
      variants:
        lstm: {model.cell: lstm}
        gru: {model.cell: gru}
    tune:
      trials: 20                     # budget per candidate: trials x the search's train.epochs, in epochs
      space:                         # dotted keys: a list of choices, or a range
        model.units: {int: [16, 256], log: true}
        model.embedding_dim: [32, 64, 128]
        train.learning_rate: {float: [1.0e-4, 1.0e-2], log: true}
      search: {data.limit: 5000}     # settings for the trials only (the final runs use the config's)
      pruner: median                 # median | hyperband | none, on each epoch's val_accuracy
      sampler: tpe                   # tpe (random_trials at random first) | random (every trial)
      seeds: 3                       # final runs: seeds 1..3 (or a list); never the trial seed
      trial_seed: 0                  # the seed every trial trains with (and the sampler's)

Each candidate is an Optuna study in RDB storage, a SQLite file in the runs folder unless
`--storage` names another: trials are ordinary runs, `<candidate>-t<number>`, judged on their
best validation accuracy; the best trial's settings are then trained over the fresh seeds as
`<candidate>-tuned`. Every candidate trains exactly the same number of epochs in its search:
a trial is given a full trial's epochs, or the budget's last ones, and the epochs a pruned (or
early-stopped) trial did not use fund further trials. Running the command again continues the
studies: a trial whose process died (or went silent) is finished from its run's last epoch,
never counted twice, and the budget is exact even with several processes on one study.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import itertools
import json
import re
import socket
import threading
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional, Sequence

from rnnbench import observers, results, sweep
from rnnbench.config import (
    Config,
    ConfigError,
    SearchDimension,
    TuneConfig,
    config_from_mapping,
    read_mapping,
    tune_from_mapping,
)
from rnnbench.errors import InputError, RnnbenchError, RunStopped
from rnnbench.record import RunRecord, RunResult

if TYPE_CHECKING:
    import optuna

    from rnnbench.cluster import ClusterSettings

STORAGE_FILE = "tune.sqlite"
# The budget counts the epochs of these trials; a failed one (an error, or asked over the budget) is not counted.
COUNTED = ("COMPLETE", "PRUNED", "RUNNING")
OWNER = "rnnbench.process"
# The owner of a trial its process stopped on purpose (Ctrl-C): any process may finish it.
RELEASED = "released"
RUN_ID = "rnnbench.run_id"
STATUS = "rnnbench.status"
OVER_BUDGET = "rnnbench.over_budget"
SETTINGS = "rnnbench.settings"
# A study's budget rule. Studies made when the budget counted trials have none: their pruned
# trials counted as whole trials, so their epochs can't be made equal, and they are refused.
BUDGET_RULE = "rnnbench.budget"
EPOCH_BUDGET = "epochs"
# The epochs a trial may train (a full trial's, or the budget's last ones), fixed when it is asked.
ALLOTTED = "rnnbench.epochs_allotted"
# The epochs it trained, once it ended: fewer than allotted when pruned, stopped early or diverged.
SPENT = "rnnbench.epochs_spent"
# How its settings were drawn: "random" (independently of every other trial) or "tpe".
SAMPLED = "rnnbench.sampled"
# When the process that owns a running trial last said it still trains it (seconds since 1970).
HEARTBEAT = "rnnbench.heartbeat"
HEARTBEAT_SECONDS = 30.0
# A running trial not heard of for this long is taken over, even if its process id still
# answers on its machine (it may belong to another process by now), or is on another machine.
SILENT_SECONDS = 600.0
# How often a process with nothing left to ask looks again at trials other processes are running,
# and how often it says again what it waits for.
WAIT_SECONDS = 5.0
WAIT_REPORT_SECONDS = 60.0


class TuneError(RnnbenchError):
    """A tuning study that can't go on as asked (settings changed, a trial failed), in one line."""


class StorageError(InputError):
    """A study storage given that can't be one (a folder where the SQLite file belongs), in one line; exit code 2."""


@dataclass(frozen=True)
class Dimension:
    """One key of the search space as Optuna samples it: choices, or an int or float range.

    Its fields, as written in the file (config.SearchDimension validated them), are what a study's
    settings digest holds, so they stay as they are.
    """

    key: str
    choices: Optional[tuple[Any, ...]] = None
    kind: Optional[str] = None  # "int" or "float" for a range
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    step: Optional[float] = None

    @classmethod
    def from_config(cls, key: str, dimension: SearchDimension) -> "Dimension":
        if dimension.choices is not None:
            return cls(key, choices=tuple(dimension.choices))
        low, high = dimension.int_range or dimension.float_range or (0.0, 0.0)
        return cls(key, kind=dimension.kind, low=low, high=high, log=dimension.log, step=dimension.step)

    def distribution(self) -> Any:
        import optuna

        if self.choices is not None:
            return optuna.distributions.CategoricalDistribution(self.choices)
        if self.kind == "int":
            return optuna.distributions.IntDistribution(
                int(self.low), int(self.high), log=self.log, step=int(self.step or 1)
            )
        return optuna.distributions.FloatDistribution(self.low, self.high, log=self.log, step=self.step)

    def extremes(self) -> list[Any]:
        """The values a config must accept for every sample of this dimension to be valid."""
        if self.choices is not None:
            return list(self.choices)
        if self.kind == "int":
            return [int(self.low), int(self.high)]
        return [self.low, self.high]


@dataclass(frozen=True)
class Settings:
    """The tune section as the studies use it: config.TuneConfig resolved (the final seeds, TPE's
    random start), with the epochs of one full trial, which the candidates fix."""

    trials: int
    space: tuple[Dimension, ...]
    search: dict[str, Any]
    pruner: str
    seeds: tuple[int, ...]
    trial_seed: int
    # TPE's random start; None with sampler random, where every trial is random.
    random_trials: Optional[int]
    sampler: str = "tpe"
    # The epochs of one full trial (the search's train.epochs, the same for every candidate); read_plan sets it.
    trial_epochs: int = 0

    @classmethod
    def from_config(cls, tune: TuneConfig) -> "Settings":
        return cls(
            trials=tune.trials,
            space=tuple(Dimension.from_config(key, dimension) for key, dimension in tune.space.items()),
            search=dict(tune.search),
            pruner=tune.pruner,
            seeds=tune.final_seeds,
            trial_seed=tune.trial_seed,
            random_trials=tune.random_start,
            sampler=tune.sampler,
        )

    @property
    def budget(self) -> int:
        """Epochs every candidate trains in its search."""
        return self.trials * self.trial_epochs


@dataclass
class Candidate:
    """One sweep point to tune: its study, and its config as the trials (and final runs) start from."""

    name: str
    config: Config  # the candidate's own settings, trial seed, without the search settings
    study: Any = None
    storage_url: str = ""


def read_plan(path: str | Path, overrides: Sequence[str] = ()) -> tuple[Settings, list[Candidate]]:
    """The tune settings and candidates of the config at `path`, every key validated before anything trains."""
    source = str(path)
    raw = read_mapping(path)
    if "tune" not in raw:
        raise ConfigError(
            f"{source}: has no tune section; `rnnbench tune` needs one (see configs/tune/), or train it with: rnnbench run {source}"
        )
    # `--set tune.KEY=VALUE` goes to the tune section, validated as the rest of a config is.
    tuning = [
        override for override in overrides if _set_key(override) == "tune" or _set_key(override).startswith("tune.")
    ]
    overrides = [override for override in overrides if override not in tuning]
    settings = Settings.from_config(tune_from_mapping(raw.pop("tune"), source, tuning))
    # Every trial trains with the trial seed; the final runs' seeds come from tune.seeds.
    configs = sweep.expand_mapping(raw, source, [*overrides, f"train.seeds=[{settings.trial_seed}]"])
    candidates = [Candidate(config.name, config) for config in configs]
    for candidate in candidates:
        _check_space(candidate, settings, source)
        _check_selection(candidate, settings, source)
    return replace(settings, trial_epochs=_trial_epochs(candidates, settings, source)), candidates


def _set_key(override: str) -> str:
    return override.partition("=")[0].strip()


def _check_space(candidate: Candidate, settings: Settings, source: str) -> None:
    """Validate the search settings and every dimension's extremes against the candidate's config."""
    trial_config(
        candidate, settings, {dimension.key: dimension.extremes()[0] for dimension in settings.space}, 0, source
    )
    for dimension in settings.space:
        for value in dimension.extremes():
            trial_config(candidate, settings, {dimension.key: value}, 0, source)


def _check_selection(candidate: Candidate, settings: Settings, source: str) -> None:
    """Refuse a tuning that would choose its winners on the test split: validation on the test
    split itself, or rows held out beside rows of the same group (an IMDB film), which reward
    memorising the group as the test split never does. The trials choose the settings and the
    winners' runs choose their best epoch, so both configs are checked."""
    trial = trial_config(candidate, settings, {}, 0, source)
    for config, searched in ((trial, True), (candidate.config, False)):
        for key in ("data.validation", "data.hold_out"):
            named = f"tune.search.{key}" if searched and key in settings.search else key
            data = config.data
            if key == "data.validation" and data.validation == "test":
                raise ConfigError(
                    f"{source}: {named}='test' would choose the tuning's winners on the test split; hold validation out of"
                    " the training rows instead (data.validation: a fraction such as 0.2, or a data.files.validation file)"
                )
            groups = _groups(config)
            if key == "data.hold_out" and data.hold_out == "rows" and groups:
                raise ConfigError(
                    f"{source}: {named}='rows' would choose the tuning's winners on validation rows whose {groups} also have"
                    " rows in training, which rewards memorising them as the test split never does; tune with data.hold_out: groups"
                )


def _groups(config: Config) -> Optional[str]:
    """What groups validation's rows belong to (films), or None where validation is not cut from grouped rows."""
    if config.data.dataset == "imdb":
        return "films"
    files = config.data.files
    if files is not None and files.group_column and not files.validation:
        return f"groups ({files.group_column})"
    return None


def _trial_epochs(candidates: list[Candidate], settings: Settings, source: str) -> int:
    """The epochs of one full trial, which must be the same for every candidate: the budget is trials x these."""
    epochs = {candidate.name: trial_config(candidate, settings, {}, 0, source).train.epochs for candidate in candidates}
    if len(set(epochs.values())) > 1:
        listed = ", ".join(f"{name} {count}" for name, count in epochs.items())
        raise ConfigError(
            f"{source}: the candidates' trials would train different epochs ({listed}), and the budget, tune.trials x"
            " epochs, must be the same for every candidate; set tune.search.train.epochs"
        )
    return next(iter(epochs.values()))


def trial_config(
    candidate: Candidate,
    settings: Settings,
    params: dict[str, Any],
    number: int,
    source: str = "tune",
    epochs: Optional[int] = None,
) -> Config:
    """The config of trial `number`: the candidate's, with the search settings and the sampled params;
    `epochs` when the trial trains fewer than a full trial (the budget's last epochs)."""
    overrides = [(key, value, f"{source}: tune.search.{key}") for key, value in settings.search.items()]
    overrides += [(key, value, f"{source}: tune.space.{key}={value!r}") for key, value in params.items()]
    if epochs is not None:
        overrides.append(("train.epochs", epochs, f"{source}: the budget's last {epochs} epochs"))
    return config_from_mapping(
        {**candidate.config.to_dict(), "name": f"{candidate.name}-t{number:03d}"}, source=source, overrides=overrides
    )


def final_configs(candidate: Candidate, settings: Settings, params: dict[str, Any]) -> list[Config]:
    """The winner's runs over the fresh seeds: the candidate's full settings (no search ones) with the best params."""
    overrides = [(key, value, f"tune.space.{key}") for key, value in params.items()]
    overrides.append(("train.seeds", list(settings.seeds), "tune.seeds"))
    config = config_from_mapping({**candidate.config.to_dict(), "name": f"{candidate.name}-tuned"}, overrides=overrides)
    return sweep.per_seed(config)


# Config keys added after tuning studies were first keyed by their settings. At its default, such
# a key changes nothing a trial does, so it is left out of the digest, and studies already in
# tune.sqlite go on; tests/test_tune_config.py pins the digests, so a key added later without
# being listed here fails there first.
ADDED_AFTER_STUDIES = (
    "data.unlabeled",
    "data.unlabeled_text_column",
    "model.conv_widths",
    "model.conv_filters",
    "model.pretrained_encoder",
    "model.lm_epochs",
)


def _settings_digest(candidate: Candidate, settings: Settings) -> str:
    """What a study's trials depend on; the budget and the final seeds may change between invocations."""
    described = {
        "config": candidate.config.to_dict(),
        "space": [dimension.__dict__ for dimension in settings.space],
        "search": settings.search,
        # The pruner with its settings, so a study is never continued under one that decides otherwise.
        "pruner": pruner_description(settings),
        "trial_seed": settings.trial_seed,
        "random_trials": settings.random_trials,
        "sampler": settings.sampler,
    }
    described["config"].pop("backend", None)
    for dotted in ADDED_AFTER_STUDIES:
        section, _, key = dotted.partition(".")
        settings_of_section = getattr(candidate.config, section)
        if getattr(settings_of_section, key) == type(settings_of_section).model_fields[key].default:
            described["config"][section].pop(key, None)
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:16]


def default_storage(runs_dir: Path) -> str:
    """A SQLite file in the runs folder."""
    return f"sqlite:///{(runs_dir / STORAGE_FILE).resolve()}"


def storage_label(url: str) -> str:
    """The storage URL as it may be printed: without a password."""
    return re.sub(r"//([^/:@]*):[^/@]*@", r"//\1:***@", url)


def open_studies(candidates: list[Candidate], settings: Settings, storage_url: str) -> None:
    """Create each candidate's study, or load it, refusing one made with other settings."""
    try:
        import optuna
    except ImportError:
        raise TuneError("rnnbench tune needs Optuna: pip install 'rnnbench[tune]'") from None

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    storage = _storage(storage_url)
    for candidate in candidates:
        study = optuna.create_study(
            study_name=candidate.name,
            storage=storage,
            direction="maximize",
            load_if_exists=True,
            pruner=_pruner(settings),
        )
        digest = _settings_digest(candidate, settings)
        recorded = study.user_attrs.get(SETTINGS)
        if recorded is not None and study.user_attrs.get(BUDGET_RULE) != EPOCH_BUDGET:
            raise TuneError(
                f"{storage_url}: study {candidate.name} was tuned when the budget counted trials, not epochs (a pruned trial"
                " counted as a whole one), so its epochs can't be made equal to another candidate's; give the config"
                " another name, or use another --storage"
            )
        if recorded is None:
            # The rule first: a study with settings but no rule is one made under the old rule.
            study.set_user_attr(BUDGET_RULE, EPOCH_BUDGET)
            study.set_user_attr(SETTINGS, digest)
        elif recorded != digest:
            raise TuneError(
                f"{storage_url}: study {candidate.name} was tuned with other settings (config, space, search, pruner or"
                " trial seed); keep them, or give the config another name, or use another --storage"
            )
        candidate.study, candidate.storage_url = study, storage_url


# Processes started together on a new storage race to create its tables; the losers retry.
STORAGE_ATTEMPTS = 5


def _storage(url: str) -> Any:
    import optuna

    engine = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else {}
    if url.startswith("sqlite:///") and Path(url[len("sqlite:///") :]).is_dir():
        raise StorageError(
            f"{url[len('sqlite:///') :]}: is a folder, not a study storage (an SQLite file); move it away, or give --storage another file"
        )
    for attempt in range(1, STORAGE_ATTEMPTS + 1):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine)
        except Exception as error:  # A bad URL, an unreachable server, a file that is not a database.
            # Another process creating the tables at the same moment (a duplicate schema row,
            # a locked database) is worth another try; anything else is the storage's answer.
            if type(error).__name__ not in ("IntegrityError", "OperationalError") or attempt == STORAGE_ATTEMPTS:
                raise TuneError(f"--storage {url}: cannot open the study storage: {_first_line(error)}") from None
            time.sleep(0.2 * attempt)
    raise AssertionError("unreachable")


# No trial is pruned before a few have finished, nor on its first epoch's number alone: settings
# that learn slowly at first (a low learning rate) would be cut before they show.
MEDIAN_STARTUP_TRIALS = 3
MEDIAN_WARMUP_EPOCHS = 1
HYPERBAND_REDUCTION_FACTOR = 3


def sampler_description(settings: Settings) -> str:
    if settings.sampler == "random":
        return "random, every trial (seeded)"
    return f"seeded TPE, the first {settings.random_trials} trial{'s' if settings.random_trials != 1 else ''} random"


def pruner_description(settings: Settings) -> str:
    if settings.pruner == "median":
        return (
            f"median, after {min(MEDIAN_STARTUP_TRIALS, settings.trials)} trials, from epoch {MEDIAN_WARMUP_EPOCHS + 1}"
        )
    if settings.pruner == "hyperband":
        return f"hyperband, from epoch 1, reduction factor {HYPERBAND_REDUCTION_FACTOR}"
    return "none"


def _pruner(settings: Settings) -> Any:
    import optuna

    if settings.pruner == "median":
        # Steps are epoch numbers, from 1; Optuna prunes from the step n_warmup_steps names.
        return optuna.pruners.MedianPruner(
            n_startup_trials=min(MEDIAN_STARTUP_TRIALS, settings.trials), n_warmup_steps=MEDIAN_WARMUP_EPOCHS + 1
        )
    if settings.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, reduction_factor=HYPERBAND_REDUCTION_FACTOR)
    return optuna.pruners.NopPruner()


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


class Pruned(RunStopped):
    """Raised from a trial's epoch to end its run as pruned."""

    status = "pruned"


class TrialObserver(observers.RunObserver):
    """Reports a trial's epochs to its study and prunes it when the pruner says so, except after
    the trial's last epoch: a trial that trained every epoch it was given has a whole trial's
    value, which may win."""

    def __init__(self, trial: "optuna.trial.Trial"):
        self.trial = trial
        self.pruned_at: Optional[int] = None
        # The trial run's train.epochs and early stopping patience, once its run is opened.
        self.epochs: Optional[int] = None
        self.patience: Optional[int] = None

    def opened(self, run_dir: Path, record: RunRecord, history: Sequence[dict[str, Any]]) -> None:
        self.trial.set_user_attr(RUN_ID, Path(run_dir).name)
        train = record.config["train"]
        self.epochs, self.patience = train["epochs"], train.get("early_stopping_patience")
        # A resumed trial: epochs trained before its process died, reported if they were not.
        for entry in history:
            self._report(entry)
        if history:
            self._prune_if_told(history)

    def epoch_ended(self, entry: dict[str, Any], history: Sequence[dict[str, Any]]) -> None:
        if observers.diverged(entry):
            return  # The run ends as diverged, which the study is told (counted, ranked last).
        self._report(entry)
        self._prune_if_told(history)

    def _report(self, entry: dict[str, Any]) -> None:
        if entry["epoch"] not in self.trial.storage.get_trial(self.trial._trial_id).intermediate_values:
            self.trial.report(entry["val_accuracy"], entry["epoch"])

    def _prune_if_told(self, history: Sequence[dict[str, Any]]) -> None:
        entry = history[-1]
        if self._last_epoch(history):
            return
        if self.trial.should_prune():
            self.pruned_at = entry["epoch"]
            raise Pruned(f"pruned after epoch {entry['epoch']}: val_accuracy {entry['val_accuracy']:.4f}")

    def _last_epoch(self, history: Sequence[dict[str, Any]]) -> bool:
        """Whether the run trains no epoch after `history`: its last by train.epochs, or by early
        stopping (train.patience_ran_out's rule: the best epoch is `patience` or more epochs old)."""
        if self.epochs is not None and history[-1]["epoch"] >= self.epochs:
            return True
        if self.patience is None:
            return False
        accuracies = [entry["val_accuracy"] for entry in history]
        return len(history) - (accuracies.index(max(accuracies)) + 1) >= self.patience


@contextlib.contextmanager
def _asking(runs_dir: Path, study_name: str) -> Iterator[None]:
    """One process at a time counts and asks trials of a study on this machine."""
    path = runs_dir / f".tune-{hashlib.sha256(study_name.encode()).hexdigest()[:16]}.lock"
    with open(path, "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _now() -> float:
    """Seconds since 1970, as heartbeats are written and read (a test moves it)."""
    return time.time()


def _pause(seconds: float) -> None:
    """Wait between looks at trials that other processes train (a test moves the clock instead)."""
    time.sleep(seconds)


def _counted(trials: list[Any]) -> list[Any]:
    return [trial for trial in trials if trial.state.name in COUNTED]


def _epochs_held(trial: Any, settings: Settings) -> int:
    """The budget's epochs a counted trial holds: what it trained once ended, its allotment while it
    runs, and a full trial's while its asker (on another machine) has not yet written its allotment."""
    allotted = trial.user_attrs.get(ALLOTTED, settings.trial_epochs)
    return allotted if trial.state.name == "RUNNING" else trial.user_attrs.get(SPENT, allotted)


def _epochs_left(settings: Settings, trials: list[Any], before: Optional[int] = None) -> int:
    """The budget less the epochs counted trials hold (only those numbered below `before`, when given)."""
    held = [trial for trial in _counted(trials) if before is None or trial.number < before]
    return settings.budget - sum(_epochs_held(trial, settings) for trial in held)


def _last_heard(trial: Any) -> float:
    beat = trial.user_attrs.get(HEARTBEAT)
    return float(beat) if isinstance(beat, (int, float)) else trial.datetime_start.timestamp()


def _owner_text(trial: Any) -> str:
    owner = trial.user_attrs.get(OWNER)
    if isinstance(owner, dict):
        return f"pid {owner.get('pid')} on {owner.get('host')}"
    return "an unknown process"


def _taken_over_because(trial: Any) -> Optional[str]:
    """Why a running trial may be taken over by this process (its owner stopped, died or went
    silent), or None while its owner may still be training it."""
    if trial.state.name != "RUNNING":
        return None
    owner = trial.user_attrs.get(OWNER)
    if owner == RELEASED or results.process_gone(owner):
        return "its process stopped; finishing it"
    silent = _now() - _last_heard(trial)
    if silent > SILENT_SECONDS:
        return f"{_owner_text(trial)} has not been heard of for {silent:.0f} s; finishing it"
    return None


def _own(trial: Any) -> None:
    trial.set_user_attr(OWNER, results.this_process())
    trial.set_user_attr(HEARTBEAT, _now())


def next_trial(candidate: Candidate, settings: Settings, runs_dir: Path) -> Optional[tuple[Any, Optional[str]]]:
    """The trial this process trains next for `candidate`: (trial, why it was taken over, or None for
    a new one), or None if its budget is used up (or all that is left is held by other processes).

    A running trial whose process died, stopped or went silent is taken over and finished;
    otherwise a new trial is asked while epochs of the budget are left. It is allotted a full
    trial's epochs, or the budget's last ones, counting the epochs held by the trials numbered
    before it. Asking happens under a lock per study on this machine; processes on other
    machines sharing `--storage` may ask at the same moment, so a trial that finds no epochs left
    once asked is dropped (failed, marked over budget).
    """
    import optuna

    study = candidate.study
    with _asking(runs_dir, candidate.name):
        trials = study.get_trials(deepcopy=False)
        for trial in trials:
            why = _taken_over_because(trial)
            if why is None:
                continue
            taken = optuna.trial.Trial(study, trial._trial_id)
            _own(taken)
            if ALLOTTED not in trial.user_attrs:  # Its asker died before writing its share.
                if not _allot(taken, settings, study.get_trials(deepcopy=False)):
                    continue
            return taken, why
        if _epochs_left(settings, trials) <= 0:
            return None
        # Seeded per trial number, so a resumed study samples what an uninterrupted one would.
        seed = int(hashlib.sha256(f"{settings.trial_seed}/{candidate.name}/{len(trials)}".encode()).hexdigest()[:8], 16)
        if settings.sampler == "random":
            study.sampler, sampled = optuna.samplers.RandomSampler(seed=seed), "random"
        else:
            study.sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=settings.random_trials)
            # TPE draws at random until random_trials trials have ended (pruned ones included).
            finished = sum(1 for trial in trials if trial.state.name in ("COMPLETE", "PRUNED"))
            sampled = "random" if finished < settings.random_trials else "tpe"
        trial = study.ask({dimension.key: dimension.distribution() for dimension in settings.space})
        _own(trial)
        trial.set_user_attr(SAMPLED, sampled)
        if not _allot(trial, settings, study.get_trials(deepcopy=False)):
            return None
    return trial, None


def _allot(trial: Any, settings: Settings, trials: list[Any]) -> bool:
    """Give `trial` a full trial's epochs or the budget's last ones; False (and the trial dropped,
    uncounted) when the trials numbered before it hold the whole budget."""
    left = _epochs_left(settings, trials, before=trial.number)
    if left <= 0:
        trial.set_user_attr(OVER_BUDGET, True)
        trial.study.tell(trial, state=_state("FAIL"))
        return False
    trial.set_user_attr(ALLOTTED, min(settings.trial_epochs, left))
    return True


def running_elsewhere(candidate: Candidate) -> list[Any]:
    """Trials of `candidate` that other processes are training (and that none may take over yet)."""
    return [
        trial
        for trial in candidate.study.get_trials(deepcopy=False)
        if trial.state.name == "RUNNING" and _taken_over_because(trial) is None
    ]


def waiting_line(candidate: Candidate, trial: Any, waited: float) -> str:
    """What a process with nothing left to ask says about a trial it waits for."""
    return (
        f"waiting for {candidate.name}-t{trial.number:03d}, which {_owner_text(trial)} trains: last heard of"
        f" {_now() - _last_heard(trial):.0f} s ago, waited for {waited:.0f} s; it is taken over here once it is silent for"
        f" {SILENT_SECONDS:.0f} s, or at once when its process stops (Ctrl-C there releases it)"
    )


@dataclass(frozen=True)
class Spending:
    """What a candidate's ended trials spent of its budget."""

    epochs: int
    trials: int
    pruned: int

    def __str__(self) -> str:
        return f"{self.epochs} epochs in {self.trials} trial{'s' if self.trials != 1 else ''}, {self.pruned} pruned"


def spending(candidate: Candidate, settings: Settings) -> Spending:
    ended = _finished(candidate)
    return Spending(
        sum(_epochs_held(trial, settings) for trial in ended),
        len(ended),
        sum(1 for trial in ended if trial.state.name == "PRUNED"),
    )


def tune(
    settings: Settings,
    candidates: list[Candidate],
    data_dir: Optional[str],
    runs_dir: Path,
    command: str,
    echo: Callable[[str], None],
    storage_label: str = "the study storage",
    jobs: int = 1,
    cluster: Optional["ClusterSettings"] = None,
    gpus_per_run: Optional[float] = None,
) -> list[RunRecord]:
    """Use up every candidate's budget of epochs (round robin, a trial each in turn), then train
    each winner over the fresh seeds; returns the final runs' records.

    Trials and final runs train on the executor `run` uses: here, in `jobs` processes, or as
    tasks of a Ray `cluster`. Trials train `executor.room()` at a time; a trial is asked only
    when there is room for it, so with room for one the studies sample exactly as they would
    trial by trial.
    """
    from rnnbench import executor

    results.check_writable(runs_dir)
    echo(
        f"tuning {len(candidates)} candidates ({', '.join(candidate.name for candidate in candidates)}), {settings.budget} epochs"
        f" each ({settings.trials} trials of {settings.trial_epochs}; a pruned trial's unused epochs fund more trials),"
        f" pruner: {pruner_description(settings)}, sampler: {sampler_description(settings)}; studies in {storage_label}"
    )
    with executor.attached(cluster):
        first_seen: dict[int, float] = {}
        said: tuple[frozenset[int], float] = (frozenset(), 0.0)
        while _use_budgets(settings, candidates, data_dir, runs_dir, command, echo, jobs, cluster, gpus_per_run):
            waiting = [(candidate, trial) for candidate in candidates for trial in running_elsewhere(candidate)]
            if not waiting:
                # Trials of this process ended with epochs to spare (pruned while others still
                # held the rest of the budget): those epochs fund trials asked now.
                continue
            now = _now()
            ids = frozenset(trial._trial_id for _, trial in waiting)
            if ids != said[0] or now - said[1] >= WAIT_REPORT_SECONDS:
                for candidate, trial in waiting:
                    echo(waiting_line(candidate, trial, now - first_seen.setdefault(trial._trial_id, now)))
                said = (ids, now)
            _pause(WAIT_SECONDS)

        finals = []
        for candidate in candidates:
            best = best_trial(candidate)
            spent = spending(candidate, settings)
            if best is None:
                raise TuneError(
                    f"{candidate.name}: none of its trials completed ({spent}; each was pruned or diverged); widen tune.space or turn the pruner off"
                )
            echo(
                f"[{candidate.name}] {spent}; best: t{best.number:03d}, val_accuracy {best.value:.4f}, {settings_text(best.params)}"
            )
            finals.extend(final_configs(candidate, settings, best.params))
        echo(f"training each winner over seeds {', '.join(map(str, settings.seeds))}: {len(finals)} runs")
        records = executor.run_all(
            finals, data_dir, runs_dir, command, echo=echo, jobs=jobs, cluster=cluster, gpus_per_run=gpus_per_run
        )
    # As the index holds them (with their run ids), for the report.
    trained = {Path(record.run_dir).name for record in records if record.run_dir is not None}
    return [record for record in results.read_records(runs_dir, statuses=None) if record.run_id in trained]


def _use_budgets(
    settings: Settings,
    candidates: list[Candidate],
    data_dir: Optional[str],
    runs_dir: Path,
    command: str,
    echo: Callable[[str], None],
    jobs: int,
    cluster: Optional["ClusterSettings"],
    gpus_per_run: Optional[float],
) -> bool:
    """Train trials until no candidate may ask another. False when every budget was already used
    up; True otherwise, since trials that ended pruned, here or in other processes, may have left
    epochs to fund more."""
    from rnnbench import executor

    # At least this many trials are left to train (more if some are pruned).
    left = sum(
        -(-max(0, settings.budget - spending(candidate, settings).epochs) // settings.trial_epochs)
        for candidate in candidates
    )
    if not left:
        return False
    in_flight: dict[int, tuple[Candidate, Any]] = {}
    failed: list[str] = []

    def fail(item: executor.Pending) -> None:
        candidate, trial = in_flight.pop(item.position)
        candidate.study.tell(trial, state=_state("FAIL"))
        failed.append(item.label)

    sweep = executor.Sweep(data_dir, runs_dir, command, echo, reuse=True, resume=True, announce=True)
    asked = _asked_trials(candidates, settings, runs_dir, echo, in_flight)
    try:
        with (
            _beating(in_flight),
            executor.executor_for(sweep, left, candidates[0].config.backend, jobs, cluster, gpus_per_run) as where,
            contextlib.closing(executor.train_pending(asked, where, sweep, fail)) as finishing,
        ):
            for item, outcome in finishing:
                candidate, trial = in_flight.pop(item.position)
                _tell(candidate, settings, trial, outcome.record, runs_dir, item.label, echo, outcome.node)
    except Exception as error:
        if failed and isinstance(error, TuneError):
            raise TuneError(f"{failed[0]}: {error}") from None  # Retrying would not help: it says what would.
        if failed:
            raise TuneError(
                f"{failed[0]} failed: {_first_line(error)}; run the same command again to retry it"
            ) from None
        raise
    finally:
        # Trials stopped part-way (Ctrl-C, another trial's error): the next invocation finishes
        # each from its run's last epoch, whatever process it is.
        for _, trial in in_flight.values():
            trial.set_user_attr(OWNER, RELEASED)
    return True


@contextlib.contextmanager
def _beating(in_flight: dict[int, tuple[Candidate, Any]]) -> Iterator[None]:
    """While the block runs, say every HEARTBEAT_SECONDS that this process still trains the trials
    in `in_flight`, so that a process that outlives it never waits for them for ever."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_SECONDS):
            for _, trial in list(in_flight.copy().values()):
                # A trial told a moment ago, or a storage busy for a while: the next beat tries again.
                with contextlib.suppress(Exception):
                    trial.storage.set_trial_user_attr(trial._trial_id, HEARTBEAT, _now())

    beating = threading.Thread(target=beat, name="rnnbench-tune-heartbeat", daemon=True)
    beating.start()
    try:
        yield
    finally:
        stop.set()
        beating.join()


def _state(name: str) -> Any:
    import optuna

    return optuna.trial.TrialState[name]


def _finished(candidate: Candidate) -> list[Any]:
    return [trial for trial in candidate.study.get_trials(deepcopy=False) if trial.state.name in ("COMPLETE", "PRUNED")]


def _epochs_text(allotted: int, settings: Settings) -> str:
    if allotted < settings.trial_epochs:
        return f"{allotted} epoch{'s' if allotted != 1 else ''}, the budget's last (a full trial trains {settings.trial_epochs})"
    return f"{allotted} epoch{'s' if allotted != 1 else ''}"


def _asked_trials(
    candidates: list[Candidate],
    settings: Settings,
    runs_dir: Path,
    echo: Callable[[str], None],
    in_flight: dict[int, tuple[Candidate, Any]],
) -> Iterator[Any]:
    """The trials to train, asked one at a time when the executor has room, round robin over the
    candidates; each is put in `in_flight` under its position as it is handed out."""
    from rnnbench import executor

    positions = itertools.count(1)
    while True:
        asked_any = False
        for candidate in candidates:
            asked = next_trial(candidate, settings, runs_dir)
            if asked is None:
                continue
            asked_any = True
            trial, taken_over = asked
            allotted = trial.user_attrs[ALLOTTED]
            config = trial_config(
                candidate,
                settings,
                trial.params,
                trial.number,
                epochs=allotted if allotted < settings.trial_epochs else None,
            )
            label = f"[{candidate.name}] trial {trial.number + 1}"
            echo(
                f"{label}: {settings_text(trial.params)}; {_epochs_text(allotted, settings)}{f' ({taken_over})' if taken_over else ''}"
            )
            pruned = _pruned_run(runs_dir, config)
            if pruned is not None:
                # Pruned before its process died, and not yet told: the same run would be pruned again.
                trial.set_user_attr(RUN_ID, pruned.run_id)
                _tell(candidate, settings, trial, pruned, runs_dir, label, echo)
                continue
            position = next(positions)
            in_flight[position] = (candidate, trial)
            yield executor.Pending(
                position,
                label,
                config,
                TrialWatch(candidate.storage_url, candidate.name, trial._trial_id, _pruner(settings)),
            )
        if not asked_any:
            return


def _tell(
    candidate: Candidate,
    settings: Settings,
    trial: Any,
    record: RunRecord,
    runs_dir: Path,
    label: str,
    echo: Callable[[str], None],
    node: Optional[str] = None,
) -> None:
    """Tell the study how the trial's run ended and the epochs it spent, and say it with the best trial so far."""
    study = candidate.study
    status = record.status
    result = record.result or RunResult()
    trial.set_user_attr(STATUS, status)
    trial.set_user_attr(SPENT, int(result.epochs_run))
    if status == "completed":
        # A run reused from an earlier invocation was never watched: its epochs are reported now.
        observer = TrialObserver(trial)
        for entry in _history(runs_dir, record):
            observer._report(entry)
        if RUN_ID not in trial.user_attrs:
            trial.set_user_attr(RUN_ID, _run_id(record))
        study.tell(trial, result.best_val_accuracy)
    elif status == "pruned":
        study.tell(trial, state=_state("PRUNED"))
    else:
        # Diverged: a real outcome of these settings, counted and ranked last.
        study.tell(trial, 0.0)
    best = best_trial(candidate)
    outcome = (
        f"val_accuracy {result.best_val_accuracy:.4f}"
        if status == "completed"
        else record.error or "pruned"
        if status == "pruned"
        else f"{status}, counted as 0"
    )
    best_text = f"best so far t{best.number:03d} {best.value:.4f}" if best is not None else "none completed yet"
    spent = spending(candidate, settings).epochs
    echo(
        f"{label}: {outcome}; {best_text}; {spent} of {settings.budget} epochs spent{f' (on node {node})' if node else ''}"
    )


@dataclass(frozen=True)
class TrialWatch:
    """A trial as the worker training its run reaches it (`worker.RunRequest.watch`): through the
    study's storage, which that worker must reach too (a SQLite file on a disk it sees, or a
    database server)."""

    storage_url: str
    study_name: str
    trial_id: int
    pruner: Any

    def observer(self) -> "TrialObserver":
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        if self.storage_url.startswith("sqlite:///") and not Path(self.storage_url[len("sqlite:///") :]).is_file():
            raise TuneError(
                f"the study storage {storage_label(self.storage_url)} is not on node {socket.gethostname()}: trials on a"
                " cluster report their epochs to it, so put the runs folder on storage every node sees, or give"
                " --storage a database server every node reaches (postgresql://, mysql://)"
            )
        study = optuna.load_study(study_name=self.study_name, storage=_storage(self.storage_url), pruner=self.pruner)
        return TrialObserver(optuna.trial.Trial(study, self.trial_id))


def _pruned_run(runs_dir: Path, config: Config) -> Optional[RunRecord]:
    fingerprint = config.fingerprint()
    from rnnbench.config import recorded_config

    for record in reversed(results.read_records(runs_dir, ("pruned",))):
        try:
            if recorded_config(record.config).fingerprint() == fingerprint:
                return record
        except ValueError:
            continue
    return None


def _run_id(record: RunRecord) -> str:
    """The run's folder name: its run id as the index holds it, or, in a record a worker sent
    back (not read from the index), the last part of its run_dir."""
    return record.run_id or Path(record.run_dir or "").name


def _history(runs_dir: Path, record: RunRecord) -> list[dict[str, Any]]:
    from rnnbench.plots import read_history

    return read_history(runs_dir, record.changed(run_id=_run_id(record)))


def best_trial(candidate: Candidate) -> Optional[Any]:
    """The completed trial with the highest value; of equal values, the first."""
    completed = [
        trial
        for trial in candidate.study.get_trials(deepcopy=False)
        if trial.state.name == "COMPLETE" and trial.user_attrs.get(STATUS) == "completed"
    ]
    if not completed:
        return None
    return max(completed, key=lambda trial: (trial.value, -trial.number))


def settings_text(params: dict[str, Any]) -> str:
    """`key=value, ...` with floats to 3 significant digits, as progress lines and the report show settings."""
    return ", ".join(f"{key}={value_text(value)}" for key, value in params.items())


def value_text(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
