"""The runner: one run of one resolved config, with every side effect (seeding, data, training, files).

    config -> EncodedData -> model -> epochs (history, checkpoint) -> evaluation -> record

Which run a config gets (reused, resumed, new) is decided before this, under the run's lock
(rnnbench.claims); where it trains, by an executor (rnnbench.executor). Import this module only
after `backend.select_backend`, since it imports Keras.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import keras
import numpy as np

from rnnbench import (
    backend,
    embeddings,
    kernels,
    lm,
    metrics,
    model as model_factory,
    observers as run_observers,
    results,
)
from rnnbench.config import Config, TrainConfig
from rnnbench.encoded import EncodedData
from rnnbench.errors import RunInterrupted, RunStopped
from rnnbench.mlflow_tracking import mlflow_observers
from rnnbench.record import RunRecord, RunResult
from rnnbench.tensorboard_events import TensorBoardEvents

OPTIMIZERS = {
    "adam": keras.optimizers.Adam,
    "adamw": keras.optimizers.AdamW,
    "rmsprop": keras.optimizers.RMSprop,
    "sgd": keras.optimizers.SGD,
}
# Prediction batches only change speed, never the result, so they can be large.
EVALUATION_BATCH_SIZE = 512
# How a run's status goes into the index: (run id, name, status, record). By default straight into
# the runs folder's index; a cluster worker's writes nothing, since its driver indexes the run.
Index = Callable[[str, str, str, dict[str, Any]], None]


class Checkpoint:
    """What a run has done so far (its epochs, its best one and that one's weights, its resumes);
    saved after every epoch with the model's and optimizer's state, so an interrupted run resumes from it."""

    def __init__(self) -> None:
        self.history: list[dict[str, Any]] = []
        self.best: Optional[dict[str, Any]] = None
        self.best_weights: Optional[list[np.ndarray]] = None
        self.resumed: list[dict[str, Any]] = []

    def save(self, run: results.RunDirectory, network: keras.Model) -> None:
        """One file with everything training needs to go on: written whole or not at all."""
        state = {"history": self.history, "best": self.best, "resumed": self.resumed}
        arrays = {"state": np.frombuffer(json.dumps(state).encode("utf-8"), dtype=np.uint8)}
        arrays.update(model_factory.training_state(network))
        arrays.update({f"best_{index}": np.asarray(value) for index, value in enumerate(self.best_weights or [])})
        run.write_checkpoint(arrays)

    @classmethod
    def load(cls, run: results.RunDirectory, network: keras.Model) -> "Checkpoint":
        """Restore `run`'s checkpoint into `network` (compiled), and return what the run had done."""
        arrays = run.read_checkpoint()
        checkpoint = cls()
        state = json.loads(arrays["state"].tobytes().decode("utf-8"))
        checkpoint.history, checkpoint.best, checkpoint.resumed = state["history"], state["best"], state["resumed"]

        if not model_factory.restore_training_state(network, arrays):
            raise results.ResultsError(
                f"{run.path / results.CHECKPOINT_FILE}: does not match this model; start afresh with --no-resume"
            )
        best = [arrays[f"best_{index}"] for index in range(sum(key.startswith("best_") for key in arrays))]
        checkpoint.best_weights = best or None
        return checkpoint


def learning_rate_for_epoch(settings: TrainConfig, steps_per_epoch: int, history: list[dict[str, Any]]) -> float:
    """The learning rate that the epoch after `history` starts with, from the config and the
    finished epochs alone: no callback keeps state, so a resumed run goes on with the same rates."""
    if settings.lr_schedule == "cosine":
        return cosine_learning_rate(settings, len(history) * steps_per_epoch, settings.epochs * steps_per_epoch)
    if settings.lr_schedule == "reduce_on_plateau":
        return plateau_learning_rate(settings, [entry["val_loss"] for entry in history])
    return settings.learning_rate


def cosine_learning_rate(settings: TrainConfig, step: int, total_steps: int) -> float:
    """Keras' CosineDecay at `step`: learning_rate * ((1 - a) * (1 + cos(pi * step / total)) / 2 + a),
    with a = min_learning_rate / learning_rate, so that it ends at min_learning_rate."""
    floor_share = settings.min_learning_rate / settings.learning_rate
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))
    return settings.learning_rate * ((1.0 - floor_share) * cosine + floor_share)


def plateau_learning_rate(settings: TrainConfig, validation_losses: list[float]) -> float:
    """Keras' ReduceLROnPlateau replayed over the epochs so far (no min_delta, no cooldown): each
    time validation loss has not fallen below its lowest for lr_patience epochs, the rate is
    multiplied by lr_factor, never below min_learning_rate, and the count starts again."""
    rate, lowest, waited = settings.learning_rate, math.inf, 0
    for loss in validation_losses:
        if loss < lowest:
            lowest, waited = loss, 0
            continue
        waited += 1
        if waited >= settings.lr_patience:
            rate, waited = max(rate * settings.lr_factor, settings.min_learning_rate), 0
    return rate


def patience_ran_out(history: list[dict[str, Any]], patience: Optional[int]) -> bool:
    """Whether early stopping ends training after `history`: its best validation accuracy (the
    first of equal maxima, as for the best epoch) is `patience` or more epochs old."""
    if patience is None or not history:
        return False
    accuracies = [entry["val_accuracy"] for entry in history]
    return len(history) - (accuracies.index(max(accuracies)) + 1) >= patience


def _steps_per_epoch(config: Config, prepared: EncodedData) -> int:
    # `fit` makes a last, smaller batch of what is left over.
    return math.ceil(len(prepared.y_train) / config.train.batch_size)


class _ProgressBar(keras.callbacks.ProgbarLogger):
    """Keras' progress bar without its "Epoch k/k" line, which would be wrong here: each `fit`
    trains one epoch of several, and the line printed after the bar names the epoch."""

    def set_params(self, params: dict[str, Any]) -> None:
        super().set_params({**params, "epochs": 1})


def _train(
    network: keras.Model,
    prepared: EncodedData,
    config: Config,
    run: results.RunDirectory,
    checkpoint: Checkpoint,
    echo: Callable[[str], None],
    progress_bar: bool,
    observers: Sequence[run_observers.RunObserver] = (),
) -> bool:
    """Train the epochs that `checkpoint` has not done yet; False if the loss stopped being finite."""
    epochs = config.train.epochs
    steps_per_epoch = _steps_per_epoch(config, prepared)
    for epoch in range(len(checkpoint.history), epochs):
        # Checked before each epoch rather than after one, so that a run resumed after its last
        # epoch stops there too.
        if patience_ran_out(checkpoint.history, config.train.early_stopping_patience):
            best = checkpoint.best
            echo(
                f"stopping early after epoch {epoch} of {epochs}: val_accuracy has not improved on epoch {best['epoch']}'s"
                f" {best['val_accuracy']:.4f} for {epoch - best['epoch']} epochs (train.early_stopping_patience)"
            )
            break
        learning_rate = learning_rate_for_epoch(config.train, steps_per_epoch, checkpoint.history)
        if config.train.lr_schedule == "reduce_on_plateau":
            # Set before every epoch, so the optimizer's rate is the history's even after a resume.
            network.optimizer.learning_rate = learning_rate
        # rnnbench shuffles, not Keras: each epoch's order follows from the seed and the epoch
        # alone, so a resumed run sees the same batches as an uninterrupted one.
        order = np.random.default_rng([config.train.seed, epoch]).permutation(len(prepared.y_train))
        # Microseconds: an epoch can take less than a second.
        started, started_at = time.perf_counter(), results.now("microseconds")
        fitted = network.fit(
            prepared.x_train[order],
            prepared.y_train[order],
            validation_data=(prepared.x_validation, prepared.y_validation),
            batch_size=config.train.batch_size,
            # Validation only predicts, so its batch size changes speed, not the result.
            validation_batch_size=EVALUATION_BATCH_SIZE,
            initial_epoch=epoch,
            epochs=epoch + 1,
            shuffle=False,
            callbacks=[_ProgressBar()] if progress_bar else [],
            verbose=1 if progress_bar else 0,
        )
        entry = {"epoch": epoch + 1, **{key: float(values[-1]) for key, values in fitted.history.items()}}
        # The rate the epoch started with (cosine lowers it at every step within the epoch).
        entry["learning_rate"] = learning_rate
        entry["seconds"] = time.perf_counter() - started
        # Wall-clock times, so that epochs line up with other runs and the machine's own logs.
        entry["started_at"], entry["ended_at"] = started_at, results.now("microseconds")
        checkpoint.history.append(entry)
        if run_observers.diverged(entry):
            run.write_history(checkpoint.history)
            echo(f"epoch {epoch + 1}/{epochs}: the loss is not finite; stopping (recorded as diverged)")
            for observer in observers:
                observer.epoch_ended(entry, checkpoint.history)
            return False
        # Best is the maximum over epochs of the validation accuracy; ties keep the earlier epoch.
        improved = checkpoint.best is None or entry["val_accuracy"] > checkpoint.best["val_accuracy"]
        if improved:
            checkpoint.best = entry
            checkpoint.best_weights = network.get_weights()
        run.write_history(checkpoint.history)
        checkpoint.save(run, network)
        echo(
            f"epoch {epoch + 1}/{epochs}: loss {entry['loss']:.4f}, accuracy {entry['accuracy']:.4f},"
            f" val_loss {entry['val_loss']:.4f}, val_accuracy {entry['val_accuracy']:.4f}"
            f"{' (best so far)' if improved else ''}"
            f"{'' if config.train.lr_schedule == 'constant' else f', learning rate {learning_rate:.3g}'}, {entry['seconds']:.1f} s"
        )
        for observer in observers:
            observer.epoch_ended(entry, checkpoint.history)
    return True


def run_experiment(
    config: Config,
    data_dir: Optional[str],
    runs_dir: Path,
    command: str,
    echo: Callable[[str], None] = print,
    resume: Optional[results.RunDirectory] = None,
    progress_bar: Optional[bool] = None,
    observers: Sequence[run_observers.RunObserver] = (),
    run_id: Optional[str] = None,
    index: Optional[Index] = None,
    prepared: Optional[EncodedData] = None,
) -> RunRecord:
    """Train one model for `config` and record it under `runs_dir`; returns the run's record.

    With `resume` (an unfinished run of the same config, whose lock the caller holds), training
    goes on from that run's last finished epoch, in its directory. Keras' progress bar is shown if
    `progress_bar`, by default when standard output is a terminal; a line per epoch always is.
    Ctrl-C after the run's folder exists records the run as interrupted and raises
    `RunInterrupted` (a KeyboardInterrupt) naming that folder. `observers`, after those every run
    gets (`trackers`), are told of the run's opening, epochs and end; one that raises `RunStopped`
    ends the run with that status (pruned), and its record is returned as a diverged run's is. A
    new run's folder is named `run_id` when a driver chose it; `index` replaces runs_dir's index
    (see `Index`). `prepared` is the run's data when a driver prepared it (`EncodedData.key` equal
    to the config's).
    """
    index = index or functools.partial(results.index_run, runs_dir)
    echo(f"[{config.name}] {config.model.cell}, backend {config.backend}")
    run_started = time.perf_counter()
    if prepared is None:
        prepared = EncodedData.prepare(config, data_dir, echo)
    else:
        echo(
            f"{prepared.summary['dataset']}: data prepared once by the driver ({prepared.summary['train_rows']:,} training rows)"
        )
    pretrained = _pretrained_vectors(config, prepared, data_dir, echo)
    network = _compiled_model(config, prepared, pretrained)
    encoder = _pretrained_encoder(config, network, prepared, data_dir, echo)
    device, choices = _plan_kernels(config, echo)
    record = _new_record(config, command, network, prepared, pretrained, device, choices, echo)
    if encoder is not None:
        record = record.changed(encoder=encoder)
    run, checkpoint, record = _open_run(runs_dir, config, record, network, prepared, resume, echo, run_id, index)
    observers = [*trackers(), *observers]

    try:
        with _recorded_if_stopped(index, run, record, checkpoint, observers):
            for observer in observers:
                observer.opened(run.path, record, checkpoint.history)
            started = time.perf_counter()
            bar = sys.stdout.isatty() if progress_bar is None else progress_bar
            finite = _train(network, prepared, config, run, checkpoint, echo, bar, observers)
            train_seconds = time.perf_counter() - started
            scores = _evaluate(network, prepared, run, checkpoint) if finite and checkpoint.best is not None else None
    except RunStopped as stopped:
        return _stopped(index, run, record, checkpoint, stopped, observers)
    if scores is None:
        return _finish(index, run, record, "diverged", {"epochs_run": len(checkpoint.history)}, observers)

    result = _result(
        checkpoint, scores, config.train.epochs, train_seconds, wall_seconds=time.perf_counter() - run_started
    )
    collapsed = _collapsed_warning(scores["val"]["confusion"], prepared.class_names)
    if collapsed is not None:
        record = _warned(record, [collapsed], echo)
    result["collapsed"] = collapsed is not None
    return _finish(index, run, record, "completed", result, observers)


def trackers() -> list[run_observers.RunObserver]:
    """The observers every run gets, whoever started it (run, sweep, tune, a worker process):
    mirrors of the run folder in TensorBoard event files and, when a tracking URI is set, MLflow."""
    return [TensorBoardEvents(), *mlflow_observers()]


def _pretrained_vectors(
    config: Config, prepared: EncodedData, data_dir: Optional[str], echo: Callable[[str], None]
) -> Optional[embeddings.PretrainedEmbedding]:
    if config.model.pretrained_embedding is None:
        return None
    if config.model.pretrained_embedding in embeddings.TRAINED_HERE:
        pretrained = embeddings.train_vectors(
            config.model.pretrained_embedding,
            prepared.corpus,
            prepared.training_rows,
            prepared.vocabulary,
            config.data.num_words,
            config.model.embedding_dim,
            config.train.seed,
            echo,
            None if prepared.unlabeled is None else prepared.unlabeled.corpus,
        )
    else:
        pretrained = embeddings.load_pretrained(
            config.model.pretrained_embedding,
            prepared.vocabulary,
            config.data.num_words,
            config.model.embedding_dim,
            config.train.seed,
            data_dir,
        )
    echo(
        f"pre-trained vectors {pretrained.source}: {pretrained.found:,} of {len(prepared.vocabulary.words):,}"
        f" vocabulary words found ({pretrained.coverage:.1%}); {'trainable' if config.model.embedding_trainable else 'frozen'}"
    )
    return pretrained


def _pretrained_encoder(
    config: Config, network: keras.Model, prepared: EncodedData, data_dir: Optional[str], echo: Callable[[str], None]
) -> Optional[dict[str, Any]]:
    """model.pretrained_encoder lm: start `network`'s encoder from the language model pretrained
    on data.unlabeled's texts (pretrained now, or read from the cache); what the record says of it."""
    if config.model.pretrained_encoder is None:
        return None
    started = time.perf_counter()
    encoder = lm.pretrained_encoder(config, data_dir, echo)
    words = len(prepared.vocabulary.words)
    found = encoder.apply(network, prepared.vocabulary, model_factory.recurrent_layers(network, config))
    summary = encoder.summary
    echo(
        f"encoder from a language model ({'read from the cache' if summary['read_from_cache'] else 'pretrained now'},"
        f" {summary['pretraining_seconds'] / 60:.1f} min of pretraining, held-out perplexity"
        f" {summary['held_out_perplexity']:,.1f}): {found:,} of {words:,} vocabulary words found ({found / max(words, 1):.1%})"
        f" in {time.perf_counter() - started:.1f} s"
    )
    return {**summary, "words_found": found, "coverage": found / max(words, 1)}


def _compiled_model(
    config: Config, prepared: EncodedData, pretrained: Optional[embeddings.PretrainedEmbedding]
) -> keras.Model:
    # Seeded just before the weights are drawn, so that the same seed gives the same model.
    backend.set_random_seed(config.train.seed)
    network = model_factory.build_model(
        config,
        config.data.num_words,
        prepared.num_classes,
        None if pretrained is None else pretrained.matrix,
        token_weights=prepared.token_weights,
    )
    network.compile(
        optimizer=_optimizer(config.train, _steps_per_epoch(config, prepared)),
        loss=model_factory.loss_for(prepared.num_classes),
        metrics=["accuracy"],
    )
    return network


def _optimizer(settings: TrainConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """The optimizer of train.optimizer, with its learning rate schedule and gradient clipping."""
    learning_rate: Any = settings.learning_rate
    if settings.lr_schedule == "cosine":
        # Follows the optimizer's step count, which the checkpoint restores, so a resumed run
        # goes on along the same curve.
        learning_rate = keras.optimizers.schedules.CosineDecay(
            settings.learning_rate,
            settings.epochs * steps_per_epoch,
            alpha=settings.min_learning_rate / settings.learning_rate,
        )
    return OPTIMIZERS[settings.optimizer](learning_rate=learning_rate, clipnorm=settings.clipnorm)


def _plan_kernels(config: Config, echo: Callable[[str], None]) -> tuple[str, list[kernels.KernelChoice]]:
    """The device, and the kernel each recurrent layer runs on it (one line each)."""
    device = backend.device_description()
    on_gpu = device.startswith("GPU")
    choices = kernels.plan(config, keras.backend.backend(), on_gpu)
    for choice in choices:
        echo(f"{choice.layer}: {choice.kernel}, because {choice.reason}")
    if on_gpu:
        # Speed advice, not a doubt about the result, so it is not one of the record's warnings.
        for warning in kernels.forfeited(config, keras.backend.backend()):
            echo(f"warning: {warning}")
    return device, choices


def _new_record(
    config: Config,
    command: str,
    network: keras.Model,
    prepared: EncodedData,
    pretrained: Optional[embeddings.PretrainedEmbedding],
    device: str,
    choices: list[kernels.KernelChoice],
    echo: Callable[[str], None],
) -> RunRecord:
    """What a run is, before it trains: config, environment, model size, data, and warnings about the data."""
    embedding = (
        {}
        if pretrained is None
        else {
            "embedding": {
                "source": pretrained.source,
                "found": pretrained.found,
                "coverage": pretrained.coverage,
                "trainable": config.model.embedding_trainable,
            }
        }
    )
    # Made from JSON once, in the key order that config.json, result.json and the index keep.
    record = RunRecord.from_json(
        {
            "name": config.name,
            "config": config.to_dict(),
            "fingerprint": config.fingerprint(),
            "group": config.group_fingerprint(),
            "command": command,
            "backend": keras.backend.backend(),
            "backend_choice": backend.choice_reason(config),
            "device": device,
            "versions": backend.versions(),
            "parameters": int(network.count_params()),
            "kernels": [dataclasses.asdict(choice) for choice in choices],
            "data": prepared.summary,
            # One line each, about what could make the result mean less than it seems.
            "warnings": [],
            **embedding,
        }
    )
    return _warned(record, note_warnings(prepared.notes), echo)


def _warned(record: RunRecord, lines: list[str], echo: Callable[[str], None]) -> RunRecord:
    """`record` with `lines` added to its warnings, each said as it is added."""
    for line in lines:
        echo(f"warning: {line}")
    return record.changed(warnings=(*record.warnings, *lines))


def _merged_labels(merged: dict[str, list[str]]) -> str:
    sets = "; ".join(f"{', '.join(map(repr, spellings))} as {name!r}" for name, spellings in merged.items())
    return f"label spellings merged into one class each: {sets} (check that each set means one class)"


# Data notes (`TextDataset.notes`) that deserve a warning, and how each is said in one line.
NOTE_WARNINGS: dict[str, Callable[[Any], str]] = {
    "merged_labels": _merged_labels,
}


def note_warnings(notes: dict[str, Any]) -> list[str]:
    """A warning line for each note in `notes` that deserves one (see NOTE_WARNINGS)."""
    return [describe(notes[key]) for key, describe in NOTE_WARNINGS.items() if notes.get(key)]


def _collapsed_warning(confusion: list[list[int]], class_names: tuple[str, ...]) -> Optional[str]:
    """The warning for validation rows of `confusion` (rows true classes, columns predicted) that
    are all predicted as one class although they hold several, naming that class; None if not so."""
    counts = np.asarray(confusion)
    predicted = counts.sum(axis=0)
    if not (np.count_nonzero(predicted) == 1 and np.count_nonzero(counts.sum(axis=1)) > 1):
        return None
    return (
        f"the best epoch's model predicts {class_names[int(np.argmax(predicted))]!r} for every validation row"
        " (a collapsed model: check train.learning_rate)"
    )


def _open_run(
    runs_dir: Path,
    config: Config,
    record: RunRecord,
    network: keras.Model,
    prepared: EncodedData,
    resume: Optional[results.RunDirectory],
    echo: Callable[[str], None],
    run_id: Optional[str],
    index: Index,
) -> tuple[results.RunDirectory, Checkpoint, RunRecord]:
    """A new run's folder, or `resume`'s with its checkpoint restored into `network`; indexed as
    running. Returns the folder, the checkpoint and the record naming them."""
    if resume is None:
        run, checkpoint = results.create_run(runs_dir, config.name, run_id), Checkpoint()
    else:
        run = resume
        checkpoint = Checkpoint.load(run, network)
        checkpoint.resumed.append(
            {"after_epoch": len(checkpoint.history), "at": results.now(), "device": record.device}
        )
    record = record.changed(run_dir=str(run.path))
    if checkpoint.resumed:
        record = record.changed(resumed=tuple(checkpoint.resumed))
    try:
        run.write_config(record.to_json())
        run.write_vocabulary(
            prepared.vocabulary.words, prepared.vocabulary.first_bigram_index, prepared.vocabulary.bigrams
        )
        index(run.run_id, config.name, "running", record.changed(process=results.this_process()).to_json())
    except BaseException:
        if resume is None:
            # Never indexed, so no one could find it: leave no half-written folder behind.
            shutil.rmtree(run.path, ignore_errors=True)
        raise
    if resume is None:
        echo(f"{network.count_params():,} parameters on {record.device}; recording in {run.path}")
    else:
        echo(
            f"{network.count_params():,} parameters on {record.device}; resuming {run.path} after epoch"
            f" {len(checkpoint.history)} of {config.train.epochs} (best so far: epoch"
            f" {checkpoint.best['epoch'] if checkpoint.best else '-'})"
        )
    return run, checkpoint, record


@contextlib.contextmanager
def _recorded_if_stopped(
    index: Index,
    run: results.RunDirectory,
    record: RunRecord,
    checkpoint: Checkpoint,
    observers: Sequence[run_observers.RunObserver],
) -> Iterator[None]:
    """Index the run as interrupted (Ctrl-C, raised again as `RunInterrupted` naming the run's
    folder) or failed (an error) if the block stops early; `RunStopped` goes on to `_stopped`."""
    try:
        yield
    except KeyboardInterrupt as interrupt:
        record = record.changed(status="interrupted")
        index(run.run_id, record.name, "interrupted", record.changed(history=tuple(checkpoint.history)).to_json())
        _tell_closed(observers, record)
        raise RunInterrupted(str(run.path)) from interrupt
    except RunStopped:
        raise
    except Exception as error:
        record = record.changed(status="failed")
        try:
            index(
                run.run_id,
                record.name,
                "failed",
                record.changed(error=str(error), history=tuple(checkpoint.history)).to_json(),
            )
        except results.ResultsError:
            pass  # The disk may be what failed; the error being raised says more than this one would.
        _tell_closed(observers, record)
        raise


def _stopped(
    index: Index,
    run: results.RunDirectory,
    record: RunRecord,
    checkpoint: Checkpoint,
    stopped: RunStopped,
    observers: Sequence[run_observers.RunObserver],
) -> RunRecord:
    """Record a run that an observer ended on purpose (a pruned trial): an outcome, whose record,
    with the observer's message as its `error`, is returned for a worker to send back."""
    record = record.changed(status=stopped.status, result=RunResult.from_json({"epochs_run": len(checkpoint.history)}))
    try:
        index(
            run.run_id,
            record.name,
            stopped.status,
            record.changed(error=str(stopped), history=tuple(checkpoint.history)).to_json(),
        )
    except results.ResultsError:
        pass  # The disk may be what failed; the record returned still says how the run ended.
    run.remove_checkpoint()  # A run ended on purpose is never resumed.
    _tell_closed(observers, record)
    return record.changed(error=str(stopped))


def _tell_closed(observers: Sequence[run_observers.RunObserver], record: RunRecord) -> None:
    for observer in observers:
        observer.closed(record)


def _evaluate(
    network: keras.Model, prepared: EncodedData, run: results.RunDirectory, checkpoint: Checkpoint
) -> dict[str, dict[str, Any]]:
    """Save the best epoch's model and score it on the validation and test splits."""
    network.set_weights(checkpoint.best_weights)
    run.save_model(network)
    scores = {}
    for split, inputs, labels in (
        ("val", prepared.x_validation, prepared.y_validation),
        ("test", prepared.x_test, prepared.y_test),
    ):
        probabilities = network.predict(inputs, batch_size=EVALUATION_BATCH_SIZE, verbose=0)
        predicted = metrics.predicted_classes(probabilities)
        if split == "test":
            # Per test row, for the verdict's multi-bootstrap over seeds and test rows.
            run.write_test_predictions(probabilities, predicted, labels)
        confusion = metrics.confusion_matrix(labels, predicted, prepared.num_classes)
        scores[split] = {
            "accuracy": float(np.trace(confusion) / confusion.sum()),
            "loss": metrics.cross_entropy(labels, probabilities),
            "macro_f1": metrics.macro_f1(confusion),
            "confusion": confusion.tolist(),
        }
    return scores


def _result(
    checkpoint: Checkpoint, scores: dict[str, dict[str, Any]], epochs: int, train_seconds: float, wall_seconds: float
) -> dict[str, Any]:
    epoch_seconds = [entry["seconds"] for entry in checkpoint.history]
    return {
        "best_val_accuracy": checkpoint.best["val_accuracy"],
        "best_epoch": checkpoint.best["epoch"],
        "best_val_loss": checkpoint.best["val_loss"],
        "val_macro_f1": scores["val"]["macro_f1"],
        "test_accuracy": scores["test"]["accuracy"],
        "test_loss": scores["test"]["loss"],
        "test_macro_f1": scores["test"]["macro_f1"],
        # Rows are true classes and columns predicted ones, in the order of data.class_names.
        "val_confusion": scores["val"]["confusion"],
        "test_confusion": scores["test"]["confusion"],
        "epochs_run": len(checkpoint.history),
        # Fewer epochs than train.epochs only when train.early_stopping_patience ran out.
        "stopped_early": len(checkpoint.history) < epochs,
        "mean_epoch_seconds": float(np.mean(epoch_seconds)),
        # Training in this process (after a resume, the epochs trained before it are not included).
        "train_seconds": train_seconds,
        # The whole run in this process: reading and tokenizing data, training, predicting, saving.
        "wall_seconds": wall_seconds,
    }


def _finish(
    index: Index,
    run: results.RunDirectory,
    record: RunRecord,
    status: str,
    result: dict[str, Any],
    observers: Sequence[run_observers.RunObserver],
) -> RunRecord:
    """Record how the run ended (result.json for a completed one) and drop its checkpoint."""
    record = record.changed(result=RunResult.from_json(result), status=status)
    if status == "completed":
        run.write_result(record.to_json())
    index(run.run_id, record.name, status, record.to_json())
    # The saved model and the history hold all a finished run needs; the checkpoint is only for resuming.
    run.remove_checkpoint()
    _tell_closed(observers, record)
    return record
