"""Which runs the report shows: finished runs copied into results/ (collect), read back (load_runs), and
sorted (select) into train.sh's main table (its settings and budget) and its studies (one setting changed).

The report reads only what results/ keeps, so the tables can be rebuilt byte for byte from the committed
files; best_angles.safetensors and split.json are kept too, so that the held-out evaluation can be redone
from results/ alone (evaluateRotation.py <the line's flags> --outputDir results) without the search.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from tarot.choices import BASELINE_RUN_KIND, DEFAULT_SCORERS
from tarot.errors import UsageError
from tarot.results import ClassificationResults, GenerationResults, Results, read_classification, read_generation
from tarot.runs import CROSS_RESULTS_PREFIX, atomic_write, read_jsonl

# Not points.safetensors (every evaluated point, 4 MB) nor optimizer_state.json: resuming a search needs
# the run folder in runs/, evaluating its best point does not.
KEPT_FILES = (
    "config.json",
    "split.json",
    "history.jsonl",
    "best_angles.safetensors",
    "results.json",
    "samples.jsonl",
    "selection.json",
    f"{CROSS_RESULTS_PREFIX}*.json",
)


# The knobs aimed at answer collapse, off: absent from the identity of a run made without them
# (tarot/cli.py, variants), so a run with any of them is never in the main table or a study.
KNOBS_OFF = {"angleSharing": None, "balancedTraining": None, "selectOn": None}


@dataclass(frozen=True)
class Recipe:
    """The settings of train.sh's lines: a run with all of them and the full budget is in the main table."""

    settings: dict[str, Any]  # identity values shared by every kind of run
    by_kind: dict[str, dict[str, Any]]  # and those of each kind (classification, generation)
    evaluations: int  # initial points + iterations
    studied: tuple[str, ...]  # settings that train.sh's studies change one at a time, in the README's order


TRAIN_SH = Recipe(
    settings={
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
    },
    by_kind={
        "classification": {"metric": "prob", "fewShotCategory": "mix"},
        "generation": {"metric": "reward", "fewShotCategory": "zero", "batchSize": 32},
    },
    evaluations=4 + 120,
    studied=("trainingDataSize", "rotationMethod"),
)


# The second embedded model's block (results/README.md, "A second model"): train.sh's recipe on Gemma 3 270M,
# whose first half of the layers is 0-9 (18 layers), at seed 0 (train.sh --list-gemma)
SECOND_MODEL = Recipe(
    settings=TRAIN_SH.settings | {"model": "gemma3-270m", "layer": [0, 9]},
    by_kind=TRAIN_SH.by_kind,
    evaluations=TRAIN_SH.evaluations,
    studied=(),
)


@dataclass(frozen=True)
class Run:
    """One finished run as results/ keeps it."""

    path: str  # relative to results/
    identity: dict[str, Any]
    kind: str  # "classification" (topics too) or "generation"
    history: list[dict[str, Any]]
    results: Results
    cross: dict[str, ClassificationResults]  # results_on_<task>.json, by task
    num_angles: int
    seconds: float  # spent searching

    @property
    def task(self) -> str:
        return self.identity["dataset"]

    @property
    def optimizer(self) -> str:
        return self.identity["optimizer"]

    @property
    def classification(self) -> ClassificationResults:
        if self.kind != "classification":
            raise TypeError(f"{self.path} is a {self.kind} run")
        return cast(ClassificationResults, self.results)

    @property
    def generation(self) -> GenerationResults:
        if self.kind != "generation":
            raise TypeError(f"{self.path} is a {self.kind} run")
        return cast(GenerationResults, self.results)


def collect(source: Path, results: Path) -> int:
    """Copy every finished run (one with results.json) from ``source`` into ``results``, same relative path."""
    if not source.is_dir():
        raise UsageError(f"--collect: {source} is not a folder")
    copied = 0
    for finished in sorted(source.rglob("results.json")):
        run = finished.parent
        relative = run.relative_to(source)
        if relative.parts and relative.parts[0] == "demo":
            continue
        target = results / relative
        target.mkdir(parents=True, exist_ok=True)
        for pattern in KEPT_FILES:
            for file in sorted(run.glob(pattern)):
                atomic_write(target / file.name, lambda tmp, file=file: shutil.copyfile(file, tmp))
        copied += 1
    return copied


def line_scripts() -> dict[str, tuple[Callable[[list[str]], Any], str]]:
    """train.sh's scripts: how each parses its flags, and the kind that names its run folders."""
    from tarot import baselines, classification, cli, generation, topic  # torch: only when asked

    return {
        "trainRotation_NN_kernel.py": (cli.train_flags, classification.RUN_KIND),
        "evaluateRotation.py": (cli.evaluate_flags, classification.RUN_KIND),
        "train_topic.py": (cli.topic_train_flags, topic.RUN_KIND),
        "test_topic.py": (cli.topic_evaluate_flags, topic.RUN_KIND),
        "train_summarization.py": (cli.generation_train_flags, generation.RUN_KIND),
        "test_summarization.py": (cli.generation_evaluate_flags, generation.RUN_KIND),
        "baselines.py": (cli.baseline_flags, baselines.RUN_KIND),
    }


def line_result(line: str, results: Path) -> Path:
    """The file a train.sh line writes last under ``results``: its run's results.json, or
    results_on_<task>.json for an ``--evalDataset`` line. The line is finished when that file exists. The
    line's first command (``python <script> FLAGS``) names the script and the flags that define the run."""
    from tarot import baselines, cli
    from tarot.data import task_name

    scripts = line_scripts()
    words = line.split(" && ")[0].split()
    script = Path(words[1]).name if len(words) > 1 else ""
    if script not in scripts:
        shown = line if len(line) <= 60 else line[:57] + "..."
        raise UsageError(
            f"--pending: '{shown}' is not a train.sh line (python SCRIPT FLAGS, SCRIPT one of {', '.join(scripts)})"
        )
    parse, kind = scripts[script]
    args = parse([*words[2:], "--outputDir", str(results)])  # the last --outputDir wins
    task = task_name(args.dataset)
    if script == "baselines.py":
        return baselines.run_path(args, task) / "results.json"
    evaluated_on = getattr(args, "evalDataset", None)
    name = "results.json" if evaluated_on is None else f"{CROSS_RESULTS_PREFIX}{task_name(evaluated_on)}.json"
    return cli.run_path(args, task, kind) / name


def pending(lines: list[str], results: Path) -> list[str]:
    """The train.sh lines (blank ones skipped) whose results are not in ``results`` yet: those still to run,
    or to resume (a search resumes from its run folder in runs/)."""
    return [line for line in lines if line.strip() and not line_result(line, results).exists()]


def _read(run: Path, results: Path) -> Run:
    config = json.loads((run / "config.json").read_text())
    history = read_jsonl(run / "history.jsonl")
    kind = "generation" if "scorer" in config["identity"] else "classification"
    read = read_generation if kind == "generation" else read_classification
    own: Results = read(run / "results.json")
    return Run(
        path=run.relative_to(results).as_posix(),
        identity=config["identity"],
        kind=kind,
        history=history,
        results=own,
        cross={
            path.stem.removeprefix(CROSS_RESULTS_PREFIX): read_classification(path)
            for path in sorted(run.glob(f"{CROSS_RESULTS_PREFIX}*.json"))
        },
        num_angles=config["num_angles"],
        seconds=round(sum(row["seconds"] for row in history), 1),
    )


def load_runs(results: Path) -> list[Run]:
    """TaRot's runs (searches and their evaluations); not the baselines' folders, which hold no search."""
    return [
        _read(path.parent, results)
        for path in sorted(results.rglob("results.json"))
        if not path.parent.name.startswith(f"{BASELINE_RUN_KIND}_")
    ]


def full_budget(run: Run, recipe: Recipe) -> bool:
    """The search ran the recipe's budget and the evaluation used that full search."""
    return len(run.history) == recipe.evaluations == run.results.get("evaluations", recipe.evaluations)


def main_settings(run: Run, recipe: Recipe) -> dict[str, Any]:
    """The recipe's settings for a run of this kind (and, for generation, its dataset's default scorer)."""
    settings = KNOBS_OFF | recipe.settings | recipe.by_kind[run.kind]
    if run.kind == "generation":
        settings["scorer"] = DEFAULT_SCORERS.get(run.task)
    return settings


def differing(run: Run, recipe: Recipe) -> list[str]:
    return [key for key, value in main_settings(run, recipe).items() if run.identity.get(key) != value]


def is_main(run: Run, recipe: Recipe) -> bool:
    """A run of the main table: the recipe's settings, the full budget, and an evaluation of that search."""
    return not differing(run, recipe) and full_budget(run, recipe)


def study(run: Run, recipe: Recipe) -> str | None:
    """The one setting of ``recipe.studied`` that this full-budget BO classification run changes, or None."""
    changed = differing(run, recipe)
    if (
        len(changed) == 1
        and changed[0] in recipe.studied
        and run.optimizer == "bo"
        and run.kind == "classification"
        and full_budget(run, recipe)
    ):
        return changed[0]
    return None


# identity keys a TaRot variant (issue 12's knobs) may change, besides the seed
KNOBS = ("metric", "angleSharing", "balancedTraining", "selectOn")


def method_name(run: Run, recipe: Recipe) -> str:
    """``tarot`` or ``random``, with the knobs that differ from the recipe's: ``tarot[choice_ce,balanced,layer]``."""
    identity = run.identity
    tags = [identity["metric"]] if identity["metric"] != recipe.by_kind["classification"]["metric"] else []
    tags += ["balanced"] if identity.get("balancedTraining") else []
    tags += [identity["angleSharing"]] if identity.get("angleSharing") else []
    tags += [identity["selectOn"]] if identity.get("selectOn") else []
    base = "random" if run.optimizer == "random" else "tarot"
    return f"{base}[{','.join(tags)}]" if tags else base


@dataclass
class Selection:
    main: dict[tuple[str, str], dict[str, Run]]  # (kind, task) -> optimizer -> the main table's run
    studies: dict[str, dict[str, list[Run]]]  # studied setting -> task -> the runs that change only it
    others: list[Run]  # neither


def select(runs: list[Run], recipe: Recipe) -> Selection:
    """Sort the runs; two main-table runs for one task and optimizer are an error."""
    selection = Selection({}, {}, [])
    for run in runs:
        if is_main(run, recipe):
            slot = selection.main.setdefault((run.kind, run.task), {})
            if run.optimizer in slot:
                raise UsageError(
                    f"two main-table runs for {run.task} {run.optimizer}: {slot[run.optimizer].path} and "
                    f"{run.path}; remove one from results/"
                )
            slot[run.optimizer] = run
    for run in runs:
        key = study(run, recipe)
        if key is not None:
            selection.studies.setdefault(key, {}).setdefault(run.task, []).append(run)
        elif not is_main(run, recipe):
            selection.others.append(run)
    return selection
