"""Memory at full-review sizes: what a run holds at data.num_words 30,000 and data.maxlen 500.

    RNNBENCH_DATA_DIR=../shared/data python scripts/memory_check.py [CONFIG.yaml] [--set KEY=VALUE ...] [--steps 20]

For the config (by default configs/best/gru.yaml at maxlen 500), in this one process: the peak
resident memory after reading and encoding the data (cold: the tokenizer cache is emptied
first; then warm, read back from it), after building the model, and after `--steps` training
batches; the encoded arrays' sizes and the tokenizer cache file's size. The peak (ru_maxrss)
only grows, so each line is the most the process had held by then.
"""

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", default="configs/best/gru.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=None)
    parser.add_argument("--steps", type=int, default=20)
    arguments = parser.parse_args()
    overrides = arguments.overrides if arguments.overrides is not None else ["data.maxlen=500", "train.seeds=null"]
    # A cache of its own, so that the first read really tokenizes and writes the cache.
    cache = tempfile.mkdtemp(prefix="rnnbench-memory-")
    os.environ["RNNBENCH_CACHE_DIR"] = cache

    from rnnbench import backend
    from rnnbench.config import load_config

    config = load_config(arguments.config, overrides)
    backend.select_backend(config.backend)
    from rnnbench import tokenize, train

    data_dir = os.environ.get("RNNBENCH_DATA_DIR")
    print(f"{config.name}: num_words {config.data.num_words:,}, maxlen {config.data.maxlen}, backend {config.backend}")
    print(f"start: peak {peak_mib():,.0f} MiB")
    for label in ("cold (tokenizing, writing the cache)", "warm (read from the cache)"):
        started = time.perf_counter()
        prepared = train.Prepared(config, data_dir, echo=lambda line: None)
        print(f"data {label}: {time.perf_counter() - started:.1f} s, peak {peak_mib():,.0f} MiB")
    arrays = {"x_train": prepared.x_train, "x_validation": prepared.x_validation, "x_test": prepared.x_test}
    for name, array in arrays.items():
        print(f"  {name}: {array.shape} {array.dtype}, {array.nbytes / 2**20:,.1f} MiB")
    cached = sorted(Path(tokenize.cache_folder()).glob("*.npz"))
    print(f"  tokenizer cache: {len(cached)} file(s), {sum(path.stat().st_size for path in cached) / 2**20:,.1f} MiB")
    network = train._compiled_model(config, prepared, None)
    print(f"model built ({network.count_params():,} parameters): peak {peak_mib():,.0f} MiB")
    rows = arguments.steps * config.train.batch_size
    started = time.perf_counter()
    network.fit(
        prepared.x_train[:rows], prepared.y_train[:rows], batch_size=config.train.batch_size, epochs=1, verbose=0
    )
    print(f"{arguments.steps} training steps: {time.perf_counter() - started:.1f} s, peak {peak_mib():,.0f} MiB")


if __name__ == "__main__":
    sys.exit(main())
