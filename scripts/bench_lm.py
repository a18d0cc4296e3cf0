"""Language-model pretraining speed (model.pretrained_encoder: lm) at several sizes, side by side
in one process: words per second of configs/best/gru_lm.yaml's language model (both directions)
at each of --units, on IMDB's unlabeled reviews, after one batch that compiles.

    python scripts/bench_lm.py --units 64 256 --batches 100      (RNNBENCH_DATA_DIR set; backend from KERAS_BACKEND)

It prints, per size, words/s and the minutes one epoch over the corpus would take, and each
size's words/s as a ratio of the first's. docs/data.md quotes it.
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


def words_per_second(units: int, batches: int, data_dir: str | None) -> tuple[float, int]:
    """(words/s over `batches` batches after a compiling one, the corpus' words per epoch)."""
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
    all_windows = sum(-(-max(int(length) - 1, 0) // lm.WINDOW) for length in np.diff(plan.offsets)[training_rows])
    return words / seconds, all_windows * lm.WINDOW * len(plan.directions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    arguments = parser.parse_args()
    rows = []
    for units in arguments.units:
        speed, epoch_words = words_per_second(units, arguments.batches, arguments.data_dir)
        rows.append({"units": units, "words_per_second": speed, "epoch_minutes": epoch_words / speed / 60})
        print(
            f"{units} units: {speed:,.0f} words/s ({speed / rows[0]['words_per_second']:.2f} x {arguments.units[0]} units),"
            f" {rows[-1]['epoch_minutes']:.1f} min per epoch of training, {keras.backend.backend()}",
            flush=True,
        )
    if arguments.json:
        with open(arguments.json, "w") as handle:
            json.dump(
                {"backend": keras.backend.backend(), "batches": arguments.batches, "rows": rows}, handle, indent=2
            )


if __name__ == "__main__":
    main()
