"""Language-model pretraining speed (model.pretrained_encoder: lm) at several sizes, side by side
in one process: words per second of configs/best/gru_lm.yaml's language model (both directions)
at each of --units, on IMDB's unlabeled reviews, after one batch that compiles; and the seconds
of each pass's held-out perplexity (200 texts, the full softmax), lm's on the backend in float32
against the same sum in NumPy float64 (how lm computed it before), with their relative difference.

    python scripts/bench_lm.py --units 64 256 --batches 100      (RNNBENCH_DATA_DIR set; backend from KERAS_BACKEND)

It prints, per size, words/s and the minutes one epoch over the corpus would take, each size's
words/s as a ratio of the first's, and the perplexity's seconds both ways. docs/data.md and
docs/performance.md quote it.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from rnnbench import lm  # noqa: E402
from rnnbench.config import load_config  # noqa: E402


def float64_perplexity(network, plan, held_out) -> float:
    """The held-out perplexity in NumPy float64, 1,024 positions at a time (lm's code before commit
    "lm: the held-out perplexity on the backend")."""
    kernel, bias = (np.asarray(weight, np.float64) for weight in network.get_layer("softmax").get_weights())
    total, count = 0.0, 0
    for direction in plan.directions:
        inputs, targets = held_out[direction]
        encoder = keras.Model(
            network.get_layer(f"{direction}_tokens").output,
            network.get_layer(f"{direction}_{plan.config.model.layers}").output,
        )
        hidden = np.asarray(encoder.predict(inputs, batch_size=256, verbose=0), np.float64).reshape(-1, kernel.shape[1])
        wanted = targets.reshape(-1)
        hidden, wanted = hidden[wanted > 0], wanted[wanted > 0]
        for start in range(0, len(wanted), 1024):
            logits = hidden[start : start + 1024] @ kernel.T + bias
            largest = logits.max(axis=1, keepdims=True)
            log_sums = np.log(np.exp(logits - largest).sum(axis=1)) + largest[:, 0]
            total += float((log_sums - logits[np.arange(len(logits)), wanted[start : start + 1024]]).sum())
            count += len(logits)
    return float(np.exp(total / count))


def perplexity_seconds(network, plan) -> dict[str, float]:
    """Seconds of lm.held_out_perplexity and of the float64 NumPy sum, each after a first call
    that compiles, on the 200 held-out texts; and their relative difference."""
    _, held_out_rows = plan.held_out_rows()
    held_out = {direction: plan.windows(held_out_rows, direction) for direction in plan.directions}
    figures = {}
    for name, function in (("backend_float32", lm.held_out_perplexity), ("numpy_float64", float64_perplexity)):
        function(network, plan, held_out)
        started = time.perf_counter()
        figures[name] = function(network, plan, held_out)
        figures[f"{name}_seconds"] = time.perf_counter() - started
    figures["relative_difference"] = abs(figures["backend_float32"] / figures["numpy_float64"] - 1)
    return figures


def words_per_second(units: int, batches: int, data_dir: str | None) -> tuple[float, int, dict[str, float]]:
    """(words/s over `batches` batches after a compiling one, the corpus' words per epoch, the
    held-out perplexity's seconds both ways)."""
    config = load_config("configs/best/gru_lm.yaml", [f"model.units={units}"])
    plan = lm._Plan.of(config, lm.language_model_corpus(config, data_dir, lambda line: None))
    keras.utils.set_random_seed(lm.LM_SEED)
    network = lm.language_model(config, plan.directions)
    training_rows, _ = plan.held_out_rows()
    wanted = (batches + 1) * lm.BATCH_SIZE
    # Enough texts for the batches wanted (a review gives about 2.3 windows).
    rows = training_rows[: wanted // 2 + 1]
    train = {direction: plan.windows(rows, direction) for direction in plan.directions}
    windows = len(train["forward"][0])
    if windows < wanted:
        raise SystemExit(f"{windows} windows, fewer than the {wanted} wanted")
    negatives = lm.draw_negatives(np.random.default_rng(0), wanted, config.data.num_words)
    inputs = [array[:wanted] for direction in plan.directions for array in train[direction]]
    targets = np.zeros(wanted, np.float32)
    first = lm.BATCH_SIZE
    network.fit(
        [*[array[:first] for array in inputs], negatives[:first]], targets[:first], batch_size=lm.BATCH_SIZE, verbose=0
    )
    started = time.perf_counter()
    network.fit(
        [*[array[first:] for array in inputs], negatives[first:]],
        targets[first:],
        batch_size=lm.BATCH_SIZE,
        shuffle=False,
        verbose=0,
    )
    seconds = time.perf_counter() - started
    words = batches * lm.BATCH_SIZE * lm.WINDOW * len(plan.directions)
    all_windows = len(plan.windows(training_rows, "forward")[0])
    return words / seconds, all_windows * lm.WINDOW * len(plan.directions), perplexity_seconds(network, plan)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    arguments = parser.parse_args()
    rows = []
    for units in arguments.units:
        speed, epoch_words, perplexity = words_per_second(units, arguments.batches, arguments.data_dir)
        rows.append(
            {"units": units, "words_per_second": speed, "epoch_minutes": epoch_words / speed / 60, **perplexity}
        )
        print(
            f"{units} units: {speed:,.0f} words/s ({speed / rows[0]['words_per_second']:.2f} x {arguments.units[0]} units),"
            f" {rows[-1]['epoch_minutes']:.1f} min per epoch of training, {keras.backend.backend()};"
            f" held-out perplexity {perplexity['backend_float32_seconds']:.1f} s on the backend in float32,"
            f" {perplexity['numpy_float64_seconds']:.1f} s in NumPy float64"
            f" ({perplexity['numpy_float64_seconds'] / perplexity['backend_float32_seconds']:.2f} x),"
            f" relative difference {perplexity['relative_difference']:.1e}",
            flush=True,
        )
    if arguments.json:
        with open(arguments.json, "w") as handle:
            json.dump(
                {"backend": keras.backend.backend(), "batches": arguments.batches, "rows": rows}, handle, indent=2
            )


if __name__ == "__main__":
    main()
