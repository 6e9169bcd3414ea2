"""Build the results table from the committed run files.

    python report.py                  # results/summary.json, results/README.md (table), results/*.png
    python report.py --collect runs   # first copy finished runs' small files from runs/ into results/

Reads only what is committed: ``results/**/{config.json,history.jsonl,results.json,results_on_*.json}``,
and the task files in data/ for the labels of each test set (the "one answer for all" baseline), so the
tables can be rebuilt byte for byte. The main table takes the runs with train.sh's settings; the studies
take the runs that change one of its settings (STUDIED); summary.json lists any other run under
"other_runs".
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import sys
from pathlib import Path

from tarot import stats
from tarot.data import load_task
from tarot.errors import UsageError
from tarot.generation import DEFAULT_SCORERS
from tarot.runs import CROSS_RESULTS_PREFIX, atomic_write, read_jsonl

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
KEPT_FILES = ("config.json", "history.jsonl", "results.json", "samples.jsonl", f"{CROSS_RESULTS_PREFIX}*.json")
# train.sh's settings: the runs that make the main table
MAIN = {
    "model": "smollm2",
    "dtype": "float32",
    "layer": [0, 15],
    "angle_0": -0.25,
    "angle_1": 0.25,
    "rotationMethod": "rotary",
    "moduleType": "reasoning",
    "trainingDataSize": 20,
    "seed": 0,
    "initialPoints": 4,
    "instruction": None,
}
MAIN_BY_KIND = {
    "classification": {"metric": "prob", "fewShotCategory": "mix"},
    "generation": {"metric": "reward", "fewShotCategory": "zero", "batchSize": 32},
}
MAIN_EVALUATIONS = 124  # 4 initial points + 120 iterations
STUDIED = ("trainingDataSize", "rotationMethod")  # train.sh's studies beyond the paper: one setting changed


def collect(source: Path) -> int:
    """Copy every finished run (one with results.json) from ``source`` into results/, same relative path."""
    copied = 0
    for results in sorted(source.rglob("results.json")):
        run = results.parent
        relative = run.relative_to(source)
        if relative.parts and relative.parts[0] == "demo":
            continue
        target = RESULTS / relative
        target.mkdir(parents=True, exist_ok=True)
        for pattern in KEPT_FILES:
            for file in sorted(run.glob(pattern)):
                atomic_write(target / file.name, lambda tmp, file=file: shutil.copyfile(file, tmp))
        copied += 1
    return copied


def _read(run: Path) -> dict:
    config = json.loads((run / "config.json").read_text())
    history = read_jsonl(run / "history.jsonl")
    return {
        "path": run.relative_to(RESULTS).as_posix(),
        "identity": config["identity"],
        "kind": "generation" if "scorer" in config["identity"] else "classification",
        "history": history,
        "results": json.loads((run / "results.json").read_text()),
        "cross": {
            path.stem.removeprefix(CROSS_RESULTS_PREFIX): json.loads(path.read_text())
            for path in sorted(run.glob(f"{CROSS_RESULTS_PREFIX}*.json"))
        },
        "num_angles": config["num_angles"],
        "seconds": round(sum(row["seconds"] for row in history), 1),
    }


def load_runs() -> list[dict]:
    return [_read(path.parent) for path in sorted(RESULTS.rglob("results.json"))]


def _full_budget(run: dict) -> bool:
    """The search ran train.sh's budget and the evaluation used that full search."""
    return len(run["history"]) == MAIN_EVALUATIONS == run["results"].get("evaluations", MAIN_EVALUATIONS)


def _main_settings(run: dict) -> dict:
    """train.sh's settings for a run of this kind (and, for generation, its dataset's default scorer)."""
    settings = MAIN | MAIN_BY_KIND[run["kind"]]
    if run["kind"] == "generation":
        settings["scorer"] = DEFAULT_SCORERS.get(run["identity"]["dataset"])
    return settings


def _differing(run: dict) -> list[str]:
    return [key for key, value in _main_settings(run).items() if run["identity"].get(key) != value]


def _is_main(run: dict) -> bool:
    """A run of train.sh's table: its settings, the full budget, and an evaluation of that full search."""
    return not _differing(run) and _full_budget(run)


def _study(run: dict) -> str | None:
    """The one train.sh setting (of STUDIED) that this full-budget BO classification run changes, or None."""
    differing = _differing(run)
    if (
        len(differing) == 1
        and differing[0] in STUDIED
        and run["identity"]["optimizer"] == "bo"
        and run["kind"] == "classification"
        and _full_budget(run)
    ):
        return differing[0]
    return None


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


def _accuracies(results: dict, task: str) -> dict:
    """Zero- and few-shot accuracy of the unedited and edited model, with intervals, from a results file."""
    row = {"n_test": results["n_test"], "one_answer": one_answer(task, results["test_ids"])}
    for setting in ("zero_shot", "few_shot"):
        base, tarot = results[setting]["base"], results[setting]["tarot"]
        row[setting] = {
            "base": base["accuracy"],
            "tarot": tarot["accuracy"],
            "accuracy_ci95": {"base": base["accuracy_ci95"], "tarot": tarot["accuracy_ci95"]},
            "f1": {"base": base["f1"], "tarot": tarot["f1"]},
            "restricted_accuracy": {"base": base.get("restricted_accuracy"), "tarot": tarot.get("restricted_accuracy")},
        }
    return row


def _study_row(run: dict, key: str) -> dict:
    return {
        key: run["identity"][key],
        "num_angles": run["num_angles"],
        "unedited_train_objective": run["history"][0]["value"],
        "best_train_objective": run["results"]["best_train_value"],
        "search_seconds": run["seconds"],
        **_accuracies(run["results"], run["identity"]["dataset"]),
    }


def _classification_row(bo: dict | None, random: dict | None) -> dict:
    any_run = bo or random
    row = {
        "n_test": any_run["results"]["n_test"],
        "one_answer": one_answer(any_run["identity"]["dataset"], any_run["results"]["test_ids"]),
    }
    for setting in ("zero_shot", "few_shot"):
        entry = {"base": any_run["results"][setting]["base"]["accuracy"]}
        other: dict[str, dict] = {"accuracy_ci95": {"base": any_run["results"][setting]["base"]["accuracy_ci95"]}}
        for label, run in (("tarot", bo), ("random", random)):
            if run is not None:
                entry[label] = run["results"][setting]["tarot"]["accuracy"]
                other["accuracy_ci95"][label] = run["results"][setting]["tarot"]["accuracy_ci95"]
        for measure in ("restricted_accuracy", "f1"):
            values = {"base": any_run["results"][setting]["base"].get(measure)}
            for label, run in (("tarot", bo), ("random", random)):
                if run is not None:
                    values[label] = run["results"][setting]["tarot"].get(measure)
            other[measure] = values
        row[setting] = entry | other
    for label, run in (("tarot", bo), ("random", random)):
        if run is not None:
            row.setdefault("best_train_objective", {})[label] = run["results"]["best_train_value"]
            row.setdefault("unedited_train_objective", run["history"][0]["value"])
            row.setdefault("search_seconds", {})[label] = run["seconds"]
    return row


def _generation_row(bo: dict | None, random: dict | None) -> dict:
    any_run = bo or random
    row = {
        "n_test": any_run["results"]["n_test"],
        "scorer": any_run["results"]["scorer"],
        "base": any_run["results"]["base"],
    }
    for label, run in (("tarot", bo), ("random", random)):
        if run is not None:
            row[label] = run["results"]["tarot"]
            row.setdefault("best_train_reward", {})[label] = run["results"]["best_train_value"]
            row.setdefault("search_seconds", {})[label] = run["seconds"]
    return row


def summarise(runs: list[dict]) -> dict:
    main: dict[tuple[str, str], dict[str, dict]] = {}
    for run in runs:
        if _is_main(run):
            slot = main.setdefault((run["kind"], run["identity"]["dataset"]), {})
            if run["identity"]["optimizer"] in slot:
                sys.exit(
                    f"report.py: two main-table runs for {run['identity']['dataset']} "
                    f"{run['identity']['optimizer']}: {slot[run['identity']['optimizer']]['path']} and "
                    f"{run['path']}; remove one from results/"
                )
            slot[run["identity"]["optimizer"]] = run
    summary = {"classification": {}, "generation": {}}
    for (kind, task), by_optimizer in sorted(main.items()):
        make = _classification_row if kind == "classification" else _generation_row
        summary[kind][task] = make(by_optimizer.get("bo"), by_optimizer.get("random"))
    summary["average_improvement"] = _average_improvement(summary["classification"])
    summary["collateral"] = {}
    for (kind, task), by_optimizer in sorted(main.items()):
        if kind == "classification" and "bo" in by_optimizer and by_optimizer["bo"]["cross"]:
            summary["collateral"][task] = {
                other: _accuracies(results, other) for other, results in by_optimizer["bo"]["cross"].items()
            }
    studied: dict[str, dict[str, list[dict]]] = {}  # setting -> task -> runs that change only it
    others = []
    for run in runs:
        key = _study(run)
        if key is not None:
            studied.setdefault(key, {}).setdefault(run["identity"]["dataset"], []).append(run)
        elif not _is_main(run):
            others.append({"path": run["path"], "kind": run["kind"]})
    summary["studies"] = {}
    for key in STUDIED:  # in this order in results/README.md
        for task, chosen in sorted(studied.get(key, {}).items()):
            reference = main.get(("classification", task), {}).get("bo")  # the main table's own setting
            if reference is not None:
                chosen = [*chosen, reference]
            rows = sorted((_study_row(r, key) for r in chosen), key=lambda row: row[key])
            summary["studies"].setdefault(key, {})[task] = rows
    summary["other_runs"] = others
    return summary


def _average_improvement(rows: dict) -> dict:
    """Mean over tasks of TaRot minus unedited accuracy, in percentage points and relative (where the
    unedited accuracy is above zero); the paper does not spell out which of the two its averages are."""
    result = {}
    for setting in ("zero_shot", "few_shot"):
        pairs = [(row[setting]["base"], row[setting]["tarot"]) for row in rows.values() if "tarot" in row[setting]]
        relative = [(t - b) / b * 100 for b, t in pairs if b > 0]
        result[setting] = {
            "tasks": len(pairs),
            "points": round(sum(t - b for b, t in pairs) / len(pairs) * 100, 2) if pairs else None,
            "relative_percent": round(sum(relative) / len(relative), 2) if relative else None,
            "relative_tasks": len(relative),
        }
    return result


def _fmt(value, ci=None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")


def table(summary: dict) -> str:
    lines = [
        "| task | n_test | setting | unedited | TaRot (BO) | random search | "
        "macro F1: unedited / TaRot / random | restricted: unedited / TaRot / random | "
        "one answer for all: accuracy / F1 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for task, row in summary["classification"].items():
        for setting in ("zero_shot", "few_shot"):
            entry, ci = row[setting], row[setting]["accuracy_ci95"]
            f1, restricted = (
                " / ".join(_fmt(entry[measure].get(k)) for k in ("base", "tarot", "random"))
                for measure in ("f1", "restricted_accuracy")
            )
            lines.append(
                f"| {task} | {row['n_test']} | {setting.replace('_', '-')} | "
                f"{_fmt(entry['base'], ci['base'])} | {_fmt(entry.get('tarot'), ci.get('tarot'))} | "
                f"{_fmt(entry.get('random'), ci.get('random'))} | {f1} | {restricted} | "
                f"{_one_answer_cell(row['one_answer'])} |"
            )
    lines += [
        "",
        "| task | n_test | scorer | model | reward [95% CI] | perplexity | distinct-2 |",
        "|---|---|---|---|---|---|---|",
    ]
    for task, row in summary["generation"].items():
        for label, name in (("base", "unedited"), ("tarot", "TaRot (BO)"), ("random", "random search")):
            if label in row:
                r = row[label]
                lines.append(
                    f"| {task} | {row['n_test']} | {row['scorer']} | {name} | "
                    f"{_fmt(r['reward'], r['reward_ci95'])} | {r['perplexity']:.2f} | {r['distinct_2']:.3f} |"
                )
    averages = summary["average_improvement"]
    if any(averages[s]["tasks"] for s in averages):
        lines += [
            "",
            "Average change, TaRot minus unedited, over the classification tasks above: "
            + "; ".join(
                f"{s.replace('_', '-')} {a['points']:+.2f} points ({a['relative_percent']:+.2f}% relative, mean over "
                f"the {a['relative_tasks']} tasks whose unedited accuracy is above 0)"
                for s, a in averages.items()
                if a["tasks"]
            ),
        ]
    return "\n".join(lines)


def _one_answer_cell(one: dict | None) -> str:
    return "-" if one is None else f"{one['answer']}: {_fmt(one['accuracy'])} / {_fmt(one['f1'])}"


def _accuracy_cells(row: dict) -> str:
    """Zero- and few-shot accuracy (with intervals), few-shot macro F1, and the one-answer baseline."""
    cells = []
    for setting in ("zero_shot", "few_shot"):
        entry, ci = row[setting], row[setting]["accuracy_ci95"]
        cells.append(f"{_fmt(entry['base'], ci['base'])} -> {_fmt(entry['tarot'], ci['tarot'])}")
    f1 = row["few_shot"]["f1"]
    cells += [f"{_fmt(f1['base'])} -> {_fmt(f1['tarot'])}", _one_answer_cell(row["one_answer"])]
    return " | ".join(cells)


_ACCURACY_HEADER = (
    "zero-shot: unedited -> TaRot | few-shot: unedited -> TaRot | few-shot macro F1 | "
    "one answer for all: accuracy / F1 |"
)


def collateral_table(summary: dict) -> str:
    lines = [f"| angles searched on | evaluated on | n_test | {_ACCURACY_HEADER}", "|---|---|---|---|---|---|---|"]
    for trained_on, by_task in summary["collateral"].items():
        own = summary["classification"].get(trained_on)
        if own is not None and "tarot" in own["zero_shot"]:
            lines.append(
                f"| {trained_on} | {trained_on} (its own test set) | {own['n_test']} | {_accuracy_cells(own)} |"
            )
        for other, row in by_task.items():
            lines.append(f"| {trained_on} | {other} | {row['n_test']} | {_accuracy_cells(row)} |")
    return "\n".join(lines)


def study_table(summary: dict, key: str) -> str:
    lines = [
        f"| task | {key} | angles | n_test | training objective: unedited -> best | search s | {_ACCURACY_HEADER}",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for task, rows in summary["studies"].get(key, {}).items():
        for row in rows:
            lines.append(
                f"| {task} | {row[key]} | {row['num_angles']} | {row['n_test']} | "
                f"{row['unedited_train_objective']:.3f} -> {row['best_train_objective']:.3f} | "
                f"{row['search_seconds']:.0f} | {_accuracy_cells(row)} |"
            )
    return "\n".join(lines)


def fill(text: str, name: str, content: str) -> str:
    """Put ``content`` between ``<!-- name -->`` and ``<!-- /name -->`` (appended at the end if absent);
    the prose around the markers is hand-written and kept."""
    start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    if start not in text:
        return text.rstrip("\n") + f"\n\n{start}\n{content}\n{end}\n"
    head, rest = text.split(start, 1)
    return head + f"{start}\n{content}\n{end}" + rest.split(end, 1)[1]


def plot(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks: dict[str, dict[str, list[float]]] = {}
    for run in runs:
        if _is_main(run):
            values = [row["value"] for row in run["history"]]
            best = [max(values[: i + 1]) for i in range(len(values))]
            tasks.setdefault(run["identity"]["dataset"], {})[run["identity"]["optimizer"]] = best
    if not tasks:
        return
    columns = min(3, len(tasks))
    rows = (len(tasks) + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows), squeeze=False)
    for ax, (task, curves) in zip(axes.flat, sorted(tasks.items()), strict=False):
        for optimizer, best in sorted(curves.items()):
            ax.plot(range(1, len(best) + 1), best, label={"bo": "TaRot BO", "random": "random search"}[optimizer])
        ax.set_title(task)
        ax.set_xlabel("evaluations")
        ax.set_ylabel("best training objective")
        ax.legend()
    for ax in list(axes.flat)[len(tasks) :]:
        ax.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--collect", metavar="RUNS_DIR", help="first copy finished runs from this folder")
    args = parser.parse_args()
    if args.collect:
        print(f"collected {collect(Path(args.collect))} finished runs into {RESULTS}")
    runs = load_runs()
    summary = summarise(runs)
    RESULTS.mkdir(exist_ok=True)
    atomic_write(
        RESULTS / "summary.json", lambda tmp: tmp.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    )
    plot(runs, RESULTS / "search_curves.png")
    sections = {"table": table(summary)}
    if summary["collateral"]:
        sections["collateral"] = collateral_table(summary)
    for key in summary["studies"]:
        sections[f"study:{key}"] = study_table(summary, key)
    readme = RESULTS / "README.md"
    text = readme.read_text() if readme.exists() else "# Results\n"
    for name, content in sections.items():
        text = fill(text, name, content)
    atomic_write(readme, lambda tmp: tmp.write_text(text))
    print("\n\n".join(sections.values()))


if __name__ == "__main__":
    main()
