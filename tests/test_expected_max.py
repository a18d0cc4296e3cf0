"""The expected best of k random trials: the closed form against every possible draw and against
simulated draws, its band, and the sentence that says which candidate leads at which k."""

import itertools

import numpy as np
import pytest

from rnnbench import expected_max


@pytest.mark.parametrize("values", [[0.7], [0.5, 0.9], [0.6, 0.6, 0.8, 0.7], [0.81, 0.79, 0.85, 0.80, 0.62]])
def test_the_closed_form_is_the_mean_best_over_every_possible_draw(values):
    most = len(values) + 1  # One k past N too: draws with replacement repeat trials.
    exact = [np.mean([max(draw) for draw in itertools.product(values, repeat=k)]) for k in range(1, most + 1)]
    assert np.allclose(expected_max.expected_best(values, most), exact, rtol=0.0, atol=1e-12)


def test_the_closed_form_agrees_with_simulated_draws():
    generator = np.random.default_rng(7)
    values = generator.uniform(0.6, 0.9, size=12)
    draws = 200_000
    best = np.maximum.accumulate(generator.choice(values, size=(draws, 12)), axis=1)
    simulated, standard_error = best.mean(axis=0), best.std(axis=0) / np.sqrt(draws)
    assert np.all(np.abs(expected_max.expected_best(values, 12) - simulated) < 4 * standard_error + 1e-12)


def test_one_trial_is_the_mean_and_many_reach_the_best():
    values = [0.70, 0.80, 0.75, 0.90]
    curve = expected_max.expected_best(values, 200)
    assert curve[0] == pytest.approx(np.mean(values))
    assert curve[-1] == pytest.approx(0.90)
    assert np.all(np.diff(curve) >= -1e-12)  # Never falls (but for rounding once it reaches the best).


def test_the_band_is_seeded_and_lies_around_the_curve():
    values = [0.70, 0.80, 0.75, 0.90, 0.60]
    first, again = expected_max.curve("gru", values), expected_max.curve("gru", values)
    assert first == again
    assert all(low <= expected <= high for low, expected, high in zip(first.low, first.expected, first.high))
    assert first.low[0] < first.high[0]
    flat = expected_max.curve("lstm", [0.8, 0.8, 0.8])
    assert flat.low == flat.high == pytest.approx((0.8, 0.8, 0.8))


def test_the_sentence_names_the_leader_at_every_budget():
    ahead, behind = expected_max.curve("gru", [0.85, 0.86, 0.87]), expected_max.curve("lstm", [0.80, 0.81, 0.82, 0.83])
    assert expected_max.ranking_sentence([behind, ahead]) == (
        "gru leads from k=1 on (compared up to k=3, the fewest trials in any candidate's curve)."
    )
    # Steady at 0.80, against a mean of 0.76 that reaches 0.844 at k=2 and 0.885 at k=3.
    steady, spread = expected_max.curve("lstm", [0.80, 0.80, 0.80]), expected_max.curve("gru", [0.60, 0.70, 0.98])
    assert expected_max.ranking_sentence([steady, spread]) == (
        "lstm leads up to k=1, gru from k=2 (compared up to k=3, the fewest trials in any candidate's curve)."
    )


def test_with_three_candidates_the_sentence_says_where_the_rest_of_the_order_changes():
    curves = [
        expected_max.curve("gru", [0.90, 0.91, 0.92]),
        expected_max.curve("lstm", [0.80, 0.80, 0.80]),
        expected_max.curve("simple_rnn", [0.60, 0.70, 0.98]),
    ]
    assert expected_max.ranking_sentence(curves) == (
        "gru leads from k=1 on (compared up to k=3, the fewest trials in any candidate's curve); the whole order"
        " gru > lstm > simple_rnn at k=1, gru > simple_rnn > lstm from k=2 to k=3."
    )
    steady = [expected_max.curve(name, [value]) for name, value in (("a", 0.9), ("b", 0.8), ("c", 0.7))]
    assert expected_max.ranking_sentence(steady) == (
        "a leads from k=1 on (compared up to k=1, the fewest trials in any candidate's curve); the order a > b > c holds at every k."
    )
    assert expected_max.ranking_sentence(steady[:1]) == ""
