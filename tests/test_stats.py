"""Tests for tarot.stats: macro F1 on hand-computed cases and its edge cases, and the bootstrap intervals
(degenerate inputs, determinism, pairing)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from tarot.stats import bootstrap_interval, macro_f1, one_answer, paired_interval, summary


@pytest.mark.parametrize(
    ("predictions", "targets", "expected"),
    [
        # a: tp 1, fp 0, fn 1 -> 2/3; b: tp 2, fp 1, fn 0 -> 4/5
        (["a", "b", "b", "b"], ["a", "a", "b", "b"], (2 / 3 + 4 / 5) / 2),
        # outside the labels, or None: a miss for "a" and no false positive for anyone
        (["c", "b"], ["a", "b"], 0.5),
        ([None, "b"], ["a", "b"], 0.5),
        # "b" never predicted scores 0; a: tp 2, fp 1 -> 4/5
        (["a", "a", "a"], ["a", "a", "b"], 0.4),
        # one label only: tp 2, fn 1 -> 4/5
        (["a", None, "a"], ["a", "a", "a"], 0.8),
        (["a", "a"], ["a", "a"], 1.0),
        # predictions that look like the internal stand-in for "outside" are still outside
        ([None, "???"], ["?", "??"], 0.0),
        (["?", "???"], ["?", "??"], 0.5),
        # the empty string is a label like any other
        (["", "x"], ["", ""], 2 / 3),
    ],
)
def test_macro_f1_hand_computed(predictions: list[str | None], targets: list[str], expected: float) -> None:
    assert macro_f1(predictions, targets) == pytest.approx(expected, abs=1e-15)


def test_macro_f1_edge_cases() -> None:
    assert math.isnan(macro_f1([], []))
    with pytest.raises(ValueError):
        macro_f1(["a"], ["a", "b"])


def test_one_answer_scores_the_most_common_target() -> None:
    assert one_answer(["b", "a", "a"]) == {"answer": "a", "accuracy": 2 / 3, "f1": pytest.approx(0.4)}


def test_bootstrap_degenerate_inputs_without_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert all(math.isnan(bound) for bound in bootstrap_interval([]))
        assert bootstrap_interval([0.7]) == [0.7, 0.7]
        assert bootstrap_interval([0.1] * 7) == [0.1, 0.1]  # resampled means would be 0.09999999999999999
        assert bootstrap_interval([1.0, 1.0, 1.0]) == [1.0, 1.0]
        assert summary([0.1] * 7) == {"mean": pytest.approx(0.1), "ci95": [0.1, 0.1]}
        empty = summary([])
        assert math.isnan(empty["mean"]) and all(math.isnan(bound) for bound in empty["ci95"])


def test_bootstrap_is_deterministic_and_sensible() -> None:
    values = (np.random.default_rng(3).random(400) < 0.5).astype(float)
    interval = bootstrap_interval(values)
    assert interval == bootstrap_interval(values.tolist())
    assert interval != bootstrap_interval(values, seed=1)
    low, high = interval
    assert low < values.mean() < high
    # normal approximation: half-width 1.96 * sqrt(p (1 - p) / n) ~ 0.049
    assert high - low == pytest.approx(2 * 1.96 * math.sqrt(values.mean() * (1 - values.mean()) / 400), rel=0.15)
    narrow = bootstrap_interval(values, level=0.5)
    assert low < narrow[0] < narrow[1] < high


def test_bootstrap_matches_the_resampler_of_committed_results() -> None:
    """Committed results.json intervals came from this hand-written resampler; scipy draws the same
    resamples from the same seed, so re-evaluating changes them only in the last digits."""
    values = np.random.default_rng(5).random(150)
    rng = np.random.default_rng(0)
    means = values[rng.integers(0, len(values), size=(2000, len(values)))].mean(axis=1)
    old = [np.quantile(means, 0.025), np.quantile(means, 0.975)]
    np.testing.assert_allclose(bootstrap_interval(values), old, rtol=0, atol=1e-12)


def test_paired_interval() -> None:
    rng = np.random.default_rng(7)
    baseline = rng.integers(0, 8, size=50) / 8
    assert paired_interval(baseline, baseline) == [0.0, 0.0]
    assert paired_interval(baseline + 0.25, baseline) == [0.25, 0.25]
    with pytest.raises(ValueError, match="one length"):
        paired_interval([1.0, 2.0], [1.0])

    # per-question difficulty shared by both: the paired interval leaves it out
    difficulty = rng.normal(size=200)
    unedited = difficulty + 0.1 * rng.normal(size=200)
    method = difficulty + 0.2 + 0.1 * rng.normal(size=200)
    low, high = paired_interval(method, unedited)
    assert low < 0.2 < high
    for values in (method, unedited):
        unpaired_low, unpaired_high = bootstrap_interval(values)
        assert high - low < (unpaired_high - unpaired_low) / 5
    assert paired_interval(method, unedited) == [low, high]
