"""Tests for tarot.stats: macro F1 on hand-computed cases and its edge cases, and the bootstrap intervals
(degenerate inputs, determinism, pairing)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from tarot.stats import (
    accuracy,
    bootstrap_interval,
    encode_labels,
    macro_f1,
    one_answer,
    paired_metric_interval,
    resampled_scores,
    summary,
)


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


def test_resampled_scores_equal_macro_f1_and_accuracy():
    rng = np.random.default_rng(3)
    targets = list(rng.choice(["red", "blue", "green", "gray"], 60, p=[0.5, 0.3, 0.15, 0.05]))
    predictions: list[str | None] = list(rng.choice(["red", "blue", "green", "teal"], 60))
    predictions[:3] = [None, "red", None]
    predicted, truth, n_labels = encode_labels(predictions, targets)
    rows = rng.integers(0, 60, size=(300, 60))  # resamples, some without the rare label
    f1 = resampled_scores("f1", predicted[rows], truth[rows], n_labels)
    hits = resampled_scores("accuracy", predicted[rows], truth[rows], n_labels)
    for row, score, hit in zip(rows, f1, hits, strict=True):
        sample_targets, sample_predictions = [targets[i] for i in row], [predictions[i] for i in row]
        assert score == pytest.approx(macro_f1(sample_predictions, sample_targets), abs=1e-12)
        assert hit == pytest.approx(accuracy(sample_predictions, sample_targets), abs=1e-12)


def test_paired_metric_interval():
    rng = np.random.default_rng(4)
    targets = list(rng.choice(["yes", "no"], 150))
    collapsed = ["yes"] * 150
    better = [t if rng.random() < 0.8 else "maybe" for t in targets]
    assert paired_metric_interval("f1", collapsed, collapsed, targets) == [0.0, 0.0]
    low, high = paired_metric_interval("f1", better, collapsed, targets)
    difference = macro_f1(better, targets) - macro_f1(collapsed, targets)
    assert 0 < low < difference < high
    assert paired_metric_interval("f1", better, collapsed, targets) == [low, high]  # seeded
    reverse = paired_metric_interval("f1", collapsed, better, targets)
    assert reverse == pytest.approx([-high, -low], abs=1e-12)
    low, high = paired_metric_interval("accuracy", better, collapsed, targets)
    assert low < accuracy(better, targets) - accuracy(collapsed, targets) < high
    # two models that answer most questions alike: pairing leaves their shared misses out of the interval
    unedited = [t if rng.random() < 0.5 else "maybe" for t in targets]
    edited = [t if rng.random() < 0.1 else u for u, t in zip(unedited, targets, strict=True)]
    low, high = paired_metric_interval("accuracy", edited, unedited, targets)
    for answers in (edited, unedited):
        unpaired_low, unpaired_high = bootstrap_interval([float(a == t) for a, t in zip(answers, targets, strict=True)])
        assert high - low < 0.8 * (unpaired_high - unpaired_low)
    with pytest.raises(ValueError, match="one length"):
        paired_metric_interval("f1", better[:-1], collapsed, targets)
    with pytest.raises(ValueError, match="unknown metric"):
        paired_metric_interval("recall", better, collapsed, targets)
