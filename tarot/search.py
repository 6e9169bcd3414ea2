"""The search loop shared by every training script: evaluate, log, checkpoint, resume.

A script provides an ``objective(angles) -> dict of metrics`` (higher is better for the chosen metric);
this module runs the optimiser over it inside a run directory. Because suggestions are a pure function of
the seed and the history (tarot/optimize.py), reloading the history and continuing gives exactly the
history an uninterrupted run gives; a run kept without its points (results/ keeps only the small files)
gets them back by replaying the optimiser over its logged values.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from safetensors import safe_open
from tqdm.auto import tqdm

from tarot import cli
from tarot.errors import UsageError
from tarot.optimize import Optimizer, make_optimizer
from tarot.runs import RunDir, git_commit, read_json, read_jsonl, read_tensors, versions, write_json, write_tensors


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
    optimizer = make_optimizer(
        spec.optimizer,
        dim=dim,
        lower=spec.lower,
        upper=spec.upper,
        seed=spec.seed,
        initial_points=spec.initial_points,
        include_zero=spec.lower <= 0 <= spec.upper,
    )
    if run.history.exists() and not run.points.exists():  # a run kept in results/: its small files only
        history, points = _replayed(run, spec, optimizer, objective)
    else:
        history, logged = run.load_evaluations()
        points = np.zeros((0, dim)) if logged is None else logged
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
        if not math.isfinite(value):
            raise UsageError(
                f"--metric {spec.metric}: evaluation {len(history)} gave {value}; with --dtype "
                f"float16 this is usually an overflow: use float32 or bfloat16"
            )
        points = np.vstack([points, x[None]])
        values = np.append(values, value)
        history.append(
            {
                "iteration": len(history),
                "value": value,
                **{k: float(v) for k, v in metrics.items()},
                "initial": len(history) < spec.initial_points,
                "seconds": round(time.perf_counter() - start, 3),
            }
        )
        if value > best:
            best = value
            write_tensors(
                run.best,
                {"angles": torch.from_numpy(x.reshape(spec.shape).copy())},
                {"iteration": str(len(history) - 1), "value": repr(value)},
            )
        run.save_evaluations(history, points)
        write_json(run.state, {"evaluations": len(history), **optimizer.state(points, values)})
        bar.update(1)
        bar.set_postfix(best=f"{best:.4f}")
    bar.close()
    if history and (not run.state.exists() or read_json(run.state).get("evaluations") != len(history)):
        # a kill between the history and state writes of the last evaluation left the state behind
        write_json(run.state, {"evaluations": len(history), **optimizer.state(points, values)})
    return history


def _replayed(
    run: RunDir, spec: SearchSpec, optimizer: Optimizer, objective: Callable[[np.ndarray], dict]
) -> tuple[list[dict], np.ndarray]:
    """The evaluated points of a run whose points.safetensors is missing, rebuilt from its history.

    Suggestions are a pure function of the seed and the history, so feeding the logged values back to the
    optimiser gives every evaluated point again, bit for bit, without the model. One evaluation checks it:
    the best point must score its logged value again (to 1e-4: the thread count moves the last digits).
    Writes points.safetensors and best_angles.safetensors, as the search would have.
    """
    history = run.read_history()
    values = np.array([row["value"] for row in history], dtype=np.float64)
    points = np.zeros((0, int(np.prod(spec.shape))))
    for _ in tqdm(history, desc="replay", unit="point", leave=False):
        points = np.vstack([points, optimizer.suggest(points, values[: len(points)])[None]])
    best = int(np.argmax(values))  # the first of equal values, as the search kept
    again = float(objective(points[best])[spec.metric])
    if not math.isclose(again, values[best], rel_tol=1e-4, abs_tol=1e-6):
        raise UsageError(
            f"{run.points} is missing, and the point replayed from the seed and {run.history} scores {again!r}, "
            f"not the logged {values[best]!r} (evaluation {best}): the code or data changed since this run; "
            f"search again into another --outputDir"
        )
    run.save_evaluations(history, points)
    write_tensors(
        run.best,
        {"angles": torch.from_numpy(points[best].reshape(spec.shape).copy())},
        {"iteration": str(best), "value": repr(float(values[best]))},
    )
    return history, points


def start_search(
    run: RunDir,
    args,
    identity: dict,
    shape: tuple[int, ...],
    record: dict,
    objective: Callable[[np.ndarray], dict],
    *,
    what: str,
) -> list[dict]:
    """Record the run (or check that a resumed one scores the same prompts), search, print a summary.

    ``record`` (example ids, the exact prompts and answer tokens) goes to split.json on the first start;
    a later start must build the same record, else the data, tokenizer or chat template changed.
    """
    lower, upper = cli.radians(args)
    if run.config.exists():
        if run.split.exists():
            run.require_same_split(record)
        else:  # a run kept in results/ before report.py kept split.json: what these flags build
            write_json(run.split, record)
        config = read_json(run.config)
        config["sessions"].append({"command": sys.argv, "versions": versions(), "git_commit": git_commit()})
    else:
        write_json(run.split, record)  # before config.json: a config means the split is on disk
        config = {
            "identity": identity,
            "flags": vars(args) | {"layer": list(args.layer)},
            "angle_shape": list(shape),
            "num_angles": int(np.prod(shape)),
            "versions": versions(),
            "git_commit": git_commit(),
            "command": sys.argv,
            "sessions": [],
        }
    write_json(run.config, config)
    print(
        f"TaRot search: {what}, {int(np.prod(shape))} angles {tuple(shape)} in [{lower:.4f}, {upper:.4f}], "
        f"{args.optimizer}, run {run.path}",
        file=sys.stderr,
    )
    spec = SearchSpec(shape, lower, upper, args.optimizer, args.seed, args.initialPoints, args.iterations, args.metric)
    history = search(run, spec, objective)
    best = max(history, key=lambda r: r["value"])
    start = f"unedited {history[0]['value']:.4f}" if lower <= 0 <= upper else f"first {history[0]['value']:.4f}"
    extra = (
        f" (the run holds {len(history)}, more than the {spec.initial_points + spec.iterations} asked for)"
        if len(history) > spec.initial_points + spec.iterations
        else ""
    )
    print(
        f"done: {len(history)} evaluations{extra}; {args.metric} {start} -> best {best['value']:.4f} "
        f"(evaluation {best['iteration']}); {sum(r['seconds'] for r in history):.0f} s searching; {run.path}"
    )
    return history


DEV_CANDIDATES = 10  # --selectOn dev:K chooses among this many of the best training points


def select_on_dev(
    run: RunDir, shape: tuple[int, ...], dev_objective: Callable[[np.ndarray], dict], metric: str
) -> dict:
    """--selectOn dev:K: score the ``DEV_CANDIDATES`` best training points (ties: the earlier) by the objective
    on the K held-out training prompts and keep the best there (ties: the better training value, then the
    earlier point). Writes best_angles.safetensors (that point), then selection.json; a finished selection of
    the same history is reused."""
    history, points = run.load_evaluations()
    if not history or points is None:
        raise UsageError(f"no finished evaluation in {run.path}: train first with the same flags")
    if run.selection.exists():
        saved = read_json(run.selection)
        if saved.get("evaluations") == len(history):  # made already; replaying a kept run rewrote best_angles
            _write_best(run, shape, points, history, int(saved["chosen"]))
            return saved
    order = sorted(range(len(history)), key=lambda i: (-history[i]["value"], i))[:DEV_CANDIDATES]
    candidates = [
        {"iteration": i, "train_value": history[i]["value"], "dev_value": float(dev_objective(points[i])[metric])}
        for i in tqdm(order, desc="dev selection", unit="point", leave=False)
    ]
    chosen = max(candidates, key=lambda c: (c["dev_value"], c["train_value"], -c["iteration"]))
    index = chosen["iteration"]
    _write_best(run, shape, points, history, index)
    selection = {"evaluations": len(history), "metric": metric, "candidates": candidates, "chosen": index}
    write_json(run.selection, selection)
    print(
        f"selected on the dev prompts: evaluation {index} (dev {chosen['dev_value']:.4f}, training "
        f"{chosen['train_value']:.4f}) among the {len(candidates)} best training points"
    )
    return selection


def _write_best(run: RunDir, shape: tuple[int, ...], points: np.ndarray, history: list[dict], index: int) -> None:
    write_tensors(
        run.best,
        {"angles": torch.from_numpy(points[index].reshape(shape).copy())},
        {"iteration": str(index), "value": repr(history[index]["value"])},
    )


def _chosen_index(run: RunDir, history: list[dict], dev: bool) -> int:
    """The best training point, or with --selectOn the point chosen on the dev prompts (selection.json)."""
    if not dev:
        return int(np.argmax([r["value"] for r in history]))  # the first of equal values, as the search kept
    if not run.selection.exists():
        raise UsageError(
            f"no selection.json in {run.path}: the search ended before its --selectOn choice; run the training "
            f"script again with the same flags to make it"
        )
    saved = read_json(run.selection)
    if saved.get("evaluations") != len(history):
        raise UsageError(
            f"{run.selection} was made over {saved.get('evaluations')} evaluations, {run.history} holds "
            f"{len(history)}: run the training script again with the same flags"
        )
    return int(saved["chosen"])


def best_angles(run: RunDir, shape: tuple[int, ...], *, dev: bool = False) -> tuple[torch.Tensor, dict]:
    """The angles with the best training objective (never chosen on test data) and their history row; with
    ``dev`` (--selectOn), those chosen on the held-out training prompts.

    Read from the logged points, not from best_angles.safetensors, so that an evaluation killed between
    two writes can never pair angles with a value that was not logged. A run without its points (one kept
    in results/, which holds only the small files) is read from best_angles.safetensors instead.
    """
    if not run.points.exists():
        return _kept_best_angles(run, shape, dev)
    history, points = run.load_evaluations()
    if not history or points is None:
        raise UsageError(f"no finished evaluation in {run.path}: train first with the same flags")
    index = _chosen_index(run, history, dev)
    return torch.from_numpy(points[index].reshape(shape).copy()), history[index]


def _kept_best_angles(run: RunDir, shape: tuple[int, ...], dev: bool) -> tuple[torch.Tensor, dict]:
    """best_angles.safetensors and the chosen row of history.jsonl, which its metadata must name."""
    history = read_jsonl(run.history)
    if not history:
        raise UsageError(f"no finished evaluation in {run.path}: train first with the same flags")
    if not run.best.exists():
        raise UsageError(
            f"{run.path} holds neither points.safetensors nor best_angles.safetensors: train with the same flags"
        )
    row = history[_chosen_index(run, history, dev)]
    angles = read_tensors(run.best)["angles"]
    with safe_open(str(run.best), framework="pt") as handle:
        metadata = handle.metadata() or {}
    saved = (metadata.get("iteration"), metadata.get("value"))
    if saved != (str(row["iteration"]), repr(row["value"])) or tuple(angles.shape) != tuple(shape):
        raise UsageError(
            f"{run.best} holds evaluation {saved[0]} (value {saved[1]}, {tuple(angles.shape)} angles), not the "
            f"{'chosen' if dev else 'best'} row of {run.history} (evaluation {row['iteration']}, value "
            f"{row['value']!r}, {tuple(shape)} angles): copy the two files together from the same run"
        )
    return angles, row
