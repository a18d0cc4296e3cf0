"""The runner: every side effect of a run (seeding, data, training, files) happens here.

Import this module only after `backend.select_backend`, since it imports Keras.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
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
    data,
    embeddings,
    kernels,
    metrics,
    model as model_factory,
    observers as run_observers,
    results,
    tokenize,
)
from rnnbench.config import Config, TrainConfig, recorded_config  # noqa: F401 (recorded_config: also train's API)
from rnnbench.progress import Progress

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


class Prepared:
    """A run's data, encoded: training, validation and test inputs and labels, and the vocabulary.

    Plain values and arrays, so that a cluster's driver prepares it once for every run with the
    same `key` and hands it to their tasks through Ray's object store.
    """

    @staticmethod
    def key(config: Config) -> str:
        """What the prepared data depends on: the data settings, the seed (which cuts the
        validation split) and the model settings that shape the vocabulary and token weights."""
        depends_on = {
            "data": config.data.model_dump(mode="json"),
            "seed": config.train.seed,
            "ngrams": config.model.ngrams,
            "ngram_weighting": config.model.ngram_weighting,
        }
        return hashlib.sha256(json.dumps(depends_on, sort_keys=True).encode("utf-8")).hexdigest()

    def __init__(self, config: Config, data_dir: Optional[str], echo: Callable[[str], None]):
        settings = config.data
        started = time.perf_counter()
        dataset = data.load_dataset(settings, data_dir)
        # One corpus holds every split, in the order train, validation file (if any), test.
        train_count = len(dataset.train_texts)
        validation_texts = dataset.validation_texts or []
        texts = dataset.train_texts + validation_texts + dataset.test_texts
        test_rows = train_count + len(validation_texts) + np.arange(len(dataset.test_texts))
        # How much validation can reward memorising a group (a film's title, its actors): the share
        # of validation rows whose group also has training rows; known only for a split cut here.
        sharing_a_group = None
        if dataset.validation_texts is not None:
            training_rows = np.arange(train_count)
            validation_rows = train_count + np.arange(len(validation_texts))
            validation_labels, validated_on = dataset.validation_labels, "the validation file"
        elif settings.validation == "test":
            training_rows, validation_rows = np.arange(train_count), test_rows
            validation_labels, validated_on = dataset.test_labels, "the test split"
        else:
            by_group = settings.hold_out == "groups" and dataset.train_groups is not None
            training_rows, validation_rows = data.split_validation(
                dataset.train_labels,
                settings.validation,
                config.train.seed,
                dataset.class_names,
                groups=dataset.train_groups if by_group else None,
            )
            validation_labels = dataset.train_labels[validation_rows]
            sharing_a_group = data.shared_group_share(dataset.train_groups, training_rows, validation_rows)
            validated_on = f"{settings.validation:g} of the training split" + (
                f", whole {dataset.group_name}s" if by_group else ", rows at random"
            )
        echo(
            f"{dataset.name}: {len(training_rows):,} training / {len(validation_rows):,} validation ({validated_on})"
            f" / {len(test_rows):,} test rows, {dataset.num_classes} classes, from {dataset.source}"
            f" ({time.perf_counter() - started:.1f} s)"
        )
        for path, count in dataset.notes.get("skipped_empty_texts", {}).items():
            echo(f"skipped {count:,} rows with an empty text in {path}")

        started = time.perf_counter()
        corpus, cached = tokenize.load_or_tokenize(
            texts, settings.tokenizer, settings.morpheme_analyzer, Progress(echo, "tokenized")
        )
        # The vocabulary is counted on the training rows only, never validation or test rows.
        self.vocabulary = tokenize.build_vocabulary(corpus, training_rows, settings.num_words, config.model.ngrams)
        # Kept for word vectors trained on the training rows (model.pretrained_embedding: word2vec).
        self.corpus, self.training_rows = corpus, training_rows

        def encode(rows: np.ndarray) -> np.ndarray:
            return tokenize.encode(
                corpus,
                self.vocabulary,
                rows,
                settings.maxlen,
                settings.padding,
                settings.truncating,
                Progress(echo, "encoded", "rows"),
            )

        self.x_train, self.y_train = encode(training_rows), dataset.train_labels[training_rows]
        self.x_validation, self.y_validation = encode(validation_rows), validation_labels
        self.x_test, self.y_test = encode(test_rows), dataset.test_labels
        # model.ngram_weighting tfidf: each bag token's weight, from the training rows alone.
        self.token_weights = (
            tokenize.inverse_document_frequencies(self.x_train, model_factory.bag_size(config, settings.num_words))
            if config.model.ngram_weighting == "tfidf"
            else None
        )
        self.num_classes = dataset.num_classes
        self.class_names = dataset.class_names
        self.notes = dataset.notes
        lengths = corpus.lengths[training_rows]
        self.summary = {
            "dataset": dataset.name,
            "source": dataset.source,
            "class_names": list(dataset.class_names),
            "tokenizer": settings.tokenizer,
            "train_rows": int(len(training_rows)),
            "validation_rows": int(len(validation_rows)),
            "validated_on": validated_on,
            "test_rows": int(len(test_rows)),
            "distinct_training_tokens": self.vocabulary.distinct_words,
            "vocabulary_tokens": len(self.vocabulary.words),
            "truncated_share": float(np.mean(lengths > settings.maxlen)) if len(lengths) else 0.0,
            "majority_class_share": float(np.bincount(validation_labels).max() / len(validation_labels)),
            "validation_rows_sharing_a_group": sharing_a_group,
            **dataset.notes,
        }
        echo(
            f"{settings.tokenizer} tokens of {len(corpus):,} texts {'read from the cache' if cached else 'made'} in"
            f" {time.perf_counter() - started:.1f} s: kept {len(self.vocabulary.words):,} of"
            f" {self.vocabulary.distinct_words:,} training tokens; {self.summary['truncated_share']:.0%}"
            f" of training texts longer than maxlen {settings.maxlen}"
        )


class _Progress:
    """What a run has done so far; saved after every epoch, so an interrupted run resumes from it."""

    def __init__(self) -> None:
        self.history: list[dict[str, Any]] = []
        self.best: Optional[dict[str, Any]] = None
        self.best_weights: Optional[list[np.ndarray]] = None
        self.resumed: list[dict[str, Any]] = []

    def save(self, run: results.RunDirectory, network: keras.Model) -> None:
        """One file with everything training needs to go on: written whole or not at all."""
        state = {"history": self.history, "best": self.best, "resumed": self.resumed}
        arrays = {"state": np.frombuffer(json.dumps(state).encode("utf-8"), dtype=np.uint8)}
        # `variables` includes the dropout layers' random-generator states, not only weights.
        for prefix, values in (
            ("variable", [variable.numpy() for variable in network.variables]),
            ("optimizer", [variable.numpy() for variable in network.optimizer.variables]),
            ("best", self.best_weights or []),
        ):
            arrays.update({f"{prefix}_{index}": np.asarray(value) for index, value in enumerate(values)})
        run.write_checkpoint(arrays)

    @classmethod
    def load(cls, run: results.RunDirectory, network: keras.Model) -> "_Progress":
        """Restore the checkpoint into `network` (compiled), and return the progress it holds."""
        arrays = run.read_checkpoint()
        progress = cls()
        state = json.loads(arrays["state"].tobytes().decode("utf-8"))
        progress.history, progress.best, progress.resumed = state["history"], state["best"], state["resumed"]

        def saved(prefix: str) -> list[np.ndarray]:
            return [arrays[f"{prefix}_{index}"] for index in range(sum(key.startswith(f"{prefix}_") for key in arrays))]

        network.optimizer.build(network.trainable_variables)
        for prefix, variables in (("variable", network.variables), ("optimizer", network.optimizer.variables)):
            values = saved(prefix)
            if [tuple(value.shape) for value in values] != [tuple(variable.shape) for variable in variables]:
                raise results.ResultsError(
                    f"{run.path / results.CHECKPOINT_FILE}: does not match this model; start afresh with --no-resume"
                )
            for variable, value in zip(variables, values):
                variable.assign(value)
        progress.best_weights = saved("best") or None
        return progress


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


def _steps_per_epoch(config: Config, prepared: Prepared) -> int:
    # `fit` makes a last, smaller batch of what is left over.
    return math.ceil(len(prepared.y_train) / config.train.batch_size)


class _ProgressBar(keras.callbacks.ProgbarLogger):
    """Keras' progress bar without its "Epoch k/k" line, which would be wrong here: each `fit`
    trains one epoch of several, and the line printed after the bar names the epoch."""

    def set_params(self, params: dict[str, Any]) -> None:
        super().set_params({**params, "epochs": 1})


def _train(
    network: keras.Model,
    prepared: Prepared,
    config: Config,
    run: results.RunDirectory,
    progress: _Progress,
    echo: Callable[[str], None],
    progress_bar: bool,
    observers: Sequence[run_observers.RunObserver] = (),
) -> bool:
    """Train the epochs that `progress` has not done yet; False if the loss stopped being finite."""
    epochs = config.train.epochs
    steps_per_epoch = _steps_per_epoch(config, prepared)
    for epoch in range(len(progress.history), epochs):
        # Checked before each epoch rather than after one, so that a run resumed after its last
        # epoch stops there too.
        if patience_ran_out(progress.history, config.train.early_stopping_patience):
            best = progress.best
            echo(
                f"stopping early after epoch {epoch} of {epochs}: val_accuracy has not improved on epoch {best['epoch']}'s"
                f" {best['val_accuracy']:.4f} for {epoch - best['epoch']} epochs (train.early_stopping_patience)"
            )
            break
        learning_rate = learning_rate_for_epoch(config.train, steps_per_epoch, progress.history)
        if config.train.lr_schedule == "reduce_on_plateau":
            # Set before every epoch, so the optimizer's rate is the history's even after a resume.
            network.optimizer.learning_rate = learning_rate
        # rnnbench shuffles, not Keras: each epoch's order follows from the seed and the epoch
        # alone, so a resumed run sees the same batches as an uninterrupted one.
        order = np.random.default_rng([config.train.seed, epoch]).permutation(len(prepared.y_train))
        started = time.perf_counter()
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
        progress.history.append(entry)
        if run_observers.diverged(entry):
            run.write_history(progress.history)
            echo(f"epoch {epoch + 1}/{epochs}: the loss is not finite; stopping (recorded as diverged)")
            for observer in observers:
                observer.epoch_ended(entry, progress.history)
            return False
        # Best is the maximum over epochs of the validation accuracy; ties keep the earlier epoch.
        improved = progress.best is None or entry["val_accuracy"] > progress.best["val_accuracy"]
        if improved:
            progress.best = entry
            progress.best_weights = network.get_weights()
        run.write_history(progress.history)
        progress.save(run, network)
        echo(
            f"epoch {epoch + 1}/{epochs}: loss {entry['loss']:.4f}, accuracy {entry['accuracy']:.4f},"
            f" val_loss {entry['val_loss']:.4f}, val_accuracy {entry['val_accuracy']:.4f}"
            f"{' (best so far)' if improved else ''}"
            f"{'' if config.train.lr_schedule == 'constant' else f', learning rate {learning_rate:.3g}'}, {entry['seconds']:.1f} s"
        )
        for observer in observers:
            observer.epoch_ended(entry, progress.history)
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
    prepared: Optional[Prepared] = None,
) -> dict[str, Any]:
    """Train one model for `config` and record it under `runs_dir`; returns the run's record.

    With `resume` (an unfinished run of the same config, whose lock the caller holds), training
    goes on from that run's last finished epoch, in its directory. Keras' progress bar is shown if
    `progress_bar`, by default when standard output is a terminal; a line per epoch always is.
    Ctrl-C after the run's folder exists records the run as interrupted and re-raises the
    KeyboardInterrupt with that folder as its `run_dir`. `observers`, after those every run gets
    (`observers.for_run`), are told of the run's opening, epochs and end. A new run's folder is
    named `run_id` when a driver chose it; `index` replaces runs_dir's index (see `Index`).
    `prepared` is the run's data when a driver prepared it (`Prepared.key` equal to the config's).
    """
    index = index or functools.partial(results.index_run, runs_dir)
    echo(f"[{config.name}] {config.model.cell}, backend {config.backend}")
    run_started = time.perf_counter()
    if prepared is None:
        prepared = Prepared(config, data_dir, echo)
    else:
        echo(
            f"{prepared.summary['dataset']}: data prepared once by the driver ({prepared.summary['train_rows']:,} training rows)"
        )
    pretrained = _pretrained_vectors(config, prepared, data_dir, echo)
    network = _compiled_model(config, prepared, pretrained)
    device, choices = _plan_kernels(config, echo)
    record = _new_record(config, command, network, prepared, pretrained, device, choices, echo)
    run, progress = _open_run(runs_dir, config, record, network, prepared, resume, echo, run_id, index)
    observers = [*run_observers.for_run(runs_dir), *observers]

    with _recorded_if_stopped(index, run, record, progress, observers):
        for observer in observers:
            observer.opened(run.path, record, progress.history)
        started = time.perf_counter()
        bar = sys.stdout.isatty() if progress_bar is None else progress_bar
        finite = _train(network, prepared, config, run, progress, echo, bar, observers)
        train_seconds = time.perf_counter() - started
        scores = _evaluate(network, prepared, run, progress) if finite and progress.best is not None else None
    if scores is None:
        return _finish(index, run, record, "diverged", {"epochs_run": len(progress.history)}, observers)

    result = _result(
        progress, scores, config.train.epochs, train_seconds, wall_seconds=time.perf_counter() - run_started
    )
    result["collapsed"] = _warn_if_collapsed(record, scores["val"]["confusion"], prepared.class_names, echo)
    return _finish(index, run, record, "completed", result, observers)


def _pretrained_vectors(
    config: Config, prepared: Prepared, data_dir: Optional[str], echo: Callable[[str], None]
) -> Optional[embeddings.PretrainedEmbedding]:
    if config.model.pretrained_embedding is None:
        return None
    if config.model.pretrained_embedding == embeddings.WORD2VEC:
        pretrained = embeddings.train_word2vec(
            prepared.corpus,
            prepared.training_rows,
            prepared.vocabulary,
            config.data.num_words,
            config.model.embedding_dim,
            config.train.seed,
            echo,
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


def _compiled_model(
    config: Config, prepared: Prepared, pretrained: Optional[embeddings.PretrainedEmbedding]
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
    prepared: Prepared,
    pretrained: Optional[embeddings.PretrainedEmbedding],
    device: str,
    choices: list[kernels.KernelChoice],
    echo: Callable[[str], None],
) -> dict[str, Any]:
    """What a run is, before it trains: config, environment, model size, data, and warnings about the data."""
    record: dict[str, Any] = {
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
    }
    if pretrained is not None:
        record["embedding"] = {
            "source": pretrained.source,
            "found": pretrained.found,
            "coverage": pretrained.coverage,
            "trainable": config.model.embedding_trainable,
        }
    for line in note_warnings(prepared.notes):
        _warn(record, line, echo)
    return record


def _warn(record: dict[str, Any], line: str, echo: Callable[[str], None]) -> None:
    record["warnings"].append(line)
    echo(f"warning: {line}")


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


def _warn_if_collapsed(
    record: dict[str, Any], confusion: list[list[int]], class_names: tuple[str, ...], echo: Callable[[str], None]
) -> bool:
    """Whether the validation rows of `confusion` (rows true classes, columns predicted) are all
    predicted as one class although they hold several; if so, a warning says which class."""
    counts = np.asarray(confusion)
    predicted = counts.sum(axis=0)
    collapsed = bool(np.count_nonzero(predicted) == 1 and np.count_nonzero(counts.sum(axis=1)) > 1)
    if collapsed:
        _warn(
            record,
            f"the best epoch's model predicts {class_names[int(np.argmax(predicted))]!r} for every validation row"
            " (a collapsed model: check train.learning_rate)",
            echo,
        )
    return collapsed


def _open_run(
    runs_dir: Path,
    config: Config,
    record: dict[str, Any],
    network: keras.Model,
    prepared: Prepared,
    resume: Optional[results.RunDirectory],
    echo: Callable[[str], None],
    run_id: Optional[str],
    index: Index,
) -> tuple[results.RunDirectory, _Progress]:
    """A new run's folder, or `resume`'s with its checkpoint restored into `network`; indexed as running."""
    if resume is None:
        run, progress = results.create_run(runs_dir, config.name, run_id), _Progress()
    else:
        run = resume
        progress = _Progress.load(run, network)
        progress.resumed.append({"after_epoch": len(progress.history), "at": results.now(), "device": record["device"]})
    record["run_dir"] = str(run.path)
    if progress.resumed:
        record["resumed"] = progress.resumed
    try:
        run.write_config(record)
        run.write_vocabulary(
            prepared.vocabulary.words, prepared.vocabulary.first_bigram_index, prepared.vocabulary.bigrams
        )
        index(run.run_id, config.name, "running", {**record, "process": results.this_process()})
    except BaseException:
        if resume is None:
            # Never indexed, so no one could find it: leave no half-written folder behind.
            shutil.rmtree(run.path, ignore_errors=True)
        raise
    if resume is None:
        echo(f"{network.count_params():,} parameters on {record['device']}; recording in {run.path}")
    else:
        echo(
            f"{network.count_params():,} parameters on {record['device']}; resuming {run.path} after epoch"
            f" {len(progress.history)} of {config.train.epochs} (best so far: epoch"
            f" {progress.best['epoch'] if progress.best else '-'})"
        )
    return run, progress


@contextlib.contextmanager
def _recorded_if_stopped(
    index: Index,
    run: results.RunDirectory,
    record: dict[str, Any],
    progress: _Progress,
    observers: Sequence[run_observers.RunObserver],
) -> Iterator[None]:
    """Index the run as interrupted (Ctrl-C), failed (an error) or as the status an error names
    (an observer's `status`, such as a pruned trial's) if the block stops early."""
    try:
        yield
    except KeyboardInterrupt as error:
        # Says where the interrupted run is; absent when Ctrl-C came before a run existed.
        error.run_dir = str(run.path)  # type: ignore[attr-defined]
        record["status"] = "interrupted"
        index(run.run_id, record["name"], "interrupted", {**record, "history": progress.history})
        _tell_closed(observers, record)
        raise
    except Exception as error:
        status = getattr(error, "status", "failed")
        record["status"] = status
        if status != "failed":
            record["result"] = {"epochs_run": len(progress.history)}
            # The run's record as indexed, for a worker to send back (a pruned trial is an outcome).
            error.record = {**record, "error": str(error)}  # type: ignore[attr-defined]
        try:
            index(run.run_id, record["name"], status, {**record, "error": str(error), "history": progress.history})
        except results.ResultsError:
            pass  # The disk may be what failed; the error being raised says more than this one would.
        if status != "failed":
            run.remove_checkpoint()  # A run ended on purpose (pruned) is never resumed.
        _tell_closed(observers, record)
        raise


def _tell_closed(observers: Sequence[run_observers.RunObserver], record: dict[str, Any]) -> None:
    for observer in observers:
        observer.closed(record)


def _evaluate(
    network: keras.Model, prepared: Prepared, run: results.RunDirectory, progress: _Progress
) -> dict[str, dict[str, Any]]:
    """Save the best epoch's model and score it on the validation and test splits."""
    network.set_weights(progress.best_weights)
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
    progress: _Progress, scores: dict[str, dict[str, Any]], epochs: int, train_seconds: float, wall_seconds: float
) -> dict[str, Any]:
    epoch_seconds = [entry["seconds"] for entry in progress.history]
    return {
        "best_val_accuracy": progress.best["val_accuracy"],
        "best_epoch": progress.best["epoch"],
        "best_val_loss": progress.best["val_loss"],
        "val_macro_f1": scores["val"]["macro_f1"],
        "test_accuracy": scores["test"]["accuracy"],
        "test_loss": scores["test"]["loss"],
        "test_macro_f1": scores["test"]["macro_f1"],
        # Rows are true classes and columns predicted ones, in the order of data.class_names.
        "val_confusion": scores["val"]["confusion"],
        "test_confusion": scores["test"]["confusion"],
        "epochs_run": len(progress.history),
        # Fewer epochs than train.epochs only when train.early_stopping_patience ran out.
        "stopped_early": len(progress.history) < epochs,
        "mean_epoch_seconds": float(np.mean(epoch_seconds)),
        # Training in this process (after a resume, the epochs trained before it are not included).
        "train_seconds": train_seconds,
        # The whole run in this process: reading and tokenizing data, training, predicting, saving.
        "wall_seconds": wall_seconds,
    }


def _finish(
    index: Index,
    run: results.RunDirectory,
    record: dict[str, Any],
    status: str,
    result: dict[str, Any],
    observers: Sequence[run_observers.RunObserver],
) -> dict[str, Any]:
    """Record how the run ended (result.json for a completed one) and drop its checkpoint."""
    record["result"], record["status"] = result, status
    if status == "completed":
        run.write_result(record)
    index(run.run_id, record["name"], status, record)
    # The saved model and the history hold all a finished run needs; the checkpoint is only for resuming.
    run.remove_checkpoint()
    _tell_closed(observers, record)
    return record


def completed_runs(runs_dir: Path) -> dict[str, dict[str, Any]]:
    """Completed runs by the fingerprint of their config (re-validated, so older records match too)."""
    found = {}
    for record in results.read_runs(runs_dir):
        try:
            found[recorded_config(record["config"]).fingerprint()] = record
        except ValueError:
            continue  # A record from an incompatible version: it can't be reused.
    return found


# Unfinished runs that a new `rnnbench run` of the same config goes on with.
RESUMABLE = ("interrupted", results.INCOMPLETE, "failed")


def unfinished_runs(runs_dir: Path) -> dict[str, list[Path]]:
    """Folders of runs that stopped before their last epoch and kept a checkpoint, newest first, by fingerprint."""
    found: dict[str, list[Path]] = {}
    for record in reversed(results.read_runs(runs_dir, RESUMABLE)):
        run = results.RunDirectory(runs_dir / record["run_id"])
        if not run.has_checkpoint():
            continue
        try:
            fingerprint = recorded_config(record["config"]).fingerprint()
        except ValueError:
            continue
        found.setdefault(fingerprint, []).append(run.path)
    return found


@dataclasses.dataclass(frozen=True)
class Claim:
    """What the run of a config does, decided under its lock: reuse `completed` (a completed
    run's record), or train, going on from `unfinished` (a run folder with a checkpoint) if any."""

    completed: Optional[dict[str, Any]] = None
    unfinished: Optional[Path] = None


@contextlib.contextmanager
def claim(config: Config, runs_dir: Path, reuse: bool, resume: bool, say: Callable[[str], None]) -> Iterator[Claim]:
    """Hold the lock of `config`'s run while deciding what it does and for as long as the block
    trains it, so that the run trains once however many processes ask for it. While another
    process holds the lock, `say` says so once and this one waits; a reused run is said too."""
    fingerprint = config.fingerprint()
    with results.run_lock(
        runs_dir, fingerprint, lambda: say("the same run is being trained by another process; waiting for it to finish")
    ):
        completed = completed_runs(runs_dir).get(fingerprint) if reuse else None
        if completed is not None:
            say(reuse_note(completed))
            yield Claim(completed=completed)
            return
        unfinished = unfinished_runs(runs_dir).get(fingerprint, []) if resume else []
        yield Claim(unfinished=unfinished[0] if unfinished else None)


def train_one(
    config: Config,
    data_dir: Optional[str],
    runs_dir: Path,
    command: str,
    label: str,
    announce: bool,
    echo: Callable[[str], None],
    progress_bar: Optional[bool] = None,
    reuse: bool = True,
    resume: bool = True,
    observers: Sequence[run_observers.RunObserver] = (),
) -> dict[str, Any]:
    """Train `config` once, however many processes ask for it at the same time.

    Under the lock of its fingerprint, a completed run of it is reused (if `reuse`), an
    unfinished one goes on (if `resume`), and otherwise a new run starts; while another process
    holds the lock, this one says so and waits for it.
    """

    def say(line: str) -> None:
        echo(f"{label}: {line}" if announce else line)

    with claim(config, runs_dir, reuse, resume, say) as claimed:
        if claimed.completed is not None:
            return claimed.completed
        unfinished_run = results.RunDirectory(claimed.unfinished) if claimed.unfinished else None
        if announce:
            say("resuming" if unfinished_run else "training")
        return run_experiment(
            config,
            data_dir,
            runs_dir,
            command,
            echo,
            resume=unfinished_run,
            progress_bar=progress_bar,
            observers=observers,
        )


def reuse_note(record: dict[str, Any]) -> str:
    """What a sweep says of a run it reuses."""
    return f"already completed in {record['run_dir']}; reused, not retrained (--force trains it again)"
