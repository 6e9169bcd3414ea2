"""Does the "bo" optimiser beat the "random" control at the real problem's size and budget?

Runs both kinds of ``tarot.optimize`` at equal budgets (initial design + iterations) on
synthetic objectives shaped like the rotation search: D = 4,320 angles in [-pi/4, pi/4],
zero (the unedited model) a decent but improvable point, large random edits harmful.
Prints one JSON object: per objective the mean and std over seeds of the best value found
by each kind, how many seeds BO won, and the seconds per BO suggestion.

    python benchmarks/optimizer_quality.py --seeds 5 --dim 4320
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable

import numpy as np

from tarot.optimize import OPTIMIZER_KINDS, make_optimizer

LOWER, UPPER = -math.pi / 4, math.pi / 4
# Objectives draw from their own seed streams; reusing the optimiser's ``[seed, n]`` entropy
# would make, e.g., the random search's n-th point a copy of the hidden optimum.
OBJECTIVE_STREAM = 271_828_183
Objective = Callable[[np.ndarray], float]


def sparse_sigmoid(dim: int, seed: int) -> Objective:
    """A mean-probability-like score in (0, 1): sigmoid of a logit that
    starts at logit(0.4) at zero, depends smoothly on 50 random coordinates, has a weak
    dense linear-ish term, and pays for large rotations everywhere (random edits hurt)."""
    rng = np.random.default_rng([OBJECTIVE_STREAM, seed, 1])
    relevant = rng.choice(dim, size=min(50, dim), replace=False)
    weights = rng.normal(size=relevant.size) * 0.5 / math.sqrt(relevant.size) * math.sqrt(50)
    phases = rng.uniform(-math.pi, math.pi, size=relevant.size)
    dense_weights = rng.normal(size=dim) * 0.5 / math.sqrt(dim)
    logit_at_zero = math.log(0.4 / 0.6)

    def objective(x: np.ndarray) -> float:
        sparse = weights @ (np.sin(2 * x[relevant] + phases) - np.sin(phases)) / math.sqrt(relevant.size)
        logit = logit_at_zero + sparse + dense_weights @ np.sin(x) - 2.0 * np.mean(np.sin(x) ** 2)
        return float(1.0 / (1.0 + math.exp(-logit)))

    return objective


def offcentre_bowl(dim: int, seed: int) -> Objective:
    """Negative weighted mean squared distance to an optimum drawn in [-pi/16, pi/4]^D, off
    the centre of the box, so that both zero and uniform points are far from it. Every
    coordinate matters, with heavy-tailed (log-normal) curvatures, the way some heads matter
    far more than others."""
    rng = np.random.default_rng([OBJECTIVE_STREAM, seed, 2])
    optimum = rng.uniform(LOWER / 4, UPPER, size=dim)
    curvatures = rng.lognormal(sigma=2.0, size=dim)
    curvatures /= curvatures.sum()

    def objective(x: np.ndarray) -> float:
        return -float(curvatures @ (x - optimum) ** 2)

    return objective


def isotropic_bowl(dim: int, seed: int) -> Objective:
    """Like ``offcentre_bowl`` with equal curvatures: a dense objective where 124 evaluations
    cannot tell thousands of equally important coordinates apart, so no method can move far
    from zero; a check that "bo" at least does no harm there."""
    optimum = np.random.default_rng([OBJECTIVE_STREAM, seed, 3]).uniform(LOWER / 4, UPPER, size=dim)

    def objective(x: np.ndarray) -> float:
        return -float(np.mean((x - optimum) ** 2))

    return objective


OBJECTIVES: dict[str, Callable[[int, int], Objective]] = {
    "sparse_sigmoid": sparse_sigmoid,
    "offcentre_bowl": offcentre_bowl,
    "isotropic_bowl": isotropic_bowl,
}


def run_once(kind: str, objective: Objective, dim: int, seed: int, initial_points: int, iterations: int) -> dict:
    optimizer = make_optimizer(kind, dim=dim, lower=LOWER, upper=UPPER, seed=seed, initial_points=initial_points)
    xs, ys, seconds = np.empty((0, dim)), np.empty(0), []
    for _ in range(initial_points + iterations):
        start = time.perf_counter()
        x = optimizer.suggest(xs, ys)
        seconds.append(time.perf_counter() - start)
        xs, ys = np.vstack([xs, x]), np.append(ys, objective(x))
    start = time.perf_counter()
    optimizer.suggest(xs, ys)
    seconds_at_full_history = time.perf_counter() - start
    return {
        "best": float(ys.max()),
        "value_at_first_point": float(ys[0]),
        "seconds": seconds[initial_points:],
        "seconds_at_full_history": seconds_at_full_history,
        "state": optimizer.state(xs, ys),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="number of seeds (objective instance and optimiser)")
    parser.add_argument("--dim", type=int, default=4320)
    parser.add_argument("--initial-points", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=120)
    args = parser.parse_args()

    report: dict = {
        "dim": args.dim,
        "evaluations": args.initial_points + args.iterations,
        "seeds": args.seeds,
        "objectives": {},
    }
    bo_seconds, bo_seconds_at_full_history = [], []
    for name, build in OBJECTIVES.items():
        best = {kind: [] for kind in OPTIMIZER_KINDS}
        first_values = []
        for seed in range(args.seeds):
            objective = build(args.dim, seed)
            for kind in OPTIMIZER_KINDS:
                result = run_once(kind, objective, args.dim, seed, args.initial_points, args.iterations)
                best[kind].append(result["best"])
                if kind == "bo":
                    bo_seconds += result["seconds"]
                    bo_seconds_at_full_history.append(result["seconds_at_full_history"])
                    first_values.append(result["value_at_first_point"])
        report["objectives"][name] = {
            **{
                f"best_{kind}": {"mean": float(np.mean(values)), "std": float(np.std(values)), "per_seed": values}
                for kind, values in best.items()
            },
            "value_at_zero_mean": float(np.mean(first_values)),
            "bo_wins": int(sum(b > r for b, r in zip(best["bo"], best["random"], strict=True))),
        }
        print(f"done {name}", file=sys.stderr, flush=True)
    report["bo_seconds_per_suggest"] = {"mean": float(np.mean(bo_seconds)), "max": float(np.max(bo_seconds))}
    report["bo_seconds_per_suggest_at_full_history"] = {
        "mean": float(np.mean(bo_seconds_at_full_history)),
        "max": float(np.max(bo_seconds_at_full_history)),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
