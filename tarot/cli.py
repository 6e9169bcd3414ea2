"""Command-line flags shared by every script (the paper's names), and one-line errors with exit code 2."""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path

import rotation
from tarot.data import SHOT_COUNTS
from tarot.errors import UsageError
from tarot.models import DEFAULT_MODEL, DTYPES
from tarot.optimize import OPTIMIZER_KINDS


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
        default=DEFAULT_MODEL,
        help="smollm2 (embedded, offline), qwen_2, phi-3, llama-3-8b, mixtral, a hub id, a "
        "local folder or a .gguf file",
    )
    model.add_argument("--dtype", default="float32", choices=tuple(DTYPES))
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
        choices=rotation.MODULES,
        help="reasoning: each attention head's output; mlp: the MLP output",
    )
    edit.add_argument(
        "--rotationMethod",
        default="rotary",
        choices=rotation.METHODS,
        help="rotary (d/2 angles per head), givens (d-1), or scale: diag(1 + v), v within the same bounds times pi",
    )

    search = parser.add_argument_group("search")
    search.add_argument("--metric", default=default_metric, choices=metrics, help="training objective")
    search.add_argument(
        "--optimizer",
        default="bo",
        choices=OPTIMIZER_KINDS,
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

    output = parser.add_argument_group("output")
    output.add_argument("--outputDir", default="runs", help="run directories go under this folder")
    return parser


def parse(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """Parse and check the values argparse cannot: angles, sizes and counts."""
    args = parser.parse_args(argv)
    try:
        args.angle_bounds = (rotation.parse_angle(args.angle_0), rotation.parse_angle(args.angle_1))
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
    ):
        if getattr(args, flag) < minimum:
            raise UsageError(f"--{flag} must be at least {minimum}, got {getattr(args, flag)}")
    if args.layer[0] < 0 or args.layer[0] >= args.layer[1]:
        raise UsageError(f"--layer: need 0 <= START < END, got {args.layer[0]} {args.layer[1]}")
    return args


def radians(args) -> tuple[float, float]:
    return (args.angle_bounds[0] * math.pi, args.angle_bounds[1] * math.pi)


def angle_shape(model, args) -> tuple[int, ...]:
    """Shape of the angles for these flags on this model; a layer range the model lacks is a flag error."""
    try:
        return rotation.param_shape(model, layers=args.layer, module=args.moduleType, method=args.rotationMethod)
    except ValueError as error:
        raise UsageError(f"--layer/--moduleType/--rotationMethod: {error}") from None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "model"


def run_path(args, task_name: str, kind: str) -> Path:
    """``outputDir/model/dataset/<kind>_layer_...``: one folder per flag combination, like the paper's files."""
    a0, a1 = radians(args)
    name = (
        f"{kind}_layer_{args.layer[0]}_{args.layer[1]}_angle_{a0:.4f}_{a1:.4f}_{args.moduleType}_"
        f"{args.metric}_{args.fewShotCategory}_{args.rotationMethod}_n{args.trainingDataSize}_"
        f"{args.optimizer}_init{args.initialPoints}_seed{args.seed}"
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
    }


def run_main(main: Callable[[], None], *, resumable: bool = False) -> None:
    """Run a script's main; bad input becomes one line on stderr and exit code 2."""
    try:
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
