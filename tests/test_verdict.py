import math

import pytest

from rnnbench.verdict import counted_runs, group_runs, mark_replaced, student_t_cdf, t_quantile_975, val_test_gap, verdict, welch_test


def record(name: str, seed: int, accuracy: float, dataset: str = "imdb", test: float = 0.8) -> dict:
    return {
        "name": name,
        "data": {"dataset": dataset},
        "config": {"name": name, "model": {"cell": "gru"}, "train": {"seed": seed, "seeds": None}},
        "result": {"best_val_accuracy": accuracy, "test_accuracy": test},
    }


def runs(name: str, accuracies: list[float], dataset: str = "imdb") -> list[dict]:
    return [record(name, seed, accuracy, dataset) for seed, accuracy in enumerate(accuracies, start=1)]


@pytest.mark.parametrize(
    "degrees, t, expected",
    # Reference values from scipy.special.stdtr.
    [(1, 1.0, 0.75), (2, -1.2, 0.17650168038968475), (2.5, -1.2, 0.1657194188329388), (4, 2.776, 0.9749886108400118),
     (10, 2.0, 0.9633059826146299), (3.3, 5.1, 0.9942440436231974), (100, -3.0, 0.0017039576716647233)],
)
def test_student_t_cdf(degrees, t, expected):
    assert student_t_cdf(t, degrees) == pytest.approx(expected, abs=1e-12)


def test_t_quantiles():
    assert t_quantile_975(2) == 4.303 and t_quantile_975(30) == 2.042
    assert t_quantile_975(10_000) == pytest.approx(1.960, abs=0.001)


def test_welch_by_hand():
    statistic, degrees, p_value = welch_test([0.88, 0.87, 0.89], [0.80, 0.82, 0.81])
    # Means differ by 0.07 with standard error sqrt(0.0001/3 + 0.0001/3).
    assert statistic == pytest.approx(0.07 / math.sqrt(2 * 0.0001 / 3))
    assert degrees == pytest.approx(4.0)
    assert p_value == pytest.approx(2 * student_t_cdf(-statistic, 4.0))
    assert welch_test([0.5, 0.5], [0.5, 0.5]) == (0.0, math.inf, 1.0)
    assert welch_test([0.6, 0.6], [0.5, 0.5])[2] == 0.0


def test_groups_share_everything_but_the_seed():
    groups = group_runs(runs("gru", [0.85, 0.86, 0.87]) + runs("lstm", [0.80, 0.81]))
    assert [(group.name, group.n) for group in groups] == [("gru", 3), ("lstm", 2)]
    assert groups[0].mean == pytest.approx(0.86)
    assert groups[0].std == pytest.approx(0.01)
    low, high = groups[0].interval
    assert (low, high) == pytest.approx((0.86 - 4.303 * 0.01 / math.sqrt(3), 0.86 + 4.303 * 0.01 / math.sqrt(3)))
    assert groups[1].interval is not None and group_runs(runs("one", [0.5]))[0].interval is None


def test_verdict_real_difference():
    lines = verdict(group_runs(runs("gru", [0.880, 0.882, 0.881, 0.879, 0.883]) + runs("simple_rnn", [0.740, 0.735, 0.745, 0.738, 0.742])))
    assert lines[1] == "- best: gru (mean 0.8810, n=5)"
    assert lines[2] == "  simple_rnn: below gru, beyond noise (p<0.001; n=5 each)"


def test_verdict_tie():
    lines = verdict(group_runs(runs("gru", [0.880, 0.875, 0.884, 0.871, 0.886]) + runs("lstm", [0.878, 0.884, 0.872, 0.881, 0.874])))
    assert lines[1].startswith("- best: gru (mean 0.8792")
    assert lines[2].startswith("  lstm: tied within noise with gru (p=0.")
    assert lines[2].endswith("; n=5 each)")


def test_verdict_with_single_runs():
    lines = verdict(group_runs(runs("gru", [0.88]) + runs("lstm", [0.87])))
    assert lines[2] == "  gru has a single run, so no difference can be told from noise; rerun with --seeds 3 or more"
    mixed = verdict(group_runs(runs("gru", [0.88, 0.89, 0.87]) + runs("lstm", [0.87])))
    assert mixed[2] == "  lstm: a single run each (n=1), too few to tell"


def test_verdict_is_per_dataset():
    lines = verdict(group_runs(runs("imdb_gru", [0.88, 0.87]) + runs("chat_gru", [0.80, 0.81], dataset="chatbot")))
    assert lines[1] == "- best on imdb: imdb_gru (mean 0.8750, n=2)"
    assert lines[2] == "- best on chatbot: chat_gru (mean 0.8050, n=2)"


def test_a_seed_trained_twice_counts_once():
    # The same config and seed trained twice (train.seeds: [1, 1], run --force, two runs at once).
    twice = [record("gru", 1, 0.88), record("gru", 1, 0.88), record("lstm", 1, 0.80), record("lstm", 1, 0.80)]
    groups = group_runs(twice)
    assert [(group.name, group.n, group.seeds) for group in groups] == [("gru", 1, [1]), ("lstm", 1, [1])]
    # Not "beyond noise (p<0.001)" from one run each.
    assert verdict(groups)[2] == "  gru has a single run, so no difference can be told from noise; rerun with --seeds 3 or more"


def test_the_latest_run_of_a_seed_replaces_the_earlier_one():
    first = {**record("gru", 2, 0.70), "run_id": "old", "updated": "2026-11-28T10:00:05+00:00"}
    retrained = {**record("gru", 2, 0.86), "run_id": "new", "updated": "2026-11-28T11:00:00+00:00"}
    others = [{**record("gru", seed, accuracy), "run_id": f"seed{seed}", "updated": "2026-11-28T10:00:00+00:00"} for seed, accuracy in ((1, 0.85), (3, 0.87))]
    # Oldest started first, as read_runs returns them; the retrained run finished last whatever the order.
    for records in ([others[0], first, others[1], retrained], [retrained, others[0], first, others[1]]):
        [group] = group_runs(records)
        assert (group.n, group.seeds, group.mean) == (3, [1, 2, 3], pytest.approx(0.86))
        assert [entry["run_id"] for entry in counted_runs(records)] == [entry["run_id"] for entry in records if entry is not first]
        assert [entry.get("status") for entry in mark_replaced(records) if entry["run_id"] == "old"] == ["replaced"]
        assert [entry.get("status") for entry in mark_replaced(records)].count("replaced") == 1


def test_runs_finished_together_and_records_just_returned_count_the_later_one():
    same_second = [{**record("gru", 1, accuracy), "updated": "2026-11-28T10:00:00+00:00"} for accuracy in (0.80, 0.82)]
    assert group_runs(same_second)[0].mean == pytest.approx(0.82)
    # A record the runner has just returned (not read back from the index) finished after every indexed one.
    just_trained = record("gru", 1, 0.84)
    assert group_runs([just_trained, *same_second])[0].mean == pytest.approx(0.84)


def test_only_completed_runs_count_and_none_is_replaced_by_an_unfinished_one():
    interrupted = {**record("gru", 1, 0.0), "status": "interrupted", "result": {}}
    done = {**record("gru", 1, 0.85), "status": "completed", "updated": "2026-11-28T09:00:00+00:00"}
    assert counted_runs([done, interrupted]) == [done]
    assert [entry["status"] for entry in mark_replaced([done, interrupted])] == ["completed", "interrupted"]


def test_val_test_gap():
    assert val_test_gap(record("gru", 1, 0.88, test=0.85)) == pytest.approx(0.03)
    assert val_test_gap({**record("gru", 1, 0.88), "result": {"best_val_accuracy": 0.88}}) is None
    [group] = group_runs([record("gru", 1, 0.88, test=0.85), record("gru", 2, 0.90, test=0.80)])
    assert group.val_test_gaps == pytest.approx([0.03, 0.10])


def test_a_run_recorded_before_a_key_existed_groups_with_todays_runs_of_the_same_settings():
    from rnnbench.config import config_from_mapping

    today = config_from_mapping({"name": "gru", "train": {"seed": 2}})
    new = {**record("gru", 2, 0.86), "config": today.to_dict(), "group": today.group_fingerprint()}
    # Written by an earlier version: without a key added since, and with a group key of its own reading.
    earlier = today.to_dict()
    del earlier["model"]["pooling"]
    earlier["train"]["seed"] = 1
    old = {**record("gru", 1, 0.85), "config": earlier, "group": "computed by an earlier version"}
    [group] = group_runs([old, new])
    assert (group.n, group.seeds) == (2, [1, 2])
    # A record this version can't read as a config still groups by what it stored.
    unreadable = {**record("odd", 1, 0.5), "config": {"name": "odd", "model": {"cell": "transformer"}, "train": {"seed": 1}}, "group": "odd"}
    assert [group.name for group in group_runs([unreadable])] == ["odd"]
