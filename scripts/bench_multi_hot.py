"""Benchmark: the `ann` model's bag of words, rnnbench's MultiHot against Keras' CategoryEncoding.

    python scripts/bench_multi_hot.py [--rows 2048] [--maxlen 200] [--backends jax tensorflow torch]

Per backend, in a fresh process: both layers give the same 0/1 values on the same token ids
(checked), then each trains MultiHot/CategoryEncoding -> Dense(32, relu) -> Dense(1, sigmoid)
for one timed epoch after a warm-up, side by side. Random token ids stand in for reviews; only
the shapes matter for speed. CategoryEncoding is skipped where its one-hot tensor (rows x maxlen
x 10,000 floats per batch) could not fit, as on the torch backend for large inputs.
"""

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time

WORKER = """
import json, sys, time
import keras
import numpy as np
from keras import layers
from rnnbench.model import MultiHot

rows, maxlen, vocabulary, skip_category = int(sys.argv[1]), int(sys.argv[2]), 10_000, sys.argv[3] == "1"
tokens = np.random.default_rng(0).integers(0, vocabulary, size=(rows, maxlen)).astype("int32")
tokens[:, : maxlen // 4] = 0  # Pre-padding, as rnnbench encodes reviews.
labels = (tokens[:, -1] % 2).astype("float32")
found = {}
sample = tokens[:8]
found["same_values"] = bool(np.array_equal(
    keras.ops.convert_to_numpy(MultiHot(vocabulary)(sample)),
    keras.ops.convert_to_numpy(layers.CategoryEncoding(num_tokens=vocabulary, output_mode="multi_hot")(sample)),
))
candidates = {"MultiHot": lambda: MultiHot(vocabulary)}
if not skip_category:
    candidates["CategoryEncoding"] = lambda: layers.CategoryEncoding(num_tokens=vocabulary, output_mode="multi_hot")
for name, make in candidates.items():
    model = keras.Sequential([keras.Input((maxlen,), dtype="int32"), make(), layers.Dense(32, activation="relu"), layers.Dense(1, activation="sigmoid")])
    model.compile("adam", "binary_crossentropy")
    model.fit(tokens[:64], labels[:64], batch_size=32, verbose=0)
    started = time.perf_counter()
    model.fit(tokens, labels, batch_size=32, verbose=0)
    found[name] = rows / (time.perf_counter() - started)
print(json.dumps(found))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2048)
    parser.add_argument("--maxlen", type=int, default=200)
    parser.add_argument("--backends", nargs="+", default=["jax", "tensorflow", "torch"])
    arguments = parser.parse_args()
    print(
        f"{arguments.rows:,} rows of {arguments.maxlen} token ids, vocabulary 10,000, batch 32; {os.cpu_count()} cores"
    )
    print()
    print("| backend | MultiHot samples/s | CategoryEncoding samples/s | ratio | same values |")
    print("|---|---:|---:|---:|---|")
    for backend in arguments.backends:
        if importlib.util.find_spec(backend) is None:
            print(f"| {backend} | not installed | | | |")
            continue
        # Torch's CPU allocator can't hold CategoryEncoding's one-hot tensor for these sizes.
        skip_category = backend == "torch" and arguments.rows * arguments.maxlen > 256 * 200
        environment = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
        started = time.perf_counter()
        completed = subprocess.run(
            [sys.executable, "-c", WORKER, str(arguments.rows), str(arguments.maxlen), "1" if skip_category else "0"],
            capture_output=True,
            text=True,
            env=environment,
        )
        if completed.returncode != 0:
            print(f"| {backend} | failed: {completed.stderr.strip().splitlines()[-1][:120]} | | | |")
            continue
        found = json.loads(completed.stdout.splitlines()[-1])
        category = found.get("CategoryEncoding")
        ratio = f"{found['MultiHot'] / category:.1f} ×" if category else "-"
        category_text = f"{category:,.0f}" if category else "skipped (out of memory)"
        print(
            f"| {backend} | {found['MultiHot']:,.0f} | {category_text} | {ratio} | {found['same_values']} |", flush=True
        )
        print(f"  ({backend}: {time.perf_counter() - started:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
