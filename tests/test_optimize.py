"""Tests for tarot.optimize: determinism and exact resume, the box, the shared initial design,
argument checks, and that "bo" actually beats the "random" control."""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import numpy as np
import pytest

from tarot.optimize import make_optimizer

LOWER, UPPER = -math.pi / 4, math.pi / 4


def weighted_bowl(dim: int, seed: int) -> Callable[[np.ndarray], float]:
    """Cheap objective: off-centre quadratic bowl where a few coordinates matter most."""
    rng = np.random.default_rng([99_991, seed])
    optimum = rng.uniform(LOWER / 4, UPPER, size=dim)
    curvatures = rng.lognormal(sigma=2.0, size=dim)
    curvatures /= curvatures.sum()
    return lambda x: -float(curvatures @ (x - optimum) ** 2)


def run_loop(
    kind: str,
    objective: Callable[[np.ndarray], float],
    evaluations: int,
    *,
    dim: int,
    seed: int,
    initial_points: int = 4,
    history: tuple[np.ndarray, np.ndarray] | None = None,
    lower: float = LOWER,
    upper: float = UPPER,
) -> tuple[np.ndarray, np.ndarray]:
    """Suggest-evaluate loop, optionally continuing from an existing history."""
    optimizer = make_optimizer(kind, dim=dim, lower=lower, upper=upper, seed=seed, initial_points=initial_points)
    xs, ys = history if history is not None else (np.empty((0, dim)), np.empty(0))
    while ys.size < evaluations:
        x = optimizer.suggest(xs, ys)
        xs, ys = np.vstack([xs, x]), np.append(ys, objective(x))
    return xs, ys


def test_first_point_is_zero_and_initial_design_is_shared() -> None:
    dim, initial_points = 40, 5
    objective = weighted_bowl(dim, seed=0)
    bo_x, _ = run_loop("bo", objective, initial_points + 3, dim=dim, seed=7, initial_points=initial_points)
    random_x, _ = run_loop("random", objective, initial_points + 3, dim=dim, seed=7, initial_points=initial_points)
    assert np.array_equal(bo_x[0], np.zeros(dim))
    assert np.array_equal(bo_x[:initial_points], random_x[:initial_points])
    assert not np.array_equal(bo_x[initial_points:], random_x[initial_points:])


def test_without_zero_every_initial_point_is_random() -> None:
    optimizer = make_optimizer("bo", dim=10, lower=-1.0, upper=1.0, seed=0, initial_points=2, include_zero=False)
    assert np.all(optimizer.suggest(np.empty((0, 10)), np.empty(0)) != 0.0)


def test_zero_outside_box_is_clipped_to_nearest_point() -> None:
    optimizer = make_optimizer("random", dim=6, lower=0.25, upper=1.0, seed=0, initial_points=1)
    assert np.array_equal(optimizer.suggest(np.empty((0, 6)), np.empty(0)), np.full(6, 0.25))


@pytest.mark.parametrize("kind", ["bo", "random"])
def test_suggestions_stay_in_box_and_are_new(kind: str) -> None:
    dim, lower, upper = 30, -0.3, 0.2
    xs, _ = run_loop(kind, weighted_bowl(dim, seed=1), 25, dim=dim, seed=3, lower=lower, upper=upper)
    assert xs.shape == (25, dim)
    assert np.all((xs >= lower) & (xs <= upper))
    assert len({row.tobytes() for row in xs}) == len(xs)


@pytest.mark.parametrize("kind", ["bo", "random"])
def test_same_seed_and_history_give_identical_bits(kind: str) -> None:
    dim = 60
    xs, ys = run_loop(kind, weighted_bowl(dim, seed=2), 12, dim=dim, seed=5)
    first = make_optimizer(kind, dim=dim, lower=LOWER, upper=UPPER, seed=5, initial_points=4)
    second = make_optimizer(kind, dim=dim, lower=LOWER, upper=UPPER, seed=5, initial_points=4)
    suggestion = first.suggest(xs, ys)
    assert suggestion.tobytes() == second.suggest(xs.copy(), ys.copy()).tobytes()
    assert suggestion.tobytes() == first.suggest(xs, ys).tobytes()
    other_seed = make_optimizer(kind, dim=dim, lower=LOWER, upper=UPPER, seed=6, initial_points=4)
    assert not np.array_equal(suggestion, other_seed.suggest(xs, ys))


def test_resume_from_truncated_history_continues_identically() -> None:
    dim, evaluations = 50, 24
    objective = weighted_bowl(dim, seed=3)
    full_x, full_y = run_loop("bo", objective, evaluations, dim=dim, seed=11)
    for crash_after in (3, 9, 17):
        resumed_x, resumed_y = run_loop(
            "bo", objective, evaluations, dim=dim, seed=11, history=(full_x[:crash_after], full_y[:crash_after])
        )
        assert resumed_x.tobytes() == full_x.tobytes()
        assert resumed_y.tobytes() == full_y.tobytes()
    optimizer = make_optimizer("bo", dim=dim, lower=LOWER, upper=UPPER, seed=11, initial_points=4)
    assert optimizer.state(full_x, full_y) == optimizer.state(full_x.copy(), full_y.copy())


@pytest.mark.parametrize("kind", ["bo", "random"])
def test_state_is_json_serialisable_summary(kind: str) -> None:
    dim = 20
    xs, ys = run_loop(kind, weighted_bowl(dim, seed=4), 15, dim=dim, seed=0)
    optimizer = make_optimizer(kind, dim=dim, lower=LOWER, upper=UPPER, seed=0, initial_points=4)
    state = json.loads(json.dumps(optimizer.state(xs, ys)))
    assert state["n_evaluated"] == 15
    assert state["incumbent_index"] == int(np.argmax(ys))
    if kind == "bo":
        assert 0 < state["trust_region_length"] <= 1.6
        assert state["gp_length_scale"] > 0
        assert {"consecutive_successes", "consecutive_failures", "trust_region_restarts"} <= state.keys()


def test_bo_beats_random_on_cheap_objective() -> None:
    dim, evaluations, seeds = 200, 40, range(4)
    best = {kind: [] for kind in ("bo", "random")}
    for seed in seeds:
        objective = weighted_bowl(dim, seed)
        for kind in best:
            best[kind].append(run_loop(kind, objective, evaluations, dim=dim, seed=seed)[1].max())
    improvement = np.array(best["bo"]) - np.array(best["random"])
    assert np.all(improvement > 0), best
    assert improvement.mean() > 2 * improvement.std(), best


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"kind": "cmaes"}, "unknown optimizer kind"),
        ({"lower": 1.0, "upper": 1.0}, "lower < upper"),
        ({"lower": 2.0, "upper": 1.0}, "lower < upper"),
        ({"lower": -math.inf}, "finite"),
        ({"dim": 0}, "dim must be a positive integer"),
        ({"initial_points": 0}, "initial_points must be a positive integer"),
        ({"seed": -1}, "seed must be a non-negative integer"),
    ],
)
def test_bad_arguments_raise_value_error(arguments: dict, message: str) -> None:
    defaults = {"kind": "bo", "dim": 10, "lower": -1.0, "upper": 1.0, "seed": 0, "initial_points": 2}
    with pytest.raises(ValueError, match=message):
        make_optimizer(**{**defaults, **arguments})


def test_malformed_history_raises_value_error() -> None:
    optimizer = make_optimizer("bo", dim=5, lower=-1.0, upper=1.0, seed=0, initial_points=1)
    with pytest.raises(ValueError, match="history_x must have shape"):
        optimizer.suggest(np.zeros((2, 4)), np.zeros(2))
    with pytest.raises(ValueError, match="non-finite"):
        optimizer.suggest(np.zeros((2, 5)), np.array([0.0, np.nan]))


@pytest.mark.parametrize(("seed", "signal"), [(0, 1.0), (1, 1.0), (2, 1.0), (0, 0.0)])
def test_candidate_posterior_matches_sklearn_gaussian_process(seed: int, signal: float) -> None:
    """The sparse candidate scoring is the exact posterior of sklearn's GP with the fitted hyperparameters.

    ``signal=0`` (pure noise) makes the fit pick a short length-scale and a larger noise ratio.
    """
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern

    from tarot.optimize import TrustRegionBO, standardise

    dim, n = 30, 40
    rng = np.random.default_rng([2024, seed])
    unit_x = rng.random((n, dim))
    smooth = np.sin(3 * unit_x[:, 0]) + unit_x[:, 1:5].sum(axis=1)
    standard_y = standardise(signal * smooth + 0.1 * rng.standard_normal(n))
    optimizer = make_optimizer("bo", dim=dim, lower=0.0, upper=1.0, seed=seed, initial_points=4)
    assert isinstance(optimizer, TrustRegionBO)
    gp = optimizer.fit_gp(unit_x, standard_y)
    incumbent = int(np.argmax(standard_y))
    deltas = optimizer.candidate_deltas(unit_x[incumbent], 0.8, rng)
    mean, variance = optimizer.posterior(deltas, gp, unit_x, incumbent)

    kernel = ConstantKernel(gp.signal_variance, "fixed") * Matern(gp.length_scale, "fixed", nu=2.5)
    reference = GaussianProcessRegressor(
        kernel, alpha=gp.noise_ratio * gp.signal_variance, optimizer=None, normalize_y=False
    ).fit(unit_x, standard_y)
    candidates = unit_x[incumbent] + deltas.toarray()
    reference_mean, reference_std = reference.predict(candidates, return_std=True)
    np.testing.assert_allclose(mean, reference_mean, rtol=0, atol=1e-6)
    np.testing.assert_allclose(variance, reference_std**2, rtol=0, atol=1e-6)
