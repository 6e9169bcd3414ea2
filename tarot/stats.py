"""Small statistics shared by the evaluation scripts: bootstrap intervals and macro F1."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import scipy.stats
import sklearn.metrics


def bootstrap_interval(
    values: Sequence[float] | np.ndarray, *, samples: int = 2000, seed: int = 0, level: float = 0.95
) -> list[float]:
    """Percentile bootstrap interval of the mean, seeded so results files are reproducible.

    Empty input gives ``[nan, nan]``. Constant input (one value included) gives ``[c, c]`` without
    resampling: ``scipy.stats.bootstrap`` rejects a single value, and its resampled means of a constant
    can be one ulp off ``c`` (0.1 seven times gives 0.09999999999999999).
    """
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        return [float("nan"), float("nan")]
    if np.all(data == data[0]):
        return [float(data[0]), float(data[0])]
    result = scipy.stats.bootstrap(
        (data,),
        np.mean,
        n_resamples=samples,
        confidence_level=level,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return [float(result.confidence_interval.low), float(result.confidence_interval.high)]


def paired_interval(
    values: Sequence[float] | np.ndarray,
    baseline: Sequence[float] | np.ndarray,
    *,
    samples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> list[float]:
    """Percentile bootstrap interval of ``mean(values - baseline)`` over the same questions.

    Resampling questions, not each list on its own, keeps what the two share (how hard a question is)
    out of the interval, so it is narrower than the two unpaired intervals when they are correlated.
    """
    first, second = np.asarray(values, dtype=np.float64), np.asarray(baseline, dtype=np.float64)
    if first.shape != second.shape or first.ndim != 1:
        raise ValueError(f"paired values need two 1-D lists of one length, got shapes {first.shape} and {second.shape}")
    return bootstrap_interval(first - second, samples=samples, seed=seed, level=level)


def macro_f1(predictions: Sequence[str | None], targets: Sequence[str]) -> float:
    """Macro F1 over the target labels; a prediction outside them (or None) counts as wrong for all.

    Empty input gives nan.
    """
    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} predictions for {len(targets)} targets")
    labels = sorted(set(targets))
    if not labels:
        return float("nan")
    # Every prediction outside the labels, None included, becomes one string longer than any label,
    # so it cannot equal one (and sklearn gets labels of a single type).
    outside = "?" * (max(len(label) for label in labels) + 1)
    known = set(labels)
    mapped = [p if p in known else outside for p in predictions]
    return float(sklearn.metrics.f1_score(targets, mapped, labels=labels, average="macro", zero_division=0))


def one_answer(targets: Sequence[str]) -> dict:
    """The most common target, and the accuracy and macro F1 of giving it to every question: what a model
    that has collapsed onto one answer scores (ties: the answer seen first)."""
    answer, count = Counter(targets).most_common(1)[0]
    return {"answer": answer, "accuracy": count / len(targets), "f1": macro_f1([answer] * len(targets), targets)}


def summary(values: Sequence[float]) -> dict:
    """Mean with its bootstrap interval."""
    return {"mean": float(np.mean(values)) if len(values) else float("nan"), "ci95": bootstrap_interval(values)}
