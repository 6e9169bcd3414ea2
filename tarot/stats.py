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
    return _percentile_interval(data, np.mean, samples=samples, seed=seed, level=level)


def _percentile_interval(data: np.ndarray, statistic, *, samples: int, seed: int, level: float) -> list[float]:
    """``scipy.stats.bootstrap``'s seeded percentile interval of a vectorised ``statistic(sample, axis)``."""
    result = scipy.stats.bootstrap(
        (data,),
        statistic,
        vectorized=True,
        batch=200,  # 200 resamples at a time: bounded memory for the paired metrics' (resamples, n, labels)
        n_resamples=samples,
        confidence_level=level,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return [float(result.confidence_interval.low), float(result.confidence_interval.high)]


def accuracy(predictions: Sequence[str | None], targets: Sequence[str]) -> float:
    """Share of predictions equal to their target."""
    return float(np.mean([p == t for p, t in zip(predictions, targets, strict=True)])) if targets else float("nan")


def encode_labels(predictions: Sequence[str | None], targets: Sequence[str]) -> tuple[np.ndarray, np.ndarray, int]:
    """Targets as indices into their sorted labels, predictions as the same indices or ``len(labels)`` for
    an answer outside them; and the number of labels."""
    labels = {label: index for index, label in enumerate(sorted(set(targets)))}
    outside = len(labels)
    predicted = np.array([labels.get(p, outside) if p is not None else outside for p in predictions], dtype=np.int64)
    return predicted, np.array([labels[t] for t in targets], dtype=np.int64), outside


def resampled_scores(metric: str, predicted: np.ndarray, truth: np.ndarray, n_labels: int) -> np.ndarray:
    """``metric`` ("accuracy" or "f1", macro F1 as :func:`macro_f1` defines it: over the labels among the
    targets) of every row of encoded predictions and targets, shape (..., n) -> (...).

    Written out with numpy because the paired bootstrap scores 2,000 resamples of each model: calling
    scikit-learn's f1_score for each took 13 s per interval here (200 questions), this takes 0.1 s.
    tests/test_stats.py checks it against :func:`macro_f1` and :func:`accuracy`.
    """
    if metric == "accuracy":
        return (predicted == truth).mean(axis=-1)
    scores, present = [], []
    for label in range(n_labels):
        is_predicted, is_true = predicted == label, truth == label
        tp = (is_predicted & is_true).sum(axis=-1)
        wrong = (is_predicted ^ is_true).sum(axis=-1)  # false positives + false negatives
        scores.append(np.divide(2 * tp, 2 * tp + wrong, out=np.zeros(tp.shape), where=2 * tp + wrong > 0))
        present.append(is_true.any(axis=-1))
    return (np.stack(scores) * np.stack(present)).sum(axis=0) / np.stack(present).sum(axis=0)


def paired_metric_interval(
    metric: str,
    predictions: Sequence[str | None],
    baseline: Sequence[str | None],
    targets: Sequence[str],
    *,
    samples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> list[float]:
    """Percentile bootstrap interval of ``metric(predictions) - metric(baseline)`` over the same questions
    (``metric``: "accuracy" or "f1", macro F1).

    Each resample draws questions, and both models' answers to them with them (``scipy.stats.bootstrap``
    over the question indices), so what the two share, such as how hard each question is, stays out of the
    interval; macro F1, which is not a mean over questions, is recomputed on each resample. Identical
    predictions give ``[0, 0]``.
    """
    if not len(predictions) == len(baseline) == len(targets):
        raise ValueError(f"paired predictions need one length, got {len(predictions)}, {len(baseline)}, {len(targets)}")
    if metric not in ("accuracy", "f1"):
        raise ValueError(f"unknown metric {metric!r}: accuracy or f1")
    if list(predictions) == list(baseline):
        return [0.0, 0.0]
    first, truth, n_labels = encode_labels(predictions, targets)
    second, _, _ = encode_labels(baseline, targets)

    def difference(rows: np.ndarray, axis: int = -1) -> np.ndarray:
        return resampled_scores(metric, first[rows], truth[rows], n_labels) - resampled_scores(
            metric, second[rows], truth[rows], n_labels
        )

    return _percentile_interval(np.arange(len(truth)), difference, samples=samples, seed=seed, level=level)


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
