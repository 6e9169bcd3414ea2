"""The Markdown tables of results/README.md, from summary.json's content (tarot/report_summary.py), and
their place between the README's markers."""

from __future__ import annotations

from typing import Any


def _fmt(value, ci=None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")


def _one_answer_cell(one: dict | None) -> str:
    return "-" if one is None else f"{one['answer']}: {_fmt(one['accuracy'])} / {_fmt(one['f1'])}"


def main_table(summary: dict[str, Any]) -> str:
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


def _accuracy_cells(row: dict[str, Any]) -> str:
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


def collateral_table(summary: dict[str, Any]) -> str:
    lines = [f"| angles searched on | evaluated on | n_test | {_ACCURACY_HEADER}", "|---|---|---|---|---|---|---|"]
    for trained_on, by_task in summary["collateral"].items():
        own = summary["classification"].get(trained_on)
        if own is not None and "tarot" in own["zero_shot"]:
            lines.append(
                f"| {trained_on} | {trained_on} (its own test set) | {own['n_test']} | {_accuracy_cells(own)} |"
            )
        for other, row in by_task.items():
            lines.append(f"| {trained_on} | {other} | {row['n_test']} | {_accuracy_cells(row)} |")
    for method, tasks in summary.get("variant_collateral", {}).items():
        for trained_on, by_task in tasks.items():
            for other, row in sorted(by_task.items(), key=lambda item: item[0] != "own"):  # its own first
                target = f"{trained_on} (its own test set)" if other == "own" else other
                lines.append(f"| {trained_on}, {method} | {target} | {row['n_test']} | {_accuracy_cells(row)} |")
    return "\n".join(lines)


def study_table(summary: dict[str, Any], key: str) -> str:
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


def costs_table(summary: dict[str, Any]) -> str:
    """Each main-table line's search: its seconds and its seconds per evaluation (suggestion + objective)."""
    lines = [
        "| task | search s: BO / random | s per evaluation: BO / random |",
        "|---|---|---|",
    ]
    for kind in ("classification", "generation"):
        for task, row in summary[kind].items():
            seconds, each = row["search_seconds"], row["seconds_per_evaluation"]
            lines.append(
                f"| {task} | {' / '.join(_seconds(seconds.get(k)) for k in ('tarot', 'random'))} | "
                f"{' / '.join(_fmt_short(each.get(k)) for k in ('tarot', 'random'))} |"
            )
    return "\n".join(lines)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _fmt_short(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def sections(summary: dict[str, Any]) -> dict[str, str]:
    """The README's generated sections, by marker name, in order."""
    found = {"table": main_table(summary), "costs": costs_table(summary)}
    if summary.get("baselines"):
        from tarot.report_baselines import table, variants_table

        found["baselines"] = table(summary)
        if any("[" in method for methods in summary["baselines"].values() for method in methods):
            found["variants"] = variants_table(summary)
    if summary.get("second_model"):
        from tarot.report_baselines import table, variants_table

        second = summary["second_model"]
        found["second_model"] = table(second)
        if any("[" in method for methods in second["baselines"].values() for method in methods):
            found["second_model"] += "\n\n" + variants_table(second)
    if summary["collateral"] or summary.get("variant_collateral"):
        found["collateral"] = collateral_table(summary)
    for key in summary["studies"]:
        found[f"study:{key}"] = study_table(summary, key)
    return found


def fill(text: str, name: str, content: str) -> str:
    """Put ``content`` between ``<!-- name -->`` and ``<!-- /name -->`` (appended at the end if absent);
    the prose around the markers is hand-written and kept."""
    start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    if start not in text:
        return text.rstrip("\n") + f"\n\n{start}\n{content}\n{end}\n"
    head, rest = text.split(start, 1)
    return head + f"{start}\n{content}\n{end}" + rest.split(end, 1)[1]
