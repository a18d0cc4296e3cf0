import math

import numpy as np
import pytest
from scipy import stats

from rnnbench import verdict as verdict_module
from rnnbench.record import RunRecord
from rnnbench.verdict import (
    DELTA,
    TEST_KEY,
    counted_runs,
    group_runs,
    holm,
    judge,
    mark_replaced,
    paired_difference,
    power,
    seeds_needed,
    rows_half_width,
    val_test_gap,
    verdict,
    welch_difference,
)


def record(name: str, seed: int, accuracy: float, dataset: str = "imdb", test: float = 0.8) -> RunRecord:
    return RunRecord.from_json(
        {
            "name": name,
            "data": {"dataset": dataset},
            "config": {"name": name, "model": {"cell": "gru"}, "train": {"seed": seed, "seeds": None}},
            "result": {"best_val_accuracy": accuracy, "test_accuracy": test},
        }
    )


def changed(entry: RunRecord, **fields) -> RunRecord:
    """`entry` with `fields` of its JSON replaced or added, made again by the one constructor."""
    return RunRecord.from_json({**entry.to_json(), **fields})


def runs(name: str, accuracies: list[float], dataset: str = "imdb", first_seed: int = 1) -> list[RunRecord]:
    """Runs whose validation and test accuracies are both `accuracies`, seeds from `first_seed` on."""
    return [
        record(name, seed, accuracy, dataset, test=accuracy)
        for seed, accuracy in enumerate(accuracies, start=first_seed)
    ]


def test_welch_and_paired_agree_with_scipy():
    first, second = [0.88, 0.87, 0.89, 0.885], [0.80, 0.82, 0.81, 0.83]
    welch = welch_difference(first, second)
    reference = stats.ttest_ind(first, second, equal_var=False)
    assert welch.p_value() == pytest.approx(reference.pvalue, rel=1e-9)
    assert welch.interval(0.95) == pytest.approx(tuple(reference.confidence_interval(0.95)), rel=1e-9)
    paired = paired_difference(dict(enumerate(first)), dict(enumerate(second)))
    reference = stats.ttest_rel(first, second)
    assert paired.p_value() == pytest.approx(reference.pvalue, rel=1e-9)
    assert paired.interval(0.95) == pytest.approx(tuple(reference.confidence_interval(0.95)), rel=1e-9)
    assert (paired.method, paired.degrees, welch.method) == ("paired t", 3, "Welch t")


def test_equivalence_is_two_one_sided_tests():
    paired = paired_difference({1: 0.801, 2: 0.802, 3: 0.800, 4: 0.803}, {1: 0.800, 2: 0.800, 3: 0.801, 4: 0.800})
    differences = [0.001, 0.002, -0.001, 0.003]
    lower = stats.ttest_1samp(differences, -DELTA, alternative="greater").pvalue
    upper = stats.ttest_1samp(differences, DELTA, alternative="less").pvalue
    assert paired.equivalence_p(DELTA) == pytest.approx(max(lower, upper), rel=1e-9)
    # The 90% interval lies inside ±delta exactly when both one-sided tests reject at 5%.
    low, high = paired.interval(0.90)
    assert (paired.equivalence_p(DELTA) < 0.05) == (-DELTA < low and high < DELTA)


def test_holm_by_hand():
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # An untestable comparison counts as a test that never rejects.
    assert holm([None, 0.01]) == pytest.approx([1.0, 0.02])


def test_power_matches_a_simulated_t_test_and_seeds_needed_inverts_it():
    generator = np.random.default_rng(7)
    difference, spread, level = 0.01, 0.006, 0.01
    for paired in (True, False):
        needed = seeds_needed(difference, spread, level, paired)
        assert (
            power(needed, difference, spread, level, paired)
            >= 0.8
            > power(needed - 1, difference, spread, level, paired)
        )
        trials = 4000
        if paired:
            # `spread` is that of the per-seed differences.
            p_values = stats.ttest_1samp(generator.normal(difference, spread, (trials, needed)), 0.0, axis=1).pvalue
        else:
            first = generator.normal(difference, spread, (trials, needed))
            p_values = stats.ttest_ind(first, generator.normal(0.0, spread, (trials, needed)), axis=1).pvalue
        observed = float(np.mean(p_values < level))
        expected = float(power(needed, difference, spread, level, paired))
        assert abs(observed - expected) < 4 * math.sqrt(expected * (1 - expected) / trials)
    assert seeds_needed(0.01, 0.0, 0.05, True) is None
    assert seeds_needed(0.0001, 0.5, 0.001, False) == verdict_module.MAX_SEEDS + 1


def _family_of(means: list[float], spread: float, generator: np.random.Generator, seeds: int = 3) -> list:
    records = []
    for index, mean in enumerate(means):
        records += runs(f"c{index}", list(generator.normal(mean, spread, seeds)))
    return group_runs(records, TEST_KEY)


@pytest.mark.slow
def test_family_wise_error_of_seven_equal_configs_is_held_at_five_percent():
    """2,000 families of 7 equal configs x 3 seeds: the share with any false 'better' is at most 5%
    (plus its Monte-Carlo error); the lecture table's design, uncorrected, was wrong in 27%."""
    generator = np.random.default_rng(2026)
    families = 2000
    wrong = sum(
        any(c.answer == "better" for c in judge(_family_of([0.85] * 7, 0.005, generator))[0].comparisons)
        for _ in range(families)
    )
    assert wrong / families <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / families)


@pytest.mark.slow
def test_power_of_one_better_config_matches_the_seeds_needed_formula():
    """7 configs x 3 seeds, one of them 1 point better at a spread of 0.3 points: the share of its
    six comparisons called 'better' matches the power the seeds-needed formula plans with, at the
    family's strictest Holm level (a bound: Holm's later steps are a little more lenient)."""
    generator = np.random.default_rng(11)
    families, found, total, level = 1500, 0, 0, None
    for _ in range(families):
        [family] = judge(_family_of([0.86] + [0.85] * 6, 0.003, generator))
        level = family.strictest_level
        for comparison in family.comparisons:
            if "c0" in (comparison.first.name, comparison.second.name):
                total += 1
                found += comparison.answer == "better" and comparison.first.name == "c0"
    observed = found / total
    # Paired over the shared seeds: per-seed differences of two independent runs spread by sqrt(2) x 0.3 points.
    planned = float(power(3, 0.01, 0.003 * math.sqrt(2), level, paired=True))
    # The comparisons of one family are correlated, so the error is taken per family (6 per family).
    error = math.sqrt(planned * (1 - planned) / families)
    assert planned - 3 * error <= observed <= planned + 3 * error + 0.01
    assert level == pytest.approx(0.05 / 42)


def test_the_same_config_under_three_names_is_equivalent_never_better():
    accuracies = [0.851, 0.846, 0.849]
    groups = group_runs(runs("a", accuracies) + runs("b", accuracies) + runs("c", accuracies), TEST_KEY)
    [family] = judge(groups)
    assert [c.answer for c in family.comparisons] == ["equivalent"] * 3
    assert all(c.difference.method == "paired t" and c.difference.estimate == 0.0 for c in family.comparisons)
    lines = verdict(groups)
    assert (
        lines[2]
        == "  equivalent within ±0.50 points: a and b, +0.00 points (raw 90% CI +0.00 to +0.00; paired t, equivalence Holm p<0.001)"
    )


def test_two_configs_with_identical_constant_accuracies_are_equivalent_not_beyond_noise():
    groups = group_runs(runs("a", [0.8, 0.8]) + runs("b", [0.8, 0.8]), TEST_KEY)
    [comparison] = judge(groups)[0].comparisons
    assert comparison.answer == "equivalent" and comparison.difference.p_value() == 1.0
    # Constant but different: no spread to weigh the difference against, so undecided, never p=0.
    groups = group_runs(runs("a", [0.81, 0.81]) + runs("b", [0.80, 0.80]), TEST_KEY)
    [comparison] = judge(groups)[0].comparisons
    assert comparison.answer == "undecided" and comparison.difference.p_value() is None
    assert verdict(groups)[2] == (
        "  undecided: a vs b, +1.00 points (raw 95% CI +1.00 to +1.00; paired t, untestable): no spread over seeds to weigh"
        " the difference against; compare --bootstrap also resamples the test rows"
    )


def test_verdict_lines_name_the_family_and_what_to_run_next():
    better = runs("gru", [0.880, 0.882, 0.881, 0.879, 0.883])
    worse = runs("simple_rnn", [0.740, 0.735, 0.745, 0.738, 0.742])
    close = runs("lstm", [0.878, 0.884, 0.872, 0.881, 0.874])
    lines = verdict(group_runs(better + worse + close, TEST_KEY))
    assert lines[0] == (
        "Verdict on test accuracy at each run's best-validation epoch, every pair of configs (paired t), a difference and an"
        " equivalence test (±0.50 points) per pair, Holm over each dataset's tests at 5%:"
    )
    assert lines[1] == "- imdb: 3 configs with 2 or more seeds, 3 pairs, 6 tests, Holm; highest mean: gru 0.8810 (n=5)"
    assert lines[2].startswith(
        "  better: gru over simple_rnn by +14.10 points (raw 95% CI +13.61 to +14.59; paired t, p<0.001, Holm p<0.001)"
    )
    assert lines[2].endswith("; paired t, p<0.001, Holm p<0.001)")
    assert lines[3].startswith("  better: lstm over simple_rnn by +13.")
    assert lines[4] == (
        "  undecided: gru vs lstm, +0.32 points (raw 95% CI -0.37 to +1.01; paired t, Holm p=1.000): about 14 more seeds each would"
        " find a 0.50-point difference with 80% power; about 15 more to show equivalence if there is none"
    )
    [family] = judge(group_runs(better + worse + close, TEST_KEY))
    [undecided] = [c for c in family.comparisons if c.second.name == "lstm"]
    assert undecided.answer == "undecided"
    assert undecided.seeds_needed == seeds_needed(DELTA, undecided.difference.spread, 0.05 / 6, True)
    assert (
        f"about {undecided.seeds_needed - 5} more seeds each would find a 0.50-point difference with 80% power"
        in lines[4]
    )


def test_welch_when_the_seeds_differ_and_the_test_rows_noise_is_said():
    with_rows = [
        changed(entry, result={**entry.result.to_json(), "test_confusion": [[11000, 1500], [1500, 11000]]})
        for entry in runs("gru", [0.88, 0.87, 0.89])
    ]
    lines = verdict(group_runs(with_rows + runs("lstm", [0.80, 0.81, 0.79], first_seed=4), TEST_KEY))
    assert "(Welch t)" in lines[0]
    assert lines[1].endswith(
        "the 25,000 test rows alone make one accuracy uncertain by ±0.40 points (95%), a noise seeds don't show"
    )
    assert rows_half_width(0.9, 25_000) == pytest.approx(0.00372, abs=1e-5)


def test_the_test_outcome_is_tested_unless_validation_is_asked_or_missing():
    # Validation says gru, test says lstm: the verdict goes by test unless told otherwise.
    records = [record("gru", seed, 0.90 + 0.001 * seed, test=0.80 + 0.001 * seed) for seed in (1, 2, 3)]
    records += [record("lstm", seed, 0.85 + 0.001 * seed, test=0.85 + 0.002 * seed) for seed in (1, 2, 3)]
    assert "highest mean: lstm" in verdict(group_runs(records, TEST_KEY))[1]
    by_validation = verdict(group_runs(records), outcome="validation")
    assert (
        by_validation[0].startswith("Verdict on best validation accuracy,") and "highest mean: gru" in by_validation[1]
    )
    without_test = [changed(entry, result={"best_val_accuracy": entry.result.best_val_accuracy}) for entry in records]
    lines = verdict(group_runs(without_test, TEST_KEY))
    assert "some runs have no test accuracy, so best validation accuracy is tested" in lines[1]


def test_single_runs_are_named_and_not_tested():
    lines = verdict(group_runs(runs("gru", [0.88, 0.89, 0.87]) + runs("lstm", [0.87]), TEST_KEY))
    assert lines[-1] == "  too few seeds to test: lstm (n=1); rerun with --seeds 3 or more"
    assert "0 pairs, 0 tests" in lines[1]


def test_verdict_is_per_dataset():
    lines = verdict(
        group_runs(runs("imdb_gru", [0.88, 0.87]) + runs("chat_gru", [0.80, 0.81], dataset="chatbot"), TEST_KEY)
    )
    assert lines[1].startswith("- imdb: 1 config with 2 or more seeds, 0 pairs")
    assert lines[2].startswith("- chatbot: 1 config with 2 or more seeds, 0 pairs")


def test_a_seed_trained_twice_counts_once():
    # The same config and seed trained twice (train.seeds: [1, 1], run --force, two runs at once).
    twice = [record("gru", 1, 0.88), record("gru", 1, 0.88), record("lstm", 1, 0.80), record("lstm", 1, 0.80)]
    groups = group_runs(twice)
    assert [(group.name, group.n, group.seeds) for group in groups] == [("gru", 1, [1]), ("lstm", 1, [1])]
    # Not "beyond noise (p<0.001)" from one run each.
    assert verdict(groups)[-1] == "  too few seeds to test: gru (n=1), lstm (n=1); rerun with --seeds 3 or more"


def test_the_latest_run_of_a_seed_replaces_the_earlier_one():
    first = changed(record("gru", 2, 0.70), run_id="old", updated="2026-11-28T10:00:05+00:00")
    retrained = changed(record("gru", 2, 0.86), run_id="new", updated="2026-11-28T11:00:00+00:00")
    others = [
        changed(record("gru", seed, accuracy), run_id=f"seed{seed}", updated="2026-11-28T10:00:00+00:00")
        for seed, accuracy in ((1, 0.85), (3, 0.87))
    ]
    # Oldest started first, as read_records returns them; the retrained run finished last whatever the order.
    for records in ([others[0], first, others[1], retrained], [retrained, others[0], first, others[1]]):
        [group] = group_runs(records)
        assert (group.n, group.seeds, group.mean) == (3, [1, 2, 3], pytest.approx(0.86))
        assert [entry.run_id for entry in counted_runs(records)] == [
            entry.run_id for entry in records if entry is not first
        ]
        assert [entry.status for entry in mark_replaced(records) if entry.run_id == "old"] == ["replaced"]
        assert [entry.status for entry in mark_replaced(records)].count("replaced") == 1


def test_runs_finished_together_and_records_just_returned_count_the_later_one():
    same_second = [
        changed(record("gru", 1, accuracy), updated="2026-11-28T10:00:00+00:00") for accuracy in (0.80, 0.82)
    ]
    assert group_runs(same_second)[0].mean == pytest.approx(0.82)
    # A record the runner has just returned (not read back from the index) finished after every indexed one.
    just_trained = record("gru", 1, 0.84)
    assert group_runs([just_trained, *same_second])[0].mean == pytest.approx(0.84)


def test_only_completed_runs_count_and_none_is_replaced_by_an_unfinished_one():
    interrupted = changed(record("gru", 1, 0.0), status="interrupted", result={})
    done = changed(
        record("gru", 1, 0.85),
        status="completed",
        updated="2026-11-28T09:00:00+00:00",
        parameters=1,
        backend="jax",
        device="CPU: test",
    )
    assert counted_runs([done, interrupted]) == [done]
    assert [entry.status for entry in mark_replaced([done, interrupted])] == ["completed", "interrupted"]


def test_val_test_gap():
    assert val_test_gap(record("gru", 1, 0.88, test=0.85)) == pytest.approx(0.03)
    assert val_test_gap(changed(record("gru", 1, 0.88), result={"best_val_accuracy": 0.88})) is None
    [group] = group_runs([record("gru", 1, 0.88, test=0.85), record("gru", 2, 0.90, test=0.80)])
    assert group.val_test_gaps == pytest.approx([0.03, 0.10])


def test_a_run_recorded_before_a_key_existed_groups_with_todays_runs_of_the_same_settings():
    from rnnbench.config import config_from_mapping

    today = config_from_mapping({"name": "gru", "train": {"seed": 2}})
    new = changed(record("gru", 2, 0.86), config=today.to_dict(), group=today.group_fingerprint())
    # Written by an earlier version: without a key added since, and with a group key of its own reading.
    earlier = today.to_dict()
    del earlier["model"]["pooling"]
    earlier["train"]["seed"] = 1
    old = changed(record("gru", 1, 0.85), config=earlier, group="computed by an earlier version")
    [group] = group_runs([old, new])
    assert (group.n, group.seeds) == (2, [1, 2])
    # A record this version can't read as a config still groups by what it stored.
    unreadable = changed(
        record("odd", 1, 0.5),
        config={"name": "odd", "model": {"cell": "transformer"}, "train": {"seed": 1}},
        group="odd",
    )
    assert [group.name for group in group_runs([unreadable])] == ["odd"]


@pytest.mark.parametrize("paired", [True, False])
def test_power_grows_with_the_seeds_and_is_never_nan(paired):
    # SciPy's noncentral t returns NaN for a tail too small to compute; the power must not.
    for difference, spread, level in (
        (0.01, 0.003 * math.sqrt(2), 0.05 / 42),
        (0.005, 0.004, 0.05 / 420),
        (0.02, 0.001, 0.05),
    ):
        chances = power(np.arange(2, 200), difference, spread, level, paired)
        assert not np.isnan(chances).any() and (np.diff(chances) >= -1e-12).all() and chances[-1] == pytest.approx(1.0)
    assert seeds_needed(0.01, 0.003 * math.sqrt(2), 0.05 / 42, paired=True) == 8


@pytest.mark.parametrize("equivalence", [False, True])
def test_seeds_needed_each_is_the_fewest_seeds_that_reach_the_planned_power(equivalence):
    generator = np.random.default_rng(0)
    spreads = [*generator.uniform(0.0005, 0.05, 200), 0.0]
    pairing = [*(generator.random(200) < 0.5), True]
    chance = verdict_module.equivalence_power if equivalence else power
    level = 0.05 / 42
    for spread, paired, seeds in zip(
        spreads, pairing, verdict_module.seeds_needed_each(DELTA, spreads, level, pairing, equivalence=equivalence)
    ):
        if spread == 0:
            assert seeds is None
        elif seeds > verdict_module.MAX_SEEDS:
            assert chance(verdict_module.MAX_SEEDS, DELTA, spread, level, paired) < 0.8
        else:
            assert chance(seeds, DELTA, spread, level, paired) >= 0.8
            assert seeds == 2 or chance(seeds - 1, DELTA, spread, level, paired) < 0.8
