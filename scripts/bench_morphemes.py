"""Benchmark: Korean morphemes of 200,000 short texts, mecab-ko beside kiwipiepy (goal: at most 30 s on 2 cores).

    RNNBENCH_DATA_DIR=/path/to/data python scripts/bench_morphemes.py [--texts 200000] [--repeats 1]

The corpus is built from the Korean chatbot questions (chatbot/all.tsv.gz, 11,823 texts of
13 characters on average): the questions themselves, then, until there are --texts of them,
a question drawn at random with one of its space-separated words swapped for a word drawn
from all the questions (random.Random(0)), so that the texts stay short, real Korean and
nearly all distinct. Each analyzer runs through rnnbench's own path (tokenize.tokenize:
pieces, token ids, merge) on one process and on all cores, the analyzers taking turns in the
same run, so that their ratio holds on a busy machine even when the seconds do not. Each
analyzer's model is loaded before the timings (its time is printed apart); processes the
pool starts load their own, and that is timed, as it is part of the path.
"""

import argparse
import contextlib
import gzip
import os
import random
import statistics
import time
from pathlib import Path
from typing import Iterator

from rnnbench import data, tokenize

ANALYZERS = ("mecab", "kiwi")
GOAL_SECONDS = 30.0


def chatbot_questions(data_dir: str) -> list[str]:
    with gzip.open(Path(data_dir) / "chatbot" / "all.tsv.gz", "rt", encoding="utf-8", newline="\n") as file:
        header = next(file).rstrip("\n").split("\t")
        column = header.index("text")
        return [line.rstrip("\n").split("\t")[column] for line in file]


def build_corpus(questions: list[str], count: int) -> list[str]:
    """The questions, then questions with one word swapped for another question's, to `count` texts."""
    generator = random.Random(0)
    words = [word for question in questions for word in question.split()]
    texts = list(questions[:count])
    while len(texts) < count:
        parts = generator.choice(questions).split()
        parts[generator.randrange(len(parts))] = generator.choice(words)
        texts.append(" ".join(parts))
    return texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--data-dir", default=os.environ.get(data.DATA_DIR_VARIABLE))
    arguments = parser.parse_args()
    if not arguments.data_dir:
        parser.error(f"set {data.DATA_DIR_VARIABLE} or --data-dir to the folder holding chatbot/all.tsv.gz")

    texts = build_corpus(chatbot_questions(arguments.data_dir), arguments.texts)
    cores = os.cpu_count() or 1
    print(
        f"machine: {cores} cores, load average {os.getloadavg()[0]:.2f} (shared: other work moves the seconds, less the ratios)"
    )
    print(
        f"corpus: {len(texts):,} texts, {len(set(texts)):,} distinct, {sum(map(len, texts)) / len(texts):.1f} characters on average"
    )

    for analyzer in ANALYZERS:
        tokenize.check_tokenizer("morpheme", analyzer)
        started = time.perf_counter()
        tokenize.tokenize(["모델을 미리 불러온다"], "morpheme", workers=1, analyzer=analyzer)
        print(f"{analyzer}: model loaded in {time.perf_counter() - started:.2f} s")

    # The path rnnbench takes: tokenize() chooses the processes from the corpus' size.
    chosen = {analyzer: tokenize.processes(texts, "morpheme", analyzer) for analyzer in ANALYZERS}
    # Every analyzer on 1 process and on all cores, whatever tokenize() would choose.
    forced = dict.fromkeys(ANALYZERS, 1)
    timings: dict[tuple[str, int], list[float]] = {
        (analyzer, workers): [] for analyzer in ANALYZERS for workers in sorted({1, cores})
    }
    corpora = {}
    for _ in range(arguments.repeats):
        for analyzer, workers in timings:
            with patched(tokenize._PARALLEL_MIN_CHARACTERS, forced):
                started = time.perf_counter()
                corpora[analyzer] = tokenize.tokenize(texts, "morpheme", workers=workers, analyzer=analyzer)
                timings[analyzer, workers].append(time.perf_counter() - started)
            print(f"  {analyzer}, {workers} process(es): {timings[analyzer, workers][-1]:.1f} s", flush=True)

    print(
        f"\n| analyzer | processes | seconds (median of {arguments.repeats}) | texts/s | tokens/text | distinct tokens |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for (analyzer, workers), seconds in timings.items():
        median = statistics.median(seconds)
        corpus = corpora[analyzer]
        print(
            f"| {analyzer} | {workers} | {median:.1f} | {len(texts) / median:,.0f} |"
            f" {len(corpus.token_ids) / len(texts):.2f} | {len(corpus.words):,} |"
        )
    for workers in sorted({1, cores}):
        ratio = statistics.median(timings["kiwi", workers]) / statistics.median(timings["mecab", workers])
        print(f"mecab is {ratio:.1f}x kiwi's speed on {workers} process(es) (same run, side by side)")
    for analyzer in ANALYZERS:
        best = statistics.median(timings[analyzer, chosen[analyzer]])
        print(
            f"{analyzer}, the path rnnbench takes ({chosen[analyzer]} process(es)): {best:.1f} s;"
            f" goal <= {GOAL_SECONDS:.0f} s {'met' if best <= GOAL_SECONDS else 'NOT met'}"
        )


@contextlib.contextmanager
def patched(table: dict, values: dict) -> Iterator[None]:
    saved = dict(table)
    table.update(values)
    try:
        yield
    finally:
        table.update(saved)


if __name__ == "__main__":
    main()
