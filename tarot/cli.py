"""Command-line flags shared by every script (the paper's names), and one-line errors with exit code 2.

Importable without torch: each script parses and checks its flags here (:func:`run_main` with one of the
``*_flags`` functions), so ``--help`` and a bad flag answer at once; only then is the module that does the
work (and torch) imported.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tarot import choices
from tarot.data import SHOT_COUNTS, XSUM_INSTRUCTION, check_source, default_instruction, task_name
from tarot.errors import UsageError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage block
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser(
    description: str, *, metrics: tuple[str, ...], default_metric: str, default_test_size: int
) -> argparse.ArgumentParser:
    parser = _Parser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    model = parser.add_argument_group("model")
    model.add_argument(
        "--model",
        default=choices.DEFAULT_MODEL,
        help="smollm2 (embedded, offline), gemma3-270m (embedded, a base model), qwen_2, phi-3, llama-3-8b, "
        "mixtral, a hub id, a local folder or a .gguf file",
    )
    model.add_argument("--dtype", default="float32", choices=choices.DTYPE_NAMES)
    model.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    model.add_argument("--batchSize", type=int, default=32, help="prompts per forward pass")

    task = parser.add_argument_group("task")
    task.add_argument("--dataset", required=True, help="task name or a .jsonl file")
    task.add_argument("--instruction", default=None, help="system instruction (default: the task's own)")
    task.add_argument(
        "--fewShotCategory",
        default="mix",
        choices=tuple(SHOT_COUNTS),
        help="demonstrations per training prompt: zero, mix (0/2/4/6) or sixShot",
    )
    task.add_argument("--trainingDataSize", type=int, default=20)
    task.add_argument("--testingDataSize", type=int, default=default_test_size)

    edit = parser.add_argument_group("rotation")
    edit.add_argument(
        "--layer", type=int, nargs=2, default=(0, 15), metavar=("START", "END"), help="rotate layers START .. END-1"
    )
    edit.add_argument("--angle_0", default="neg 1/4", help="lower angle bound, a fraction of pi")
    edit.add_argument("--angle_1", default="1/4", help="upper angle bound, a fraction of pi")
    edit.add_argument(
        "--moduleType",
        default="reasoning",
        choices=choices.MODULES,
        help="reasoning: each attention head's output; mlp: the MLP output",
    )
    edit.add_argument(
        "--rotationMethod",
        default="rotary",
        choices=choices.METHODS,
        help="rotary (d/2 angles per head), givens (d-1), or scale: diag(1 + v), v within the same bounds times pi",
    )

    search = parser.add_argument_group("search")
    search.add_argument("--metric", default=default_metric, choices=metrics, help="training objective")
    search.add_argument(
        "--optimizer",
        default="bo",
        choices=choices.OPTIMIZER_KINDS,
        help="bo: Bayesian optimisation; random: random search, the control",
    )
    search.add_argument("--iterations", type=int, default=120, help="evaluations after the initial points")
    search.add_argument(
        "--initialPoints",
        type=int,
        default=4,
        help="first evaluations: the zero rotation (the unedited model), then random points",
    )
    search.add_argument("--seed", type=int, default=0)
    search.add_argument(
        "--angleSharing",
        default="none",
        choices=choices.SHARING,
        help="none: one angle set per head and layer; layer: one per layer, shared by its heads; all: one set "
        "shared by every layer and head (SmolLM2, rotary, layers 0-15: 4,320 / 480 / 32 angles)",
    )

    output = parser.add_argument_group("output")
    output.add_argument("--outputDir", default="runs", help="run directories go under this folder")
    return parser


def parse(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """Parse and check the values argparse cannot: angles, sizes, counts, the device's name."""
    args = parser.parse_args(argv)
    try:
        args.angle_bounds = (choices.parse_angle(args.angle_0), choices.parse_angle(args.angle_1))
    except ValueError as error:
        raise UsageError(f"--angle_0/--angle_1: {error}") from None
    if args.angle_bounds[0] >= args.angle_bounds[1]:
        raise UsageError(f"--angle_0 must be below --angle_1, got {args.angle_0!r} >= {args.angle_1!r}")
    for flag, minimum in (
        ("trainingDataSize", 1),
        ("testingDataSize", 1),
        ("iterations", 0),
        ("initialPoints", 1),
        ("batchSize", 1),
        ("seed", 0),
        ("maxSteps", 1),  # baselines.py only
    ):
        if getattr(args, flag, minimum) < minimum:
            raise UsageError(f"--{flag} must be at least {minimum}, got {getattr(args, flag)}")
    if args.layer[0] < 0 or args.layer[0] >= args.layer[1]:
        raise UsageError(f"--layer: need 0 <= START < END, got {args.layer[0]} {args.layer[1]}")
    select_on = getattr(args, "selectOn", None)
    if select_on is not None:
        match = re.fullmatch(r"dev:(\d+)", select_on)
        if not match or int(match[1]) < 1 or int(match[1]) >= args.trainingDataSize:
            raise UsageError(
                f"--selectOn: {select_on!r} is not dev:K with 1 <= K < --trainingDataSize ({args.trainingDataSize})"
            )
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", args.device):  # whether that CUDA device exists: at load time
        raise UsageError(f"--device: unknown {args.device!r}; use auto, cpu, cuda or cuda:N")
    return args


def check_output_dir(output_dir: str) -> None:
    """--outputDir must be a folder, or a path where one can be made: not a file, nor inside one."""
    path = Path(output_dir)
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is None:
        return
    if not existing.is_dir():
        where = "" if existing == path else f" (it would be inside {existing})"
        raise UsageError(f"--outputDir: {existing} is a file, not a folder{where}; give a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"--outputDir: cannot write in {existing} (no permission); give another folder")


def check_export_path(path: str | Path) -> Path:
    """An export may only create a new folder or replace an earlier export (one with tarot_edit.json):
    never overwrite a folder of the user's."""
    path = Path(path).expanduser().resolve()
    if path == Path.cwd() or path in Path.cwd().parents:
        raise UsageError(f"--exportModel: {path} is the working directory or one of its parents")
    if path.exists() and (not path.is_dir() or (any(path.iterdir()) and not (path / "tarot_edit.json").exists())):
        raise UsageError(f"--exportModel: {path} exists and is not an earlier TaRot export; give a new folder")
    return path


# ---- each script's flags ----------------------------------------------------------------------


def classification_parser(
    description: str, *, evaluation: bool = False, baseline: bool = False
) -> argparse.ArgumentParser:
    parser = build_parser(
        description, metrics=choices.CLASSIFICATION_METRICS, default_metric="prob", default_test_size=200
    )
    search = next(group for group in parser._action_groups if group.title == "search")
    search.add_argument(
        "--balancedTraining",
        action="store_true",
        help="draw the training examples stratified by label, equal counts where the data allow (the test "
        "questions stay those of the unbalanced split)",
    )
    search.add_argument(
        "--selectOn",
        default=None,
        metavar="dev:K",
        help="hold K training examples out of the objective and choose the final point among the 10 best "
        "training points by the objective on those K (default: the best training point)",
    )
    if baseline:
        group = parser.add_argument_group("baseline")
        group.add_argument(
            "--maxSteps",
            type=int,
            default=40,
            metavar="N",
            help="lora, road: the most training steps the cross-validation over the training prompts considers "
            "(it checks every 5 steps, and N): part of the run's recipe (default 40)",
        )
        group.add_argument(
            "--method",
            required=True,
            choices=choices.BASELINE_METHODS,
            help="contextual: contextual calibration (Zhao et al. 2021) with content-free inputs; batch: batch "
            "calibration (Zhou et al. 2024) estimated on the training inputs; lora, road: peft adapters trained "
            "on the training prompts in the --layer range (--moduleType reasoning: the value projections; mlp: "
            "the MLP output projections)",
        )
    if evaluation:
        group = parser.add_argument_group("evaluation")
        group.add_argument(
            "--exportModel",
            default=None,
            metavar="DIR",
            help="also save the edited model as a standard Hugging Face checkpoint in DIR",
        )
        group.add_argument(
            "--evalDataset",
            default=None,
            metavar="TASK",
            help="evaluate the angles searched on --dataset on this other task's test set instead (the "
            "test examples that task's own run with these flags uses), to measure collateral "
            "damage; writes results_on_<task>.json",
        )
    return parser


def classification_flags(
    argv: Sequence[str] | None,
    *,
    description: str,
    evaluation: bool = False,
    datasets: tuple[str, ...] | None = None,
    baseline: bool = False,
) -> argparse.Namespace:
    """Parse and check a classification script's flags, reading no data; ``datasets`` restricts --dataset.
    An --instruction equal to the task's own becomes None, so a run's identity does not depend on whether
    the default was typed out."""
    args = parse(classification_parser(description, evaluation=evaluation, baseline=baseline), argv)
    if datasets is not None and args.dataset not in datasets:
        raise UsageError(f"--dataset: {args.dataset!r} is not one of {', '.join(datasets)}")
    check_source(args.dataset)
    if args.instruction == default_instruction(args.dataset):
        args.instruction = None
    if evaluation and args.evalDataset is not None:
        check_source(args.evalDataset, "--evalDataset")
        if task_name(args.evalDataset) == task_name(args.dataset):
            raise UsageError(
                f"--evalDataset: {args.evalDataset!r} is the task the angles were searched on; "
                f"leave --evalDataset out to evaluate on its own test set"
            )
    check_output_dir(args.outputDir)
    if evaluation and args.exportModel:
        check_export_path(args.exportModel)
    return args


def generation_parser(description: str) -> argparse.ArgumentParser:
    parser = build_parser(description, metrics=("reward",), default_metric="reward", default_test_size=100)
    parser.set_defaults(fewShotCategory="zero")
    parser.add_argument_group("generation").add_argument(
        "--scorer",
        default=None,
        help="reward model; default: sentiment (imdb), toxicity (toxicity), rouge (xsum); "
        "hf:<model id>[:<label>] for a Hugging Face classifier (online)",
    )
    return parser


def generation_flags(argv: Sequence[str] | None, *, description: str) -> argparse.Namespace:
    """Parse and check a generation script's flags; fills in the task's default --scorer."""
    args = parse(generation_parser(description), argv)
    if args.fewShotCategory != "zero":
        raise UsageError("--fewShotCategory: generation tasks are zero-shot; use zero")
    if args.dataset not in choices.DEFAULT_SCORERS:
        raise UsageError(f"--dataset: unknown {args.dataset!r}; choose one of {', '.join(choices.DEFAULT_SCORERS)}")
    if args.dataset == "xsum" and args.instruction == XSUM_INSTRUCTION:
        args.instruction = None
    if args.instruction is not None and args.dataset != "xsum":
        raise UsageError("--instruction: only xsum prompts have an instruction; imdb and toxicity continue raw text")
    args.scorer = args.scorer or choices.DEFAULT_SCORERS[args.dataset]
    if not (args.scorer in choices.SCORER_NAMES or args.scorer.startswith("hf:")):
        raise UsageError(f"--scorer: unknown {args.scorer!r}; choose one of {', '.join(choices.SCORER_NAMES)}")
    if (args.scorer in choices.REFERENCE_SCORERS) != (args.dataset == "xsum"):  # only xsum has references
        raise UsageError(
            f"--scorer: {args.scorer!r} does not fit {args.dataset}: "
            + (
                "xsum needs a scorer that compares with the reference (rouge)"
                if args.dataset == "xsum"
                else "it needs reference texts, which only xsum has; use a classifier such as sentiment or toxicity"
            )
        )
    check_output_dir(args.outputDir)
    return args


def train_flags(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """trainRotation_NN_kernel.py"""
    return classification_flags(argv, description="TaRot: search rotation angles on a classification task.")


def evaluate_flags(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """evaluateRotation.py"""
    return classification_flags(
        argv,
        description="TaRot: evaluate the best rotation of a finished search on held-out data.",
        evaluation=True,
    )


def topic_train_flags(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """train_topic.py"""
    return classification_flags(
        argv, description="TaRot: search rotation angles on a topic task.", datasets=choices.TOPIC_DATASETS
    )


def topic_evaluate_flags(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """test_topic.py"""
    return classification_flags(
        argv,
        description="TaRot: evaluate a topic task by the topic named in the model's generated answer, "
        "unedited vs edited.",
        evaluation=True,
        datasets=choices.TOPIC_DATASETS,
    )


def baseline_flags(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """baselines.py: a TaRot line's flags (the same split, training prompts and test questions) + --method."""
    return classification_flags(
        argv, description="A baseline TaRot is compared with, on the same questions as TaRot's line.", baseline=True
    )


def generation_train_flags(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """train_summarization.py"""
    return generation_flags(argv, description="TaRot: search rotation angles that raise a reward of generated text.")


def generation_evaluate_flags(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """test_summarization.py"""
    return generation_flags(
        argv, description="TaRot: compare the edited and unedited model's generations on held-out prompts."
    )


# ---- run folders ------------------------------------------------------------------------------


def radians(args) -> tuple[float, float]:
    return (args.angle_bounds[0] * math.pi, args.angle_bounds[1] * math.pi)


def angle_shape(model, args) -> tuple[int, ...]:
    """Shape of the angles for these flags on this model; a layer range the model lacks is a flag error."""
    import rotation  # torch: only once a model is loaded

    try:
        return rotation.param_shape(
            model, layers=args.layer, module=args.moduleType, method=args.rotationMethod, sharing=args.angleSharing
        )
    except ValueError as error:
        raise UsageError(f"--layer/--moduleType/--rotationMethod: {error}") from None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "model"


def variants(args) -> dict[str, Any]:
    """The knobs of issue 12 that differ from their defaults: part of a run's identity and folder name only
    then, so that the runs made before they existed keep theirs."""
    found: dict[str, Any] = {}
    if getattr(args, "angleSharing", "none") != "none":
        found["angleSharing"] = args.angleSharing
    if getattr(args, "balancedTraining", False):
        found["balancedTraining"] = True
    if getattr(args, "selectOn", None) is not None:
        found["selectOn"] = args.selectOn
    return found


def variant_suffix(args) -> str:
    """``_share-layer``, ``_balanced``, ``_dev5``: the folder name's part for :func:`variants`."""
    found = variants(args)
    parts = [f"share-{found['angleSharing']}"] if "angleSharing" in found else []
    parts += ["balanced"] if "balancedTraining" in found else []
    parts += [found["selectOn"].replace(":", "")] if "selectOn" in found else []
    return "".join(f"_{part}" for part in parts)


def run_path(args, task_name: str, kind: str) -> Path:
    """``outputDir/model/dataset/<kind>_layer_...``: one folder per flag combination, like the paper's files."""
    a0, a1 = radians(args)
    name = (
        f"{kind}_layer_{args.layer[0]}_{args.layer[1]}_angle_{a0:.4f}_{a1:.4f}_{args.moduleType}_"
        f"{args.metric}_{args.fewShotCategory}_{args.rotationMethod}_n{args.trainingDataSize}_"
        f"{args.optimizer}_init{args.initialPoints}_seed{args.seed}" + variant_suffix(args)
    )
    return (
        Path(args.outputDir)
        / _slug(Path(args.model).stem if args.model.endswith(".gguf") else args.model)
        / _slug(task_name)
        / name
    )


def identity(args, task) -> dict:
    """The flags that define a search; a resumed run or an evaluation must match them. The data is
    identified by the task's name and the sha256 of its file, not by a path that may move."""
    return {
        "model": args.model,
        "dtype": args.dtype,
        "dataset": task.name,
        "data_sha256": task.fingerprint,
        "instruction": args.instruction,
        "layer": list(args.layer),
        "angle_0": args.angle_bounds[0],
        "angle_1": args.angle_bounds[1],
        "moduleType": args.moduleType,
        "rotationMethod": args.rotationMethod,
        "metric": args.metric,
        "fewShotCategory": args.fewShotCategory,
        "trainingDataSize": args.trainingDataSize,
        "optimizer": args.optimizer,
        "initialPoints": args.initialPoints,
        "seed": args.seed,
        **variants(args),
    }


def run_main(
    main: Callable[[], object] | str,
    function: str = "",
    *,
    flags: Callable[[], object] | None = None,
    resumable: bool = False,
) -> None:
    """Run a script's main; bad input becomes one line on stderr and exit code 2, Ctrl-C exit code 130.

    ``main`` is a callable, or the name of a module whose ``function()`` reads the command line: then
    ``flags()`` parses and checks the flags first (``--help`` and flag errors answer there), and only then is
    the module (torch, transformers: seconds) imported, inside the same handlers.
    """
    try:
        if isinstance(main, str):
            if flags is not None:
                flags()
            getattr(importlib.import_module(main), function)()
        else:
            main()
    except UsageError as error:
        print(f"{Path(sys.argv[0]).name}: error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(
            f"{Path(sys.argv[0]).name}: interrupted; "
            + (
                "the run directory holds every finished evaluation and resumes when the same command is run again"
                if resumable
                else "files are written whole or not at all: those reported as written are "
                "complete, the others were not written"
            ),
            file=sys.stderr,
        )
        sys.exit(130)
