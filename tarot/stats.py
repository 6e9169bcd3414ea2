"""Small statistics shared by the evaluation scripts: bootstrap intervals and macro F1."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np


def bootstrap_interval(
    values: Sequence[float], *, samples: int = 2000, seed: int = 0, level: float = 0.95
) -> list[float]:
    """Percentile bootstrap interval of the mean (seeded, so results files are reproducible)."""
    data = np.asarray(values, dtype=np.float64)
    if len(data) == 0:
        return [float("nan"), float("nan")]
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, len(data), size=(samples, len(data)))].mean(axis=1)
    tail = (1 - level) / 2
    return [float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))]


def macro_f1(predictions: Sequence[str | None], targets: Sequence[str]) -> float:
    """Macro F1 over the target labels; a prediction outside them (or None) counts as wrong for all."""
    labels = sorted(set(targets))
    scores = []
    for label in labels:
        tp = sum(p == label and t == label for p, t in zip(predictions, targets, strict=True))
        fp = sum(p == label and t != label for p, t in zip(predictions, targets, strict=True))
        fn = sum(p != label and t == label for p, t in zip(predictions, targets, strict=True))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return float(np.mean(scores))


def one_answer(targets: Sequence[str]) -> dict:
    """The most common target, and the accuracy and macro F1 of giving it to every question: what a model
    that has collapsed onto one answer scores (ties: the answer seen first)."""
    answer, count = Counter(targets).most_common(1)[0]
    return {"answer": answer, "accuracy": count / len(targets), "f1": macro_f1([answer] * len(targets), targets)}


def summary(values: Sequence[float]) -> dict:
    """Mean with its bootstrap interval."""
    return {"mean": float(np.mean(values)) if len(values) else float("nan"), "ci95": bootstrap_interval(values)}
