"""Build the results table from the committed run files.

    python report.py                  # results/summary.json, results/README.md (table), results/*.png
    python report.py --collect runs   # first copy finished runs' small files from runs/ into results/

Reads only ``results/**/{config.json,history.jsonl,results.json}``, so the table can be rebuilt, byte for
byte, from what is committed. The main table takes the runs with train.sh's settings; every other finished
run (other sizes, methods, seeds) is listed under "other runs".
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from tarot.runs import atomic_write, read_jsonl

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
KEPT_FILES = ("config.json", "history.jsonl", "results.json", "samples.jsonl")
# train.sh's settings: the runs that make the main table
MAIN = {"model": "smollm2", "dtype": "float32", "layer": [0, 15], "angle_0": -0.25, "angle_1": 0.25,
        "rotationMethod": "rotary", "moduleType": "reasoning", "trainingDataSize": 20, "seed": 0,
        "initialPoints": 4, "instruction": None}
MAIN_EVALUATIONS = 124  # 4 initial points + 120 iterations


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
        for name in KEPT_FILES:
            if (run / name).exists():
                atomic_write(target / name, lambda tmp, name=name: shutil.copyfile(run / name, tmp))
        copied += 1
    return copied


def _read(run: Path) -> dict:
    config = json.loads((run / "config.json").read_text())
    history = read_jsonl(run / "history.jsonl")
    return {"path": run.relative_to(RESULTS).as_posix(), "identity": config["identity"],
            "kind": "generation" if "scorer" in config["identity"] else "classification",
            "history": history, "results": json.loads((run / "results.json").read_text()),
            "seconds": round(sum(row["seconds"] for row in history), 1)}


def load_runs() -> list[dict]:
    return [_read(path.parent) for path in sorted(RESULTS.rglob("results.json"))]


def _is_main(run: dict) -> bool:
    """A run of train.sh's table: its settings, the full budget, and an evaluation of that full search."""
    identity = run["identity"]
    return all(identity.get(key) == value for key, value in MAIN.items()) and \
        len(run["history"]) == MAIN_EVALUATIONS == run["results"].get("evaluations", MAIN_EVALUATIONS)


def _classification_row(bo: dict | None, random: dict | None) -> dict:
    any_run = bo or random
    row = {"n_test": any_run["results"]["n_test"]}
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
    row = {"n_test": any_run["results"]["n_test"], "scorer": any_run["results"]["scorer"],
           "base": any_run["results"]["base"]}
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
                sys.exit(f"report.py: two main-table runs for {run['identity']['dataset']} "
                         f"{run['identity']['optimizer']}: {slot[run['identity']['optimizer']]['path']} and "
                         f"{run['path']}; remove one from results/")
            slot[run["identity"]["optimizer"]] = run
    summary = {"classification": {}, "generation": {}}
    for (kind, task), by_optimizer in sorted(main.items()):
        make = _classification_row if kind == "classification" else _generation_row
        summary[kind][task] = make(by_optimizer.get("bo"), by_optimizer.get("random"))
    summary["average_improvement"] = _average_improvement(summary["classification"])
    summary["other_runs"] = [{"path": r["path"], "kind": r["kind"]} for r in runs if not _is_main(r)]
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
            "relative_tasks": len(relative)}
    return result


def _fmt(value, ci=None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")


def table(summary: dict) -> str:
    lines = ["| task | n_test | setting | unedited | TaRot (BO) | random search | restricted: unedited / TaRot / random |",
             "|---|---|---|---|---|---|---|"]
    for task, row in summary["classification"].items():
        for setting in ("zero_shot", "few_shot"):
            entry, ci = row[setting], row[setting]["accuracy_ci95"]
            restricted = " / ".join(_fmt(entry["restricted_accuracy"].get(k)) for k in ("base", "tarot", "random"))
            lines.append(f"| {task} | {row['n_test']} | {setting.replace('_', '-')} | "
                         f"{_fmt(entry['base'], ci['base'])} | {_fmt(entry.get('tarot'), ci.get('tarot'))} | "
                         f"{_fmt(entry.get('random'), ci.get('random'))} | {restricted} |")
    lines += ["", "| task | n_test | scorer | model | reward [95% CI] | perplexity | distinct-2 |",
              "|---|---|---|---|---|---|---|"]
    for task, row in summary["generation"].items():
        for label, name in (("base", "unedited"), ("tarot", "TaRot (BO)"), ("random", "random search")):
            if label in row:
                r = row[label]
                lines.append(f"| {task} | {row['n_test']} | {row['scorer']} | {name} | "
                             f"{_fmt(r['reward'], r['reward_ci95'])} | {r['perplexity']:.2f} | {r['distinct_2']:.3f} |")
    return "\n".join(lines)


def plot(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks: dict[str, dict[str, list[float]]] = {}
    for run in runs:
        if _is_main(run):
            values = [row["value"] for row in run["history"]]
            best = [max(values[:i + 1]) for i in range(len(values))]
            tasks.setdefault(run["identity"]["dataset"], {})[run["identity"]["optimizer"]] = best
    if not tasks:
        return
    columns = min(3, len(tasks))
    rows = (len(tasks) + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows), squeeze=False)
    for ax, (task, curves) in zip(axes.flat, sorted(tasks.items())):
        for optimizer, best in sorted(curves.items()):
            ax.plot(range(1, len(best) + 1), best, label={"bo": "TaRot BO", "random": "random search"}[optimizer])
        ax.set_title(task)
        ax.set_xlabel("evaluations")
        ax.set_ylabel("best training objective")
        ax.legend()
    for ax in list(axes.flat)[len(tasks):]:
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
    atomic_write(RESULTS / "summary.json",
                 lambda tmp: tmp.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n"))
    plot(runs, RESULTS / "search_curves.png")
    section = table(summary)
    readme = RESULTS / "README.md"
    text = readme.read_text() if readme.exists() else "# Results\n\n<!-- table -->\n<!-- /table -->\n"
    if "<!-- table -->" in text:  # the table between the markers is generated; the prose around it is not
        head, rest = text.split("<!-- table -->", 1)
        text = head + "<!-- table -->\n" + section + "\n<!-- /table -->" + rest.split("<!-- /table -->", 1)[1]
    atomic_write(readme, lambda tmp: tmp.write_text(text))
    print(section)


if __name__ == "__main__":
    main()
