"""The search loop shared by every training script: evaluate, log, checkpoint, resume.

A script provides an ``objective(angles) -> dict of metrics`` (higher is better for the chosen metric);
this module runs the optimiser over it inside a run directory. Because suggestions are a pure function of
the seed and the history (tarot/optimize.py), reloading the history and continuing gives exactly the
history an uninterrupted run gives.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from tarot.errors import UsageError
from tarot.optimize import make_optimizer
from tarot.runs import RunDir, write_json, write_tensors


@dataclass
class SearchSpec:
    shape: tuple[int, ...]  # of the angles: (layer, head, angle) or (layer, angle)
    lower: float
    upper: float
    optimizer: str
    seed: int
    initial_points: int
    iterations: int
    metric: str


def search(run: RunDir, spec: SearchSpec, objective: Callable[[np.ndarray], dict]) -> list[dict]:
    """Run (or resume) the search until ``initial_points + iterations`` evaluations are logged."""
    dim = int(np.prod(spec.shape))
    optimizer = make_optimizer(spec.optimizer, dim=dim, lower=spec.lower, upper=spec.upper, seed=spec.seed,
                               initial_points=spec.initial_points, include_zero=spec.lower <= 0 <= spec.upper)
    history, points = run.load_evaluations()
    points = np.zeros((0, dim)) if points is None else points
    if points.shape[1] != dim:
        raise UsageError(f"{run.points} holds {points.shape[1]}-dimensional points, this search has {dim}")
    total = spec.initial_points + spec.iterations
    values = np.array([row["value"] for row in history], dtype=np.float64)
    best = float(values.max()) if len(values) else -np.inf
    bar = tqdm(total=total, initial=len(history), desc="search", unit="eval", dynamic_ncols=True)
    if len(values):
        bar.set_postfix(best=f"{best:.4f}")
    while len(history) < total:
        start = time.perf_counter()
        x = optimizer.suggest(points, values)
        metrics = objective(x)
        value = float(metrics[spec.metric])
        points = np.vstack([points, x[None]])
        values = np.append(values, value)
        history.append({"iteration": len(history), "value": value,
                        **{k: float(v) for k, v in metrics.items()},
                        "initial": len(history) < spec.initial_points,
                        "seconds": round(time.perf_counter() - start, 3)})
        if value > best:
            best = value
            write_tensors(run.best, {"angles": torch.from_numpy(x.reshape(spec.shape).copy())},
                          {"iteration": str(len(history) - 1), "value": repr(value)})
        run.save_evaluations(history, points)
        write_json(run.state, {"evaluations": len(history), **optimizer.state(points, values)})
        bar.update(1)
        bar.set_postfix(best=f"{best:.4f}")
    bar.close()
    return history


def best_angles(run: RunDir, shape: tuple[int, ...]) -> tuple[torch.Tensor, dict]:
    """The angles with the best training objective (never chosen on test data) and their history row.

    Read from the logged points, not from best_angles.safetensors, so that an evaluation killed between
    two writes can never pair angles with a value that was not logged.
    """
    history, points = run.load_evaluations()
    if not history:
        raise UsageError(f"no finished evaluation in {run.path}: train first with the same flags")
    index = int(np.argmax([r["value"] for r in history]))  # the first of equal values, as the search kept
    return torch.from_numpy(points[index].reshape(shape).copy()), history[index]
