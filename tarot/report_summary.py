"""results/summary.json: the main table's rows, the average change, collateral damage and the studies, built
from the selected runs (tarot/report_select.py)."""

from __future__ import annotations

import functools
from typing import Any

from tarot import stats
from tarot.data import load_task
from tarot.errors import UsageError
from tarot.report_select import KNOBS, Recipe, Run, Selection, differing, full_budget, method_name
from tarot.results import ClassificationResults, Setting

SETTINGS = ("zero_shot", "few_shot")


def settings(results: ClassificationResults) -> dict[str, Setting]:
    """Zero-shot and few-shot, by name."""
    return {"zero_shot": results["zero_shot"], "few_shot": results["few_shot"]}


@functools.cache
def _targets(task: str) -> dict | None:
    """Each example's answer by id, read once per task; None if the task's file is not in data/."""
    try:
        return {example.id: example.target for example in load_task(task).examples}
    except UsageError:  # e.g. ag_news, which needs the hub
        return None


def one_answer(task: str, test_ids: list) -> dict | None:
    """The test set's most common answer, and the accuracy and macro F1 of giving it to every question: what
    a model that has collapsed onto one answer scores. None if the task's file is not in data/."""
    targets = _targets(task)
    return None if targets is None else stats.one_answer([targets[i] for i in test_ids])


def accuracies(results: ClassificationResults, task: str) -> dict[str, Any]:
    """Zero- and few-shot accuracy of the unedited and edited model, with intervals, from a results file."""
    row: dict[str, Any] = {"n_test": results["n_test"], "one_answer": one_answer(task, results["test_ids"])}
    for setting in SETTINGS:
        base, tarot = settings(results)[setting]["base"], settings(results)[setting]["tarot"]
        row[setting] = {
            "base": base["accuracy"],
            "tarot": tarot["accuracy"],
            "accuracy_ci95": {"base": base["accuracy_ci95"], "tarot": tarot["accuracy_ci95"]},
            "f1": {"base": base["f1"], "tarot": tarot["f1"]},
            "restricted_accuracy": {"base": base.get("restricted_accuracy"), "tarot": tarot.get("restricted_accuracy")},
        }
    return row


def study_row(run: Run, key: str) -> dict[str, Any]:
    return {
        key: run.identity[key],
        "num_angles": run.num_angles,
        "unedited_train_objective": run.history[0]["value"],
        "best_train_objective": run.results["best_train_value"],
        "search_seconds": run.seconds,
        **accuracies(run.classification, run.task),
    }


def classification_row(bo: Run | None, random: Run | None) -> dict[str, Any]:
    any_run = bo or random
    assert any_run is not None
    results = any_run.classification
    row: dict[str, Any] = {"n_test": results["n_test"], "one_answer": one_answer(any_run.task, results["test_ids"])}
    for setting in SETTINGS:
        base = settings(results)[setting]["base"]
        entry = {"base": base["accuracy"]}
        other: dict[str, dict] = {"accuracy_ci95": {"base": base["accuracy_ci95"]}}
        for label, run in (("tarot", bo), ("random", random)):
            if run is not None:
                tarot = settings(run.classification)[setting]["tarot"]
                entry[label] = tarot["accuracy"]
                other["accuracy_ci95"][label] = tarot["accuracy_ci95"]
        for measure in ("restricted_accuracy", "f1"):
            values = {"base": base.get(measure)}
            for label, run in (("tarot", bo), ("random", random)):
                if run is not None:
                    values[label] = settings(run.classification)[setting]["tarot"].get(measure)
            other[measure] = values
        row[setting] = entry | other
    for label, run in (("tarot", bo), ("random", random)):
        if run is not None:
            row.setdefault("best_train_objective", {})[label] = run.results["best_train_value"]
            row.setdefault("unedited_train_objective", run.history[0]["value"])
            row.setdefault("search_seconds", {})[label] = run.seconds
            row.setdefault("seconds_per_evaluation", {})[label] = per_evaluation(run)
    return row


def per_evaluation(run: Run) -> float:
    """The search's seconds per evaluation: the optimiser's suggestion and the objective, over the history."""
    return round(run.seconds / len(run.history), 2)


def generation_row(bo: Run | None, random: Run | None) -> dict[str, Any]:
    any_run = bo or random
    assert any_run is not None
    results = any_run.generation
    row: dict[str, Any] = {"n_test": results["n_test"], "scorer": results["scorer"], "base": results["base"]}
    for label, run in (("tarot", bo), ("random", random)):
        if run is not None:
            row[label] = run.generation["tarot"]
            row.setdefault("best_train_reward", {})[label] = run.results["best_train_value"]
            row.setdefault("search_seconds", {})[label] = run.seconds
            row.setdefault("seconds_per_evaluation", {})[label] = per_evaluation(run)
    return row


def average_improvement(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Mean over tasks of TaRot minus unedited accuracy, in percentage points and relative (where the
    unedited accuracy is above zero); the paper does not spell out which of the two its averages are."""
    result = {}
    for setting in SETTINGS:
        pairs = [(row[setting]["base"], row[setting]["tarot"]) for row in rows.values() if "tarot" in row[setting]]
        relative = [(t - b) / b * 100 for b, t in pairs if b > 0]
        result[setting] = {
            "tasks": len(pairs),
            "points": round(sum(t - b for b, t in pairs) / len(pairs) * 100, 2) if pairs else None,
            "relative_percent": round(sum(relative) / len(relative), 2) if relative else None,
            "relative_tasks": len(relative),
        }
    return result


def summarise(selection: Selection, recipe: Recipe) -> dict[str, Any]:
    summary: dict[str, Any] = {"classification": {}, "generation": {}}
    for (kind, task), by_optimizer in sorted(selection.main.items()):
        make = classification_row if kind == "classification" else generation_row
        summary[kind][task] = make(by_optimizer.get("bo"), by_optimizer.get("random"))
    summary["average_improvement"] = average_improvement(summary["classification"])
    summary["collateral"] = {}
    for (kind, task), by_optimizer in sorted(selection.main.items()):
        if kind == "classification" and "bo" in by_optimizer and by_optimizer["bo"].cross:
            summary["collateral"][task] = {
                other: accuracies(results, other) for other, results in by_optimizer["bo"].cross.items()
            }
    # the same for TaRot's variants (issue 12's knobs) whose edit was evaluated on other tasks too
    summary["variant_collateral"] = {}
    for run in selection.others:
        variant = run.kind == "classification" and set(differing(run, recipe)) <= set(KNOBS)
        if variant and run.cross and run.optimizer == "bo" and full_budget(run, recipe):
            found = {"own": accuracies(run.classification, run.task)}
            found |= {other: accuracies(results, other) for other, results in sorted(run.cross.items())}
            summary["variant_collateral"].setdefault(method_name(run, recipe), {})[run.task] = found
    summary["studies"] = {}
    for key in recipe.studied:  # in this order in results/README.md
        for task, chosen in sorted(selection.studies.get(key, {}).items()):
            reference = selection.main.get(("classification", task), {}).get("bo")  # the main table's setting
            if reference is not None:
                chosen = [*chosen, reference]
            rows = sorted((study_row(run, key) for run in chosen), key=lambda row: row[key])
            summary["studies"].setdefault(key, {})[task] = rows
    summary["other_runs"] = [{"path": run.path, "kind": run.kind} for run in selection.others]
    return summary
