"""results/summary.json's "baselines" section, its README table and figure: TaRot against the baselines of
baselines.py on the same test questions, over seeds.

For each classification task and seed, the runs with train.sh's settings (any seed) are gathered: TaRot's
search (BO), its random-search control, and the baselines' folders (``Baseline_<method>_...``). All of a task
and seed must have asked the same questions; the unedited model is read from them (they all score it).

    summary["baselines"][task][method][setting][metric] = {"mean", "sd", "per_seed"}
    summary["baselines"][task][method][setting]["paired_ci95"] = [[low, high], ...]  # per seed, restricted F1
    summary["baselines"][task][method][setting]["seeds"] = [0, 1, 2]

Methods: unedited, contextual, batch, lora, road, tarot, random; settings: zero_shot, few_shot; metrics:
accuracy, restricted_accuracy, f1, restricted_f1 (calibration only ranks the choices: restricted only), and
top_answer_share (the share of the questions given the most common restricted answer: 1.0 = collapsed). For
topics, TaRot's accuracy and F1 are those of the first token (``next_token``), as for every other method.
``summary["baseline_verdicts"]`` answers, per task: does TaRot beat the unedited model, and the best free
baseline, on six-shot restricted macro F1, with a paired interval that excludes 0?
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tarot import stats
from tarot.choices import BASELINE_RUN_KIND, CALIBRATION_METHODS
from tarot.errors import UsageError
from tarot.report_select import KNOBS, Recipe, Run, differing, full_budget, method_name
from tarot.report_summary import SETTINGS
from tarot.runs import atomic_write
from tarot.stats import paired_metric_interval

METHODS = ("unedited", "contextual", "batch", "lora", "road", "tarot", "random")
NAMES = {
    "unedited": "unedited",
    "contextual": "contextual calibration",
    "batch": "batch calibration",
    "lora": "LoRA",
    "road": "RoAd",
    "tarot": "TaRot (BO)",
    "random": "random search",
    "one_answer": "one answer for all",
}
METRICS = ("accuracy", "restricted_accuracy", "f1", "restricted_f1")
HEADLINE = "restricted_f1"
TOP_SHARE = "top_answer_share"  # of the restricted predictions: 1.0 = one answer for every question


@dataclass(frozen=True)
class Scored:
    """One method on one task and seed: its test questions and, per setting, the unedited and its metrics."""

    method: str
    task: str
    seed: int
    path: str
    test_ids: list[int]
    settings: dict[str, dict[str, dict[str, Any]]]  # setting -> {"base": metrics, "method": metrics}
    seconds: float | None
    training: dict[str, Any] | None = None  # lora, road: steps, learning rate, whether it diverged
    evaluations: int | None = None  # TaRot and random search: the points the search scored
    held_out: float | None = None  # --selectOn dev:K: the chosen point's value on the K held-out examples


def _first_token(metrics: dict[str, Any]) -> dict[str, Any]:
    """A topic run's metrics as the next-token judge gives them (the same as the other methods')."""
    return metrics | metrics.get("next_token", {})


def _from_tarot(run: Run, recipe: Recipe) -> Scored:
    results = run.classification
    return Scored(
        method_name(run, recipe),
        run.task,
        run.identity["seed"],
        run.path,
        results["test_ids"],
        {
            s: {"base": _first_token(dict(results[s]["base"])), "method": _first_token(dict(results[s]["tarot"]))}  # type: ignore[literal-required]
            for s in SETTINGS
        },
        run.seconds,
        evaluations=len(run.history),
    )


def _baseline_matches(identity: dict[str, Any], recipe: Recipe) -> bool:
    shared = recipe.settings | recipe.by_kind["classification"]
    keys = ["model", "dtype", "trainingDataSize", "instruction", "fewShotCategory"]
    if identity["method"] not in CALIBRATION_METHODS:
        keys += ["layer", "moduleType"]
    return all(identity.get(key) == shared[key] for key in keys if key in shared)


def load_baselines(results: Path, recipe: Recipe) -> list[Scored]:
    """The baselines' runs in ``results`` made with the recipe's settings (any seed)."""
    found = []
    for path in sorted(results.rglob(f"{BASELINE_RUN_KIND}_*/results.json")):
        identity = json.loads((path.parent / "config.json").read_text())["identity"]
        if not _baseline_matches(identity, recipe):
            continue
        own = json.loads(path.read_text())
        method = own["method"]
        training = own.get("training", {})
        found.append(
            Scored(
                method,
                identity["dataset"],
                identity["seed"],
                path.parent.relative_to(results).as_posix(),
                own["test_ids"],
                {s: {"base": own[s]["base"], "method": own[s][method]} for s in SETTINGS},
                training.get("seconds_total"),
                training or None,
            )
        )
    return found


def comparison_runs(runs: list[Run], recipe: Recipe) -> list[Scored]:
    """TaRot's classification runs with the recipe's settings and budget, at any seed, and its variants (the
    same, with some of :data:`KNOBS` changed)."""
    return [
        _from_tarot(run, recipe)
        for run in runs
        if run.kind == "classification" and set(differing(run, recipe)) <= {"seed", *KNOBS} and full_budget(run, recipe)
    ]


def comparison(runs: list[Run], results: Path, recipe: Recipe) -> dict[str, Any]:
    """summary.json's sections for one recipe (one model): "baselines", "baseline_verdicts",
    "variant_verdicts" and "baseline_costs"."""
    scored = [_with_held_out(s, results) for s in comparison_runs(runs, recipe)] + load_baselines(results, recipe)
    table = compare(scored)
    return {
        "baselines": table,
        "baseline_verdicts": verdicts(scored, table),
        "variant_verdicts": variant_verdicts(scored, table),
        "baseline_costs": costs(scored),
    }


def _with_held_out(item: Scored, results: Path) -> Scored:
    """The run with its chosen point's held-out value, when it chose on held-out examples (selection.json)."""
    path = results / item.path / "selection.json"
    if not path.exists():
        return item
    selection = json.loads(path.read_text())
    chosen = next(c for c in selection["candidates"] if c["iteration"] == selection["chosen"])
    return dataclasses.replace(item, held_out=chosen["dev_value"])


def _spread(values: list[float]) -> dict[str, Any]:
    return {
        "mean": round(statistics.fmean(values), 4),
        "sd": round(statistics.stdev(values), 4) if len(values) > 1 else None,
        "per_seed": values,
    }


def _method_entry(scored: list[Scored], who: str) -> dict[str, Any]:
    """One method's settings: each metric over the seeds (in seed order) and its paired intervals."""
    entry: dict[str, Any] = {}
    for setting in SETTINGS:
        records = [s.settings[setting][who] for s in scored]
        values: dict[str, Any] = {"seeds": [s.seed for s in scored]}
        for metric in METRICS:
            if all(metric in r for r in records):
                values[metric] = _spread([r[metric] for r in records])
        if all("restricted_predictions" in r for r in records):  # how far the method collapsed onto one answer
            values[TOP_SHARE] = _spread([_top_share(r["restricted_predictions"]) for r in records])
        if who == "method":
            values["paired_ci95"] = [r.get("paired_ci95", {}).get(HEADLINE) for r in records]
        entry[setting] = values
    return entry


def _top_share(predictions: list[str]) -> float:
    """The share of the questions given the most common answer: 1.0 when every question gets the same one."""
    return round(Counter(predictions).most_common(1)[0][1] / len(predictions), 4)


def compare(scored: list[Scored]) -> dict[str, Any]:
    """summary["baselines"]: by task, then method (in METHODS' order), the methods' metrics over seeds."""
    by_task: dict[str, dict[str, dict[int, Scored]]] = {}
    for item in scored:
        slot = by_task.setdefault(item.task, {}).setdefault(item.method, {})
        if item.seed in slot:
            raise UsageError(
                f"two {item.method} runs for {item.task} seed {item.seed}: {slot[item.seed].path}, {item.path}"
            )
        slot[item.seed] = item
    table: dict[str, Any] = {}
    for task, methods in sorted(by_task.items()):
        seeds = sorted({seed for runs in methods.values() for seed in runs})
        for seed in seeds:
            asked = {m: runs[seed] for m, runs in methods.items() if seed in runs}
            reference = next(iter(asked.values()))
            for other in asked.values():
                if other.test_ids != reference.test_ids:
                    raise UsageError(
                        f"{task} seed {seed}: {other.path} and {reference.path} asked different test questions"
                    )
        unedited = [min(runs, key=lambda s: s.path) for runs in _by_seed(methods).values()]
        table[task] = {"unedited": _method_entry(unedited, "base"), "one_answer": _one_answer_entry(unedited)}
        variants = sorted(m for m in methods if m not in METHODS)
        for method in [*METHODS[1:], *variants]:
            if method in methods:
                table[task][method] = _method_entry([methods[method][s] for s in sorted(methods[method])], "method")
    return table


def _one_answer_entry(per_seed: list[Scored]) -> dict[str, Any]:
    """What giving each test set's most common answer to every question scores (the collapse's level), per
    seed; the same for both settings, and restricted or not (it is always one of the choices)."""
    answers = [stats.one_answer(_targets(item)) for item in per_seed]
    entry: dict[str, Any] = {"seeds": [item.seed for item in per_seed], "answer": [a["answer"] for a in answers]}
    for metric in METRICS:
        entry[metric] = _spread([a["f1" if metric.endswith("f1") else "accuracy"] for a in answers])
    entry[TOP_SHARE] = entry["accuracy"]  # the share of the test set's most common label
    return {setting: entry for setting in SETTINGS}


def _by_seed(methods: dict[str, dict[int, Scored]]) -> dict[int, list[Scored]]:
    out: dict[int, list[Scored]] = {}
    for runs in methods.values():
        for seed, item in runs.items():
            out.setdefault(seed, []).append(item)
    return dict(sorted(out.items()))


def verdicts(scored: list[Scored], table: dict[str, Any], method: str = "tarot") -> dict[str, Any]:
    """Per task: ``method`` (TaRot's BO by default) against the unedited model and against the best free
    baseline (the calibration with the higher mean six-shot restricted F1, so the harder one to beat), seed
    by seed: the paired bootstrap 95% interval of the difference in six-shot restricted macro F1 on the same
    questions. Also against its random-search control (``random`` for ``tarot``, ``random[...]`` for
    ``tarot[...]``) on the seeds where the control has run, and, for a variant that chose its final point on
    held-out examples (``--selectOn dev:K``), the chosen point's held-out value minus the control's: could
    those examples tell which of the two edits to trust?"""
    index = {(s.task, s.method, s.seed): s for s in scored}
    found: dict[str, Any] = {}
    for task, methods in table.items():
        free = [m for m in CALIBRATION_METHODS if m in methods]
        if method not in methods or not free:
            continue
        best = max(free, key=lambda m: (methods[m]["few_shot"][HEADLINE]["mean"], m))
        own_seeds = methods[method]["few_shot"]["seeds"]
        seeds = [
            seed
            for seed in own_seeds
            if (task, best, seed) in index
            and "restricted_predictions" in index[(task, method, seed)].settings["few_shot"]["method"]
        ]
        if not seeds:  # runs evaluated before the restricted predictions were recorded
            continue
        versus_free = [_paired_f1(index[(task, method, seed)], index[(task, best, seed)]) for seed in seeds]
        versus_unedited = [
            ci for seed, ci in zip(own_seeds, methods[method]["few_shot"]["paired_ci95"], strict=True) if seed in seeds
        ]
        # the random-search control at the same budget and settings: does the search, not the objective, help?
        control = "random" + method.removeprefix("tarot")  # tarot -> random, tarot[...] -> random[...]
        control_seeds = [seed for seed in seeds if (task, control, seed) in index]
        versus_control = [_paired_f1(index[(task, method, s)], index[(task, control, s)]) for s in control_seeds]
        held_out = [(index[(task, method, s)].held_out, index[(task, control, s)].held_out) for s in control_seeds]
        held_out_differences = [own - other for own, other in held_out if own is not None and other is not None]
        found[task] = {
            "best_free_baseline": best,
            "seeds": seeds,
            "minus_unedited": versus_unedited,
            "minus_best_free": versus_free,
            "beats_unedited": _count(versus_unedited),
            "beats_best_free": _count(versus_free),
            "random_control_seeds": control_seeds,
            "minus_random_control": versus_control,
            "beats_random_control": _count(versus_control),
        }
        if held_out and len(held_out_differences) == len(held_out):  # every seed of both chose on held-out examples
            found[task]["held_out_minus_random_control"] = held_out_differences
    return found


def _paired_f1(edited: Scored, other: Scored) -> list[float]:
    """The paired bootstrap 95% interval of edited minus other in six-shot restricted macro F1."""
    return paired_metric_interval(
        "f1",
        edited.settings["few_shot"]["method"]["restricted_predictions"],
        other.settings["few_shot"]["method"]["restricted_predictions"],
        _targets(edited),
    )


def variant_verdicts(scored: list[Scored], table: dict[str, Any]) -> dict[str, Any]:
    """:func:`verdicts` for every TaRot variant (``tarot[...]``), by variant then task."""
    variants = sorted({m for methods in table.values() for m in methods if m.startswith("tarot[")})
    return {variant: verdicts(scored, table, variant) for variant in variants}


def _targets(item: Scored) -> list[str]:
    from tarot.report_summary import _targets as by_id

    answers = by_id(item.task)
    assert answers is not None
    return [answers[i] for i in item.test_ids]


def _count(intervals: Sequence[Sequence[float] | None]) -> dict[str, int]:
    """Seeds whose interval lies above 0 (better), below 0 (worse), or contains 0."""
    known = [ci for ci in intervals if ci is not None]
    return {
        "better": sum(low > 0 for low, _ in known),
        "worse": sum(high < 0 for _, high in known),
        "unclear": sum(low <= 0 <= high for low, high in known),
    }


def costs(scored: list[Scored]) -> dict[str, Any]:
    """Mean seconds per line of each method that records them (TaRot: the search; lora/road: training with
    its cross-validation), over every task and seed; for searches also the seconds per evaluation (the
    optimiser's suggestion and the objective: the search's seconds over its evaluations)."""
    seconds: dict[str, list[float]] = {}
    per_evaluation: dict[str, list[float]] = {}
    trained: dict[str, list[dict[str, Any]]] = {}
    for item in scored:
        if item.seconds is not None:
            seconds.setdefault(item.method, []).append(item.seconds)
        if item.seconds is not None and item.evaluations:
            per_evaluation.setdefault(item.method, []).append(item.seconds / item.evaluations)
        if item.training is not None:
            trained.setdefault(item.method, []).append(item.training)
    found: dict[str, Any] = {
        m: {"lines": len(v), "mean_seconds": round(statistics.fmean(v), 1)} for m, v in sorted(seconds.items())
    }
    for method, values in per_evaluation.items():
        found[method]["seconds_per_evaluation"] = round(statistics.fmean(values), 2)
    for method, logs in trained.items():  # how the cross-validation chose, and whether a run diverged
        found[method] |= {
            "diverged": sum(bool(log["diverged"]) for log in logs),
            "steps": sorted(log["steps"] for log in logs),
            "learning_rates": dict(sorted(Counter(f"{log['learning_rate']:g}" for log in logs).items())),
        }
    return found


# ---- README ---------------------------------------------------------------------------------------


def _cell(entry: dict[str, Any] | None, seeds: int | None = None) -> str:
    """Mean ± sd (restricted accuracy) ▲▼; ``[n=k]`` when the method has fewer seeds than the row."""
    if entry is None or HEADLINE not in entry:
        return "-"
    f1, accuracy = entry[HEADLINE], entry["restricted_accuracy"]
    sd = "" if f1["sd"] is None else f" ± {f1['sd']:.3f}"
    if seeds is not None and len(entry["seeds"]) < seeds:
        sd += f" [n={len(entry['seeds'])}]"
    return f"{f1['mean']:.3f}{sd} ({accuracy['mean']:.2f}){_marks(entry)}"


def _marks(entry: dict[str, Any]) -> str:
    """`` ▲n ▼m``: the seeds whose paired interval (restricted F1, against the unedited model) lies above or
    below 0."""
    count = _count([ci for ci in entry.get("paired_ci95", []) if ci is not None])
    return "".join(f" {sign}{count[key]}" for key, sign in (("better", "▲"), ("worse", "▼")) if count[key])


def table(summary: dict[str, Any]) -> str:
    """Task x setting rows, one column per method: restricted macro F1, mean ± sd over the seeds (restricted
    accuracy); ▲n / ▼n: seeds whose paired interval against the unedited model lies above / below 0."""
    comparison = summary["baselines"]
    columns = [*METHODS, "one_answer"]
    lines = [
        "| task | setting | seeds | " + " | ".join(NAMES[m] for m in columns) + " |",
        "|---|---|---|" + "---|" * len(columns),
    ]
    for task, methods in comparison.items():
        for setting in SETTINGS:
            seeds = len(methods["unedited"][setting]["seeds"])
            cells = " | ".join(_cell(methods.get(m, {}).get(setting), seeds) for m in columns)
            lines.append(f"| {task} | {setting.replace('_', '-')} | {seeds} | {cells} |")
    verdict_rows = summary.get("baseline_verdicts", {})
    if verdict_rows:
        lines += [
            "",
            "| task | TaRot beats the unedited model? (seeds better / worse / unclear) | best free baseline | "
            "TaRot beats it? (seeds better / worse / unclear) |",
            "|---|---|---|---|",
        ]
        for task, v in verdict_rows.items():
            lines.append(
                f"| {task} | {_verdict(v['beats_unedited'])} | {NAMES[v['best_free_baseline']]} | "
                f"{_verdict(v['beats_best_free'])} |"
            )
    cost = summary.get("baseline_costs", {})
    if cost:
        lines += [
            "",
            "Cost per line (one thread): "
            + "; ".join(
                f"{NAMES.get(m, m)} {c['mean_seconds']:.0f} s (mean of {c['lines']}"
                + (f"; {c['seconds_per_evaluation']:.1f} s per evaluation)" if "seconds_per_evaluation" in c else ")")
                for m, c in cost.items()
                if m in METHODS
            ),
        ]
        for method, c in cost.items():
            if "diverged" in c:
                rates = ", ".join(f"{rate} on {n}" for rate, n in c["learning_rates"].items())
                lines += [
                    "",
                    f"{NAMES[method]}: steps chosen by cross-validation {c['steps']} (learning rate {rates}); "
                    f"{c['diverged']} of {c['lines']} runs diverged",
                ]
    return "\n".join(lines)


def variants_table(summary: dict[str, Any]) -> str:
    """TaRot's variants (issue 12's knobs) against TaRot, the random-search controls, the unedited model, the
    calibrations and the one-answer level: a row per method and a column per task, for six-shot restricted
    macro F1, zero-shot restricted macro F1, zero-shot accuracy (exact match) and the six-shot share of the
    most common answer; then, per variant and task,
    the seeds in which it beats the unedited model and the best free baseline."""
    comparison, costs = summary["baselines"], summary.get("baseline_costs", {})
    tasks = list(comparison)
    # the tasks run at every seed (the BIG-bench ones; review_topic only at seed 0): the last column's mean
    seeds = {task: len(comparison[task]["unedited"]["few_shot"]["seeds"]) for task in tasks}
    every_seed = [task for task in tasks if seeds[task] == max(seeds.values())]
    searched = {m for methods in comparison.values() for m in methods if m.split("[")[0] in ("tarot", "random")}
    order = sorted(searched, key=lambda m: (m.split("[")[0] != "tarot", "[" in m, m))
    rows = ["unedited", "one_answer", *CALIBRATION_METHODS, *order]
    lines = []
    for setting, metric, title in (
        ("few_shot", HEADLINE, "six-shot restricted macro F1"),
        ("zero_shot", HEADLINE, "zero-shot restricted macro F1"),
        ("zero_shot", "accuracy", "zero-shot accuracy (exact match)"),
        ("few_shot", TOP_SHARE, "six-shot share of the questions given the most common answer (1 = collapsed)"),
    ):
        explained = (
            "; ▲n / ▼n: seeds with a paired interval above / below 0 against the unedited model"
            if metric == HEADLINE
            else " (the calibrations only rank the choices: -)"
            if metric == "accuracy"
            else " (among the choices; one answer for all: the test set's own share of its most common label)"
        )
        lines += [
            f"{title}: mean ± sd over seeds ([n=k]: k seeds only), then the mean change against the unedited "
            f"model on the same seeds{explained}. Mean change: over {', '.join(every_seed)} (the tasks run at "
            "every seed), for a method that has them all",
            "",
            f"| method | {' | '.join(tasks)} | mean change | search s per line (per evaluation) |",
            "|---|" + "---|" * (len(tasks) + 2),
        ]
        for method in rows:
            cells = []
            for task in tasks:
                unedited = comparison[task]["unedited"][setting]
                cells.append(_variant_cell(comparison[task].get(method, {}).get(setting), unedited, metric))
            cells.append("-" if method == "unedited" else _mean_change(comparison, method, every_seed, setting, metric))
            cost = costs.get(method)
            spent = "-" if cost is None else f"{cost['mean_seconds']:.0f} ({cost.get('seconds_per_evaluation', 0):.1f})"
            lines.append(f"| {NAMES.get(method, method)} | {' | '.join(cells)} | {spent} |")
        lines.append("")
    verdict_rows = {"tarot": summary.get("baseline_verdicts", {}), **summary.get("variant_verdicts", {})}
    lines += [
        "Six-shot restricted macro F1, seed by seed (better / worse / unclear, by the paired interval on the same "
        "questions): against the unedited model; against the best free baseline; against its own random-search "
        "control (the same variant, budget and seed: does the search help, beyond the objective?)",
        "",
        f"| method | {' | '.join(tasks)} |",
        "|---|" + "---|" * len(tasks),
    ]
    for method, by_task in verdict_rows.items():
        cells = [
            f"{_counts(v['beats_unedited'])}; {_counts(v['beats_best_free'])}; {_control(v)}"
            if (v := by_task.get(task))
            else "-"
            for task in tasks
        ]
        lines.append(f"| {NAMES.get(method, method)} | {' | '.join(cells)} |")
    checks = [check for method, by_task in verdict_rows.items() if (check := _held_out_check(method, by_task))]
    lines += [line for check in checks for line in ("", check)]
    return "\n".join(lines)


def _held_out_check(method: str, by_task: dict[str, Any]) -> str | None:
    """A sentence on whether the held-out examples that chose the final point (``--selectOn dev:K``) also
    rank the edit against its random-search control's as the test questions do; None without such runs."""
    pairs = [
        (difference, interval)
        for verdict in by_task.values()
        if "held_out_minus_random_control" in verdict
        for difference, interval in zip(
            verdict["held_out_minus_random_control"], verdict["minus_random_control"], strict=True
        )
    ]
    if not pairs:
        return None
    lower = [interval for difference, interval in pairs if difference < 0]
    return (
        f"{NAMES.get(method, method)}: the chosen point's held-out value is below its random-search control's "
        f"in {len(lower)} of {len(pairs)} runs; in {sum(low > 0 for low, _ in lower)} of those, its edit is the "
        "better one on the test questions (paired interval above 0)"
    )


def _variant_cell(entry: dict[str, Any] | None, unedited: dict[str, Any], metric: str) -> str:
    """Mean ± sd over seeds, ``[n=k]`` with fewer seeds than the unedited row, the mean change against the
    unedited model on the method's own seeds, and for restricted F1 the seeds whose paired interval lies above
    (▲) or below (▼) 0."""
    if entry is None or metric not in entry or metric not in unedited:
        return "-"
    values = entry[metric]
    text = f"{values['mean']:.3f}" + ("" if values["sd"] is None else f" ± {values['sd']:.3f}")
    if len(entry["seeds"]) < len(unedited["seeds"]):
        text += f" [n={len(entry['seeds'])}]"
    if entry is not unedited:
        text += f", {_change(entry, unedited, metric):+.3f}"
    return text + (_marks(entry) if metric == HEADLINE else "")


def _change(entry: dict[str, Any], unedited: dict[str, Any], metric: str) -> float:
    """The mean over ``entry``'s seeds of its ``metric`` minus the unedited model's on the same seed."""
    base = dict(zip(unedited["seeds"], unedited[metric]["per_seed"], strict=True))
    return statistics.fmean(v - base[seed] for seed, v in zip(entry["seeds"], entry[metric]["per_seed"], strict=True))


def _mean_change(comparison: dict[str, Any], method: str, tasks: list[str], setting: str, metric: str) -> str:
    """The mean over ``tasks`` of the method's change against the unedited model; - unless it has them all."""
    changes = []
    for task in tasks:
        entry, unedited = comparison[task].get(method, {}).get(setting), comparison[task]["unedited"][setting]
        if entry is None or metric not in entry or metric not in unedited:
            return "-"
        changes.append(_change(entry, unedited, metric))
    return f"{statistics.fmean(changes):+.3f}"


def _control(verdict: dict[str, Any]) -> str:
    """The counts against the random-search control; - before any control has run (or in older summaries)."""
    return _counts(verdict["beats_random_control"]) if verdict.get("random_control_seeds") else "-"


def _counts(count: dict[str, int]) -> str:
    return f"{count['better']}/{count['worse']}/{count['unclear']}"


def _verdict(count: dict[str, int]) -> str:
    seeds = count["better"] + count["worse"] + count["unclear"]
    word = "yes" if count["better"] == seeds else ("no, worse" if count["worse"] == seeds else "no")
    return f"{word} ({count['better']} / {count['worse']} / {count['unclear']})"


# ---- figure ---------------------------------------------------------------------------------------


def bars(summary: dict[str, Any], path: Path) -> None:
    """results/baselines.png: per task, one bar per method, six-shot (and zero-shot) restricted macro F1,
    mean over seeds with the seeds' standard deviation as error bars; a dashed line at what giving every
    question the most common answer scores."""
    comparison = summary["baselines"]
    if not comparison:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(comparison)
    figure, axes = plt.subplots(2, 1, figsize=(max(6.0, 1.9 * len(tasks)), 7.0), squeeze=False)
    width = 0.8 / len(METHODS)
    for ax, setting in zip(axes.flat, ("few_shot", "zero_shot"), strict=True):
        for k, method in enumerate(METHODS):
            means, errors, xs = [], [], []
            for t, task in enumerate(tasks):
                entry = comparison[task].get(method, {}).get(setting, {}).get(HEADLINE)
                if entry is not None:
                    xs.append(t - 0.4 + (k + 0.5) * width)
                    means.append(entry["mean"])
                    errors.append(entry["sd"] or 0.0)
            ax.bar(xs, means, width, yerr=errors, capsize=2, label=NAMES[method], color=f"C{k}")
        for t, task in enumerate(tasks):  # the level of answering every question with the most common answer
            level = comparison[task]["one_answer"][setting][HEADLINE]["mean"]
            ax.hlines(level, t - 0.45, t + 0.45, colors="black", linestyles="dashed", linewidth=1,
                      label=NAMES["one_answer"] if t == 0 else None)  # fmt: skip
        ax.set_xticks(range(len(tasks)), tasks)
        ax.set_ylabel("restricted macro F1")
        ax.set_title(f"{'six-shot' if setting == 'few_shot' else 'zero-shot'}: mean over seeds, error bars = sd")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    figure.tight_layout(rect=(0, 0.08, 1, 1))
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=110, metadata={"Software": None}))
    plt.close(figure)
