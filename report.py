"""Build the results tables from the committed run files.

    python report.py                  # results/summary.json, results/README.md (tables), results/*.png
    python report.py --collect runs   # first copy finished runs' small files from runs/ into results/
    ./train.sh --list-variants | python report.py --pending   # the lines whose results are not in yet

Reads only what is committed: ``results/**/{config.json,history.jsonl,results.json,results_on_*.json}``
(the baselines' folders, ``Baseline_*``, hold config.json and results.json),
and the task files in data/ for the labels of each test set (the "one answer for all" baseline), so the
tables can be rebuilt byte for byte. The main table takes the runs with train.sh's settings; the studies
take the runs that change one of its settings; summary.json lists any other run under "other_runs".
Collecting also keeps each run's best_angles.safetensors and split.json, so that its held-out evaluation can
be redone from results/ alone: ``evaluateRotation.py <its train.sh flags> --outputDir results``.

The work is in tarot/report_select.py (which runs), report_summary.py (summary.json), report_tables.py
(README tables), report_plots.py (the search curves) and report_baselines.py (TaRot vs the baselines over
seeds: summary.json's "baselines", its table and baselines.png).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from tarot.cli import run_main

if TYPE_CHECKING:
    from tarot.report_select import Recipe

RESULTS = Path(__file__).resolve().parent / "results"


def build(results: Path, recipe: Recipe | None = None, second: Recipe | None = None) -> dict[str, str]:
    """Rebuild summary.json, the README's tables and the figure in ``results``; return the tables.
    ``recipe``: the settings of the main table (train.sh's by default); ``second``: those of the second
    model's block (train.sh --list-gemma's by default)."""
    # imported here, so that --help answers before torch (which the run files' readers load) is imported
    from tarot import report_baselines
    from tarot.report_plots import search_curves
    from tarot.report_select import SECOND_MODEL, TRAIN_SH, load_runs, select
    from tarot.report_summary import summarise
    from tarot.report_tables import fill, sections
    from tarot.runs import atomic_write

    recipe, second = recipe or TRAIN_SH, second or SECOND_MODEL
    runs = load_runs(results)
    selection = select(runs, recipe)
    summary = summarise(selection, recipe)
    summary |= report_baselines.comparison(runs, results, recipe)
    block = report_baselines.comparison(runs, results, second)
    if block["baselines"]:  # the second embedded model's block, once any of its lines has run
        summary["second_model"] = {key: second.settings.get(key) for key in ("model", "layer")} | block
    results.mkdir(exist_ok=True)
    text = json.dumps(summary, indent=2, sort_keys=True) + "\n"
    atomic_write(results / "summary.json", lambda tmp: tmp.write_text(text))
    search_curves(selection, results / "search_curves.png")
    report_baselines.bars(summary, results / "baselines.png")
    tables = sections(summary)
    readme = results / "README.md"
    text = readme.read_text() if readme.exists() else "# Results\n"
    for name, content in tables.items():
        text = fill(text, name, content)
    atomic_write(readme, lambda tmp: tmp.write_text(text))
    return tables


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--collect", metavar="RUNS_DIR", help="first copy finished runs from this folder")
    action.add_argument(
        "--pending",
        action="store_true",
        help="read train.sh lines on stdin; print those whose results are not in results/ yet (to run or resume)",
    )
    args = parser.parse_args()
    if args.pending:
        from tarot.report_select import pending

        lines = sys.stdin.read().splitlines()
        todo = pending(lines, RESULTS)
        print("\n".join(todo), end="\n" if todo else "")
        print(f"{len(todo)} of {sum(bool(line.strip()) for line in lines)} lines pending", file=sys.stderr)
    elif args.collect:
        from tarot.report_select import collect

        copied = collect(Path(args.collect), RESULTS)
        build(RESULTS)
        print(f"collected {copied} finished runs into {RESULTS}; rebuilt summary.json, README.md, search_curves.png")
    else:
        print("\n\n".join(build(RESULTS).values()))


if __name__ == "__main__":
    run_main(main)
