"""Using a trained run: its saved model on new texts, read exactly as the run read its own.

In: a run (its folder, its run id, or a config name, which means that config's completed run with
the best validation accuracy) and texts. Out: per text, each class's probability and the
predicted class name, in the run's recorded class order. Texts go through the run's tokenizer,
vocabulary, maxlen, padding and truncation, so a run's own test rows give back its recorded test
accuracy. Nothing here writes to the runs folder.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np

from rnnbench import data, results, tokenize
from rnnbench.config import Config
from rnnbench.errors import InputError

# As the runner's evaluation: prediction batches change speed, never the result.
BATCH_SIZE = 512


class PredictError(InputError):
    """A run that can't be used, or texts that can't be read, described in one line."""


@dataclass(frozen=True)
class TrainedRun:
    folder: Path
    record: results.RunRecord
    config: Config
    vocabulary: tokenize.Vocabulary
    class_names: tuple[str, ...]


def find_run(spec: str, runs_dir: Path) -> tuple[TrainedRun, Optional[str]]:
    """The completed run `spec` names, and for a config name a line saying which run it chose."""
    for folder in (Path(spec), runs_dir / spec):
        if results.RunDirectory(folder).has_config():
            return _load_run(folder), None
    completed = results.read_records(runs_dir)
    named = [record for record in completed if record.name == spec]
    if not named:
        known = sorted({record.name for record in completed})
        listed = ", ".join(known[:8]) + (", ..." if len(known) > 8 else "")
        raise PredictError(
            f"no run folder, run id or config name {spec!r} in {runs_dir}"
            + (f" (completed configs: {listed})" if known else " (it holds no completed runs)")
        )
    best = max(named, key=lambda record: (record.metric("best_val_accuracy"), str(record.run_id)))
    note = (
        f"{spec}: the best of its {len(named)} completed run{'s' if len(named) > 1 else ''} by validation accuracy,"
        f" {best.run_id} (seed {best.seed}, best val_accuracy {best.metric('best_val_accuracy'):.4f})"
    )
    return _load_run(results.run_directory(runs_dir, best).path), note


def _load_run(folder: Path) -> TrainedRun:
    from rnnbench.config import recorded_config

    run = results.RunDirectory(folder)
    if not run.has_result():
        status = _status_of(run)
        raise PredictError(f"{folder}: the run did not complete ({status}), so it has no model to predict with")
    if not run.has_model():
        raise PredictError(
            f"{folder}: the run completed, but its model file {run.model_path.name} is missing, so there is no model to"
            " predict with; train it again with rnnbench run CONFIG.yaml --force"
        )
    try:
        record = run.read_result()
        stored = run.read_vocabulary()
        config = recorded_config(dict(record.config))
        class_names = record.class_names
    except (OSError, ValueError, KeyError, results.RecordError) as error:
        raise PredictError(f"{folder}: the run's record can't be read ({error})") from None
    bigrams = tuple(tuple(pair) for pair in stored.get("bigrams", ()))
    vocabulary = tokenize.Vocabulary(
        words=tuple(stored["words"]), bigrams=bigrams, first_bigram_index=stored.get("first_bigram_index")
    )
    return TrainedRun(folder, record, config, vocabulary, class_names)


def _status_of(run: results.RunDirectory) -> str:
    try:
        return str(run.read_config().get("status", "unfinished"))
    except (OSError, ValueError, AttributeError):
        return "unfinished"


@dataclass(frozen=True)
class EncodedTexts:
    """Texts as the run's model reads them, and how much of each its vocabulary knows."""

    inputs: np.ndarray
    # Per text: how many tokens (words, characters or morphemes) the run's tokenizer made of it,
    # and how many of those are in the run's vocabulary (the rest are read as one unknown token).
    tokens: np.ndarray
    known: np.ndarray


def encode_texts(run: TrainedRun, texts: Sequence[str]) -> EncodedTexts:
    """The model's inputs for `texts`, made as the run made its own rows."""
    if run.config.data.dataset == "imdb":
        texts = [data.clean_review(text) for text in texts]
    settings = run.config.data
    corpus = tokenize.tokenize(list(texts), settings.tokenizer, analyzer=settings.morpheme_analyzer)
    inputs = tokenize.encode(
        corpus, run.vocabulary, np.arange(len(texts)), settings.maxlen, settings.padding, settings.truncating
    )
    in_vocabulary = np.array([word in run.vocabulary.index for word in corpus.words], dtype=np.int64)
    known_so_far = np.concatenate([[0], np.cumsum(in_vocabulary[corpus.token_ids])])
    return EncodedTexts(inputs, corpus.lengths, known_so_far[corpus.offsets[1:]] - known_so_far[corpus.offsets[:-1]])


# What the run's tokenizer makes of a text, for the warning about unknown ones.
TOKEN_NOUNS = {"word": "words", "char": "characters", "morpheme": "morphemes"}


def unknown_text_warning(run: TrainedRun, encoded: EncodedTexts, listed: int = 3) -> Optional[str]:
    """One line about the texts of which the run's vocabulary knows no token (their predicted
    class is the model's answer to padding and unknown-word markers alone), or None."""
    noun = TOKEN_NOUNS.get(run.config.data.tokenizer, "tokens")
    blind = [number for number, known in enumerate(encoded.known.tolist(), start=1) if known == 0]
    if not blind:
        return None

    def detail(number: int) -> str:
        total = int(encoded.tokens[number - 1])
        return f"text {number}: 0 of {total} {noun} known" if total else f"text {number}: no {noun} at all"

    shown = "; ".join(detail(number) for number in blind[:listed]) + ("; ..." if len(blind) > listed else "")
    if len(blind) == 1:
        return f"warning: {shown} to the run's vocabulary, so its predicted class is a guess"
    return (
        f"warning: {len(blind)} of {len(encoded.known)} texts have no {noun[:-1]} known to the run's vocabulary ({shown}),"
        " so their predicted classes are guesses"
    )


def predict(
    run: TrainedRun,
    texts: Sequence[str],
    progress: Optional[Callable[[int, int], None]] = None,
    encoded: Optional[EncodedTexts] = None,
) -> np.ndarray:
    """Each text's class probabilities, shape (texts, classes); `progress(done, total)` after each
    batch. `encoded` is `encode_texts(run, texts)` when the caller has it already."""
    network = _load_network(results.RunDirectory(run.folder).model_path)
    inputs = (encoded or encode_texts(run, texts)).inputs
    outputs = []
    for start in range(0, len(inputs), BATCH_SIZE):
        outputs.append(np.asarray(network.predict_on_batch(inputs[start : start + BATCH_SIZE]), dtype=np.float64))
        if progress is not None:
            progress(min(start + BATCH_SIZE, len(inputs)), len(inputs))
    probabilities = np.concatenate(outputs) if outputs else np.zeros((0, 1))
    if probabilities.shape[1] == 1:
        # One sigmoid column: the probability of the second class.
        probabilities = np.concatenate([1.0 - probabilities, probabilities], axis=1)
    return probabilities


def _load_network(path: Path) -> Any:
    """The saved model at `path`; a damaged file is a PredictError naming it (Keras would say
    "File not found" of a file that is there but is not a zip archive)."""
    import zipfile

    import keras

    damaged = f"{path}: the model file is damaged"
    advice = "train the run again with rnnbench run CONFIG.yaml --force"
    if not zipfile.is_zipfile(path):
        raise PredictError(f"{damaged} (it is not the zip archive a .keras file is); {advice}")
    try:
        with _native_stderr_silenced():
            return keras.saving.load_model(path)
    except Exception as error:  # A damaged archive fails in many ways inside Keras and h5py.
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise PredictError(f"{damaged} ({reason}); {advice}") from None


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Keras loads a saved model through TensorFlow's file functions where TensorFlow is installed,
    whatever the backend, and TensorFlow's C++ start-up notices (CUDA probing, oneDNN) ignore
    TF_CPP_MIN_LOG_LEVEL there; they go to file descriptor 2, which is closed off meanwhile.
    Python exceptions are unaffected."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def predicted_names(run: TrainedRun, probabilities: np.ndarray) -> list[str]:
    """Class names as the run's metrics count them (a sigmoid above 0.5 is the second class)."""
    from rnnbench import metrics

    columns = probabilities[:, 1:] if len(run.class_names) == 2 else probabilities
    return [run.class_names[index] for index in metrics.predicted_classes(columns)]


def read_texts(path: Path, text_column: str) -> list[str]:
    """Texts of a file: the `text_column` of a TSV, CSV or JSONL file, or one per line; gzip or plain."""
    return data.read_texts(path, text_column, "--text-column")


def check_texts(texts: Sequence[str], source: str) -> None:
    if not texts:
        raise PredictError(f"{source}: no texts to predict")
    for number, text in enumerate(texts, start=1):
        if not text.strip():
            raise PredictError(f"{source}: text {number} is empty")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as error:
            # Bytes that are not UTF-8 reach Python's argv (and standard input, as the command
            # reads it) as lone surrogates, U+DC80 to U+DCFF for the bytes 0x80 to 0xFF.
            code = ord(text[error.start])
            byte = f"byte 0x{code - 0xDC00:02x} " if 0xDC80 <= code <= 0xDCFF else ""
            raise PredictError(
                f"{source}: text {number} is not UTF-8 text ({byte}at character {error.start + 1})"
            ) from None


def format_predictions(run: TrainedRun, texts: Sequence[str], probabilities: np.ndarray, output_format: str) -> str:
    """`table` (texts cut to 60 characters), `csv` or `jsonl`: each text, its predicted class and each class's probability."""
    names = predicted_names(run, probabilities)
    if output_format == "jsonl":
        return "\n".join(
            json.dumps(
                {"text": text, "predicted": name, "probabilities": dict(zip(run.class_names, map(float, row)))},
                ensure_ascii=False,
            )
            for text, name, row in zip(texts, names, probabilities)
        )
    header = ["text", "predicted", *(f"p({name})" for name in run.class_names)]
    if output_format == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(
            [text, name, *(f"{value:.6f}" for value in row)] for text, name, row in zip(texts, names, probabilities)
        )
        return buffer.getvalue().rstrip("\n")
    from tabulate import tabulate

    rows = [
        [_short(text), name, *(f"{value:.4f}" for value in row)] for text, name, row in zip(texts, names, probabilities)
    ]
    return tabulate(rows, headers=header, disable_numparse=True)


def _short(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
