"""Benchmark: tokenize and index all 50,000 IMDB reviews (goal: at most 5 s on a 2-core machine).

    RNNBENCH_DATA_DIR=/path/to/data python scripts/bench_tokenize.py [--repeats 3]

Reading the files is timed apart. "tokenize + index" is the whole path from texts to padded
arrays: tokenizing every text, counting the vocabulary on the 25,000 training reviews, and
encoding all 50,000 at maxlen 200. Single-process and multi-process tokenizing run side by
side in the same process, so their ratio holds even on a noisy machine.
"""

import argparse
import os
import statistics
import time

import numpy as np

from rnnbench import data, tokenize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-dir", default=os.environ.get(data.DATA_DIR_VARIABLE))
    arguments = parser.parse_args()

    started = time.perf_counter()
    dataset = data.load_imdb(arguments.data_dir)
    read_seconds = time.perf_counter() - started
    texts = dataset.train_texts + dataset.test_texts
    train_rows = np.arange(len(dataset.train_texts))
    all_rows = np.arange(len(texts))

    def tokenize_and_index(workers: int) -> float:
        started = time.perf_counter()
        corpus = tokenize.tokenize(texts, workers=workers)
        vocabulary = tokenize.build_vocabulary(corpus, train_rows, 10_000)
        tokenize.encode(corpus, vocabulary, all_rows, 200)
        return time.perf_counter() - started

    timings: dict[int, list[float]] = {1: [], os.cpu_count() or 1: []}
    for _ in range(arguments.repeats):
        for workers in timings:
            timings[workers].append(tokenize_and_index(workers))

    print(f"machine: {os.cpu_count()} cores; {len(texts):,} reviews, {sum(map(len, texts)) / 1e6:.1f} M characters")
    print(f"read both splits: {read_seconds:.2f} s")
    for workers, seconds in timings.items():
        print(
            f"tokenize + index, {workers} process(es): median {statistics.median(seconds):.2f} s, best {min(seconds):.2f} s over {len(seconds)} runs"
        )
    if len(timings) > 1:
        single, parallel = (statistics.median(seconds) for seconds in timings.values())
        print(f"speed-up from {max(timings)} processes: {single / parallel:.2f}x (same run, side by side)")
    best = statistics.median(timings[max(timings)])
    print(f"goal <= 5 s: {'met' if best <= 5 else 'NOT met'} ({best:.2f} s, the default path)")


if __name__ == "__main__":
    main()
