"""The verdict's error rates and power, simulated (pure statistics, no training).

    python scripts/verdict_simulation.py [--families 2000] [--seed 2026]

Families of equal configs (seed spread 0.5 points, 3 seeds each, the same seeds: paired) give the
share of families with any false "better" (the family-wise error; the goal is at most 5%; an
"equivalent" is no error there, since the configs are equal). Then one config 1 point better at a spread of 0.3 points among 7: the share of its comparisons
called "better" (power) beside the noncentral-t power the seeds-needed figure plans with, and
the seeds per config that figure asks for to reach 80%.
"""

import argparse
import math
import time

import numpy as np

from rnnbench.verdict import TEST_KEY, group_runs, judge, power, seeds_needed


def family(means: list[float], spread: float, generator: np.random.Generator, seeds: int = 3) -> list:
    records = []
    for index, mean in enumerate(means):
        for seed, accuracy in enumerate(generator.normal(mean, spread, seeds), start=1):
            records.append(
                {
                    "name": f"c{index}",
                    "data": {"dataset": "d"},
                    "config": {"name": f"c{index}", "train": {"seed": seed}},
                    "result": {TEST_KEY: float(accuracy), "best_val_accuracy": float(accuracy)},
                }
            )
    return group_runs(records, TEST_KEY)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=2026)
    arguments = parser.parse_args()
    generator = np.random.default_rng(arguments.seed)
    for configs in (3, 7, 21):
        count = arguments.families if configs < 21 else arguments.families // 4
        started = time.perf_counter()
        wrong = sum(
            any(c.answer == "better" for c in judge(family([0.85] * configs, 0.005, generator))[0].comparisons)
            for _ in range(count)
        )
        share = wrong / count
        print(
            f"{configs:2d} equal configs x 3 seeds, {count} families: any false 'better' in {share:.1%}"
            f" (± {1.96 * math.sqrt(share * (1 - share) / count):.1%}), {time.perf_counter() - started:.1f} s"
        )
    found = total = 0
    level = None
    for _ in range(arguments.families):
        [result] = judge(family([0.86] + [0.85] * 6, 0.003, generator))
        level = result.strictest_level
        for comparison in result.comparisons:
            if "c0" in (comparison.first.name, comparison.second.name):
                total += 1
                found += comparison.answer == "better" and comparison.first.name == "c0"
    planned = float(power(3, 0.01, 0.003 * math.sqrt(2), level, paired=True))
    print(
        f"one config 1 point better (spread 0.3 points), 7 configs x 3 seeds: called better in {found / total:.1%} of its"
        f" comparisons; planned power at the strictest Holm level {level:.5f}: {planned:.1%};"
        f" seeds per config for 80%: {seeds_needed(0.01, 0.003 * math.sqrt(2), level, paired=True)}"
    )


if __name__ == "__main__":
    main()
