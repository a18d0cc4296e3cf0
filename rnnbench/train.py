"""The runner: every side effect of a run (seeding, data, training, files) happens here.

Import this module only after `backend.select_backend`, since it imports Keras.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

import keras
import numpy as np

from rnnbench import backend, data, embeddings, metrics, model as model_factory, results, tokenize
from rnnbench.config import Config

OPTIMIZERS = {
    "adam": keras.optimizers.Adam,
    "adamw": keras.optimizers.AdamW,
    "rmsprop": keras.optimizers.RMSprop,
    "sgd": keras.optimizers.SGD,
}
# Prediction batches only change speed, never the result, so they can be large.
EVALUATION_BATCH_SIZE = 512


class Prepared:
    """A run's data, encoded: training, validation and test inputs and labels, and the vocabulary."""

    def __init__(self, config: Config, data_dir: Optional[str], echo: Callable[[str], None]):
        settings = config.data
        started = time.perf_counter()
        dataset = data.load_dataset(settings, data_dir)
        # One corpus holds every split, in the order train, validation file (if any), test.
        train_count = len(dataset.train_texts)
        validation_texts = dataset.validation_texts or []
        texts = dataset.train_texts + validation_texts + dataset.test_texts
        test_rows = train_count + len(validation_texts) + np.arange(len(dataset.test_texts))
        if dataset.validation_texts is not None:
            training_rows = np.arange(train_count)
            validation_rows = train_count + np.arange(len(validation_texts))
            validation_labels, validated_on = dataset.validation_labels, "the validation file"
        elif settings.validation == "test":
            training_rows, validation_rows = np.arange(train_count), test_rows
            validation_labels, validated_on = dataset.test_labels, "the test split"
        else:
            training_rows, validation_rows = data.split_validation(
                dataset.train_labels, settings.validation, config.train.seed, dataset.class_names
            )
            validation_labels = dataset.train_labels[validation_rows]
            validated_on = f"{settings.validation:g} of the training split"
        echo(
            f"{dataset.name}: {len(training_rows):,} training / {len(validation_rows):,} validation ({validated_on})"
            f" / {len(test_rows):,} test rows, {dataset.num_classes} classes, from {dataset.source}"
            f" ({time.perf_counter() - started:.1f} s)"
        )
        for path, count in dataset.notes.get("skipped_empty_texts", {}).items():
            echo(f"skipped {count:,} rows with an empty text in {path}")

        started = time.perf_counter()
        corpus, cached = tokenize.load_or_tokenize(texts, settings.tokenizer)
        # The vocabulary is counted on the training rows only, never validation or test rows.
        self.vocabulary = tokenize.build_vocabulary(corpus, training_rows, settings.num_words)

        def encode(rows: np.ndarray) -> np.ndarray:
            return tokenize.encode(corpus, self.vocabulary, rows, settings.maxlen, settings.padding, settings.truncating)

        self.x_train, self.y_train = encode(training_rows), dataset.train_labels[training_rows]
        self.x_validation, self.y_validation = encode(validation_rows), validation_labels
        self.x_test, self.y_test = encode(test_rows), dataset.test_labels
        self.num_classes = dataset.num_classes
        self.class_names = dataset.class_names
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
            **dataset.notes,
        }
        echo(
            f"{settings.tokenizer} tokens of {len(corpus):,} texts {'read from the cache' if cached else 'made'} in"
            f" {time.perf_counter() - started:.1f} s: kept {len(self.vocabulary.words):,} of"
            f" {self.vocabulary.distinct_words:,} training tokens; {self.summary['truncated_share']:.0%}"
            f" of training texts longer than maxlen {settings.maxlen}"
        )


class _Recorder(keras.callbacks.Callback):
    """Writes the history after every epoch and keeps (and saves) the best epoch's weights."""

    def __init__(self, run: results.RunDirectory, epochs: int, echo: Callable[[str], None]):
        super().__init__()
        self.run = run
        self.epochs = epochs
        self.echo = echo
        self.history: list[dict[str, Any]] = []
        self.best: Optional[dict[str, Any]] = None
        self.best_weights: Optional[list[np.ndarray]] = None
        self.diverged = False
        self._started = 0.0

    def on_epoch_begin(self, epoch: int, logs: Optional[dict[str, Any]] = None) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: Optional[dict[str, Any]] = None) -> None:
        logs = logs or {}
        entry = {"epoch": epoch + 1, **{key: float(value) for key, value in logs.items()}}
        entry["seconds"] = time.perf_counter() - self._started
        self.history.append(entry)
        self.run.write_history(self.history)
        if not all(math.isfinite(entry.get(key, 0.0)) for key in ("loss", "val_loss")):
            self.diverged = True
            self.model.stop_training = True
            self.echo(f"epoch {epoch + 1}/{self.epochs}: the loss is not finite; stopping (recorded as diverged)")
            return
        # Best is the maximum over epochs of the validation accuracy; ties keep the earlier epoch.
        improved = self.best is None or entry["val_accuracy"] > self.best["val_accuracy"]
        if improved:
            self.best = entry
            self.best_weights = [weight.copy() for weight in self.model.get_weights()]
            self.run.save_model(self.model)
        self.echo(
            f"epoch {epoch + 1}/{self.epochs}: loss {entry['loss']:.4f}, accuracy {entry['accuracy']:.4f},"
            f" val_loss {entry['val_loss']:.4f}, val_accuracy {entry['val_accuracy']:.4f}"
            f"{' (best so far)' if improved else ''}, {entry['seconds']:.1f} s"
        )


def run_experiment(
    config: Config,
    data_dir: Optional[str],
    runs_dir: Path,
    command: str,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train one model for `config` and record it under `runs_dir`; returns the run's record."""
    echo(f"[{config.name}] {config.model.cell}, backend {config.backend}")
    run_started = time.perf_counter()
    prepared = Prepared(config, data_dir, echo)

    pretrained = None
    if config.model.pretrained_embedding is not None:
        pretrained = embeddings.load_pretrained(
            config.model.pretrained_embedding, prepared.vocabulary, config.data.num_words,
            config.model.embedding_dim, config.train.seed, data_dir,
        )
        echo(
            f"pre-trained vectors {pretrained.source}: {pretrained.found:,} of {len(prepared.vocabulary.words):,}"
            f" vocabulary words found ({pretrained.coverage:.1%}); {'trainable' if config.model.embedding_trainable else 'frozen'}"
        )

    keras.utils.set_random_seed(config.train.seed)
    network = model_factory.build_model(
        config, config.data.num_words, prepared.num_classes, None if pretrained is None else pretrained.matrix
    )
    network.compile(
        optimizer=OPTIMIZERS[config.train.optimizer](learning_rate=config.train.learning_rate),
        loss=model_factory.loss_for(prepared.num_classes),
        metrics=["accuracy"],
    )
    device = backend.device_description()
    record: dict[str, Any] = {
        "name": config.name,
        "config": config.to_dict(),
        "fingerprint": config.fingerprint(),
        "group": config.group_fingerprint(),
        "command": command,
        "backend": keras.backend.backend(),
        "device": device,
        "versions": backend.versions(),
        "parameters": int(network.count_params()),
        "data": prepared.summary,
    }
    if pretrained is not None:
        record["embedding"] = {
            "source": pretrained.source,
            "found": pretrained.found,
            "coverage": pretrained.coverage,
            "trainable": config.model.embedding_trainable,
        }
    run = results.create_run(runs_dir, config.name)
    record["run_dir"] = str(run.path)
    run.write_config(record)
    run.write_vocabulary(prepared.vocabulary.words)
    results.index_run(runs_dir, run.run_id, config.name, "running", {**record, "process": results.this_process()})
    echo(f"{network.count_params():,} parameters on {device}; recording in {run.path}")

    recorder = _Recorder(run, config.train.epochs, echo)
    # Keras' progress bar on a terminal, placed before the recorder so that its line ends before
    # the recorder's epoch line starts; elsewhere the recorder's line per epoch is enough.
    progress = [keras.callbacks.ProgbarLogger()] if sys.stdout.isatty() else []
    started = time.perf_counter()
    try:
        network.fit(
            prepared.x_train,
            prepared.y_train,
            validation_data=(prepared.x_validation, prepared.y_validation),
            epochs=config.train.epochs,
            batch_size=config.train.batch_size,
            callbacks=[*progress, recorder],
            verbose=1 if progress else 0,
        )
    except KeyboardInterrupt:
        results.index_run(runs_dir, run.run_id, config.name, "interrupted", {**record, "history": recorder.history})
        raise
    except Exception as error:
        try:
            results.index_run(runs_dir, run.run_id, config.name, "failed", {**record, "error": str(error), "history": recorder.history})
        except results.ResultsError:
            pass  # The disk may be what failed; the error being raised says more than this one would.
        raise

    if recorder.diverged or recorder.best is None:
        record["result"] = {"epochs_run": len(recorder.history)}
        results.index_run(runs_dir, run.run_id, config.name, "diverged", record)
        record["status"] = "diverged"
        return record

    network.set_weights(recorder.best_weights)
    scores = {}
    for split, inputs, labels in (
        ("val", prepared.x_validation, prepared.y_validation),
        ("test", prepared.x_test, prepared.y_test),
    ):
        probabilities = network.predict(inputs, batch_size=EVALUATION_BATCH_SIZE, verbose=0)
        confusion = metrics.confusion_matrix(labels, metrics.predicted_classes(probabilities), prepared.num_classes)
        scores[split] = {
            "accuracy": float(np.trace(confusion) / confusion.sum()),
            "loss": metrics.cross_entropy(labels, probabilities),
            "macro_f1": metrics.macro_f1(confusion),
            "confusion": confusion.tolist(),
        }
    epoch_seconds = [entry["seconds"] for entry in recorder.history]
    record["result"] = {
        "best_val_accuracy": recorder.best["val_accuracy"],
        "best_epoch": recorder.best["epoch"],
        "best_val_loss": recorder.best["val_loss"],
        "val_macro_f1": scores["val"]["macro_f1"],
        "test_accuracy": scores["test"]["accuracy"],
        "test_loss": scores["test"]["loss"],
        "test_macro_f1": scores["test"]["macro_f1"],
        # Rows are true classes and columns predicted ones, in the order of data.class_names.
        "val_confusion": scores["val"]["confusion"],
        "test_confusion": scores["test"]["confusion"],
        "epochs_run": len(recorder.history),
        "mean_epoch_seconds": float(np.mean(epoch_seconds)),
        "train_seconds": time.perf_counter() - started,
        # The whole run: reading and tokenizing data, training, predicting, saving.
        "wall_seconds": time.perf_counter() - run_started,
    }
    record["status"] = "completed"
    run.write_result(record)
    results.index_run(runs_dir, run.run_id, config.name, "completed", record)
    return record


def completed_runs(runs_dir: Path) -> dict[str, dict[str, Any]]:
    """Completed runs by the fingerprint of their config (re-validated, so older records match too)."""
    found = {}
    for record in results.read_runs(runs_dir):
        try:
            found[Config.model_validate(record["config"]).fingerprint()] = record
        except ValueError:
            continue  # A record from an incompatible version: it can't be reused.
    return found


def run_all(
    configs: list[Config],
    data_dir: Optional[str],
    runs_dir: Path,
    command: str,
    force: bool = False,
    echo: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Run each config in turn, reusing any that already completed (unless `force`), with a progress line per run."""
    done = {} if force else completed_runs(runs_dir)
    records = []
    for position, config in enumerate(configs, start=1):
        label = f"[{position}/{len(configs)}] {config.name}, seed {config.train.seed}"
        existing = done.get(config.fingerprint())
        if existing is not None:
            echo(f"{label}: already completed in {existing['run_dir']}; reused, not retrained (--force trains it again)")
            records.append(existing)
            continue
        if len(configs) > 1:
            echo(f"{label}: training")
        record = run_experiment(config, data_dir, runs_dir, command, echo)
        records.append(record)
        if len(configs) > 1:
            echo(f"{label}: {_outcome(record)}")
            echo(f"running summary: {running_summary(records)}")
    return records


def _outcome(record: dict[str, Any]) -> str:
    result = record.get("result", {})
    if record.get("status") != "completed":
        return f"{record.get('status')} after {result.get('epochs_run', 0)} epochs"
    return (
        f"best val_accuracy {result['best_val_accuracy']:.4f} at epoch {result['best_epoch']}, "
        f"test accuracy {result['test_accuracy']:.4f}, {result['mean_epoch_seconds']:.1f} s/epoch"
    )


def running_summary(records: list[dict[str, Any]]) -> str:
    from rnnbench.verdict import group_runs

    parts = []
    for group in group_runs(records):
        spread = f" ± {group.std:.4f}" if group.n > 1 else ""
        parts.append(f"{group.name} {group.mean:.4f}{spread} (n={group.n})")
    return "; ".join(parts) or "no completed runs yet"
