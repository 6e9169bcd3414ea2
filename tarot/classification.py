"""TaRot on classification tasks: the search (trainRotation_NN_kernel.py) and the held-out evaluation
(evaluateRotation.py)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np
import torch

import rotation
from tarot import cli
from tarot.data import MAX_SHOTS, Split, Task, load_task, make_split
from tarot.errors import UsageError
from tarot.models import check_export_path, load_model, save_model
from tarot.runs import RunDir, write_json
from tarot.scoring import METRICS, PromptSet, build_prompts, last_logits, objective_values
from tarot.search import best_angles, start_search
from tarot.stats import macro_f1, one_answer, summary

RUN_KIND = "NN_kernel"


def parser(description: str):
    return cli.build_parser(description, metrics=METRICS, default_metric="prob", default_test_size=200)


def check_dataset(args, datasets: tuple[str, ...] | None) -> None:
    if datasets is not None and args.dataset not in datasets:
        raise UsageError(f"--dataset: {args.dataset!r} is not one of {', '.join(datasets)}")


def _setup(args, kind: str) -> tuple[Task, Split, RunDir]:
    """Everything that can be checked before the model loads."""
    task = load_task(args.dataset, args.instruction)
    split = make_split(
        task,
        train_size=args.trainingDataSize,
        test_size=args.testingDataSize,
        seed=args.seed,
        few_shot=args.fewShotCategory,
    )
    run = RunDir(cli.run_path(args, task.name, kind))
    run.check_identity(cli.identity(args, task))
    return task, split, run


def _split_record(split: Split, prompts: PromptSet) -> dict:
    return {
        **split.ids(),
        "train_shots": split.shots,
        "train_prompts": prompts.texts,
        "train_answer_token_ids": prompts.answer_ids,
    }


class Objective:
    """Training objective: metrics of the rotated model on the training prompts (deterministic)."""

    def __init__(self, model, prompts: PromptSet, args, shape: tuple[int, ...]):
        self.model, self.prompts, self.args, self.shape = model, prompts, args, shape
        self.base_logits = last_logits(model, prompts, batch_size=args.batchSize)  # for logit_diff, once

    def __call__(self, angles: np.ndarray) -> dict:
        with rotation.rotated(
            self.model,
            angles.reshape(self.shape),
            layers=self.args.layer,
            module=self.args.moduleType,
            method=self.args.rotationMethod,
        ):
            logits = last_logits(self.model, self.prompts, batch_size=self.args.batchSize)
        return objective_values(logits, self.prompts, self.base_logits)


def train(
    argv=None,
    *,
    datasets: tuple[str, ...] | None = None,
    kind: str = RUN_KIND,
    description: str = "TaRot: search rotation angles on a classification task.",
) -> RunDir:
    """The search. ``datasets`` restricts --dataset (the topic scripts accept only topic tasks); ``kind``
    names the run folders (``NN_kernel_...`` like the paper's files)."""
    args = cli.parse(parser(description), argv)
    check_dataset(args, datasets)
    task, split, run = _setup(args, kind)
    model, tokenizer = load_model(args.model, dtype=args.dtype, device=args.device)
    shape = cli.angle_shape(model, args)
    prompts = build_prompts(tokenizer, task, split.fewshot, split.train, split.shots)
    start_search(
        run,
        args,
        cli.identity(args, task),
        shape,
        _split_record(split, prompts),
        Objective(model, prompts, args, shape),
        what=f"{task.name}, {len(split.train)} training prompts",
    )
    return run


# ----------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------


def classify(logits: torch.Tensor, prompts: PromptSet, tokenizer) -> dict:
    """Accuracy (the paper's exact match: the decoded top token is the answer's first token, ignoring case
    and surrounding spaces, so "No" answers "no"), restricted accuracy (argmax over the choices' first
    tokens), macro F1 of the exact-match predictions, with 95% intervals."""
    top = logits.argmax(-1).tolist()

    def word(token_id: int) -> str:
        return tokenizer.decode([token_id]).strip().lower()

    exact, restricted, predicted = [], [], []
    rows = zip(prompts.answer_ids, prompts.choice_ids, prompts.choices, strict=True)
    for row, (answer, choice_ids, choices) in enumerate(rows):
        exact.append(float(word(top[row]) == word(answer) != ""))
        if choice_ids:
            restricted.append(float(choice_ids[int(logits[row, choice_ids].argmax())] == answer))
        # the label whose first token reads as the top token; else the token itself (counts as wrong)
        by_word = {word(i): c for i, c in zip(choice_ids, choices, strict=True)} | {word(answer): prompts.targets[row]}
        predicted.append(by_word.get(word(top[row]), word(top[row])))
    return label_metrics(exact, predicted, prompts.targets) | (
        {"restricted_accuracy": summary(restricted)["mean"], "restricted_accuracy_ci95": summary(restricted)["ci95"]}
        if restricted
        else {}
    )


def label_metrics(correct: list[float], predicted: Sequence[str | None], targets: Sequence[str]) -> dict:
    stats = summary(correct)
    return {"accuracy": stats["mean"], "accuracy_ci95": stats["ci95"], "f1": macro_f1(predicted, targets)}


def next_token_judge(model, tokenizer, prompts: PromptSet, args) -> dict:
    """Score the model as it is now by its next token after each prompt."""
    return classify(last_logits(model, prompts, batch_size=args.batchSize), prompts, tokenizer)


def _table(results: dict, judge, baseline: dict) -> str:
    cross = results["evaluated_on"] != results["trained_on"]
    lines = [
        f"n_test = {results['n_test']}"
        + (f" of {results['evaluated_on']} (angles searched on {results['trained_on']})" if cross else ""),
        f"{'setting':<10} {'model':<7} {'accuracy':>9} {'95% CI':>15} {'restricted':>11} {'f1':>6}",
    ]
    for setting in ("zero_shot", "few_shot"):
        for who in ("base", "tarot"):
            r = results[setting][who]
            ci = "[{:.2f}, {:.2f}]".format(*r["accuracy_ci95"])
            lines.append(
                f"{setting:<10} {who:<7} {r['accuracy']:>9.3f} {ci:>15} "
                f"{r.get('restricted_accuracy', float('nan')):>11.3f} {r['f1']:>6.3f}"
            )
    lines.append(
        f"{'one answer ' + repr(baseline['answer']):<18} {baseline['accuracy']:>9.3f} {'':>15} {'':>11} "
        f"{baseline['f1']:>6.3f}"
    )
    if judge is next_token_judge:
        lines.append(
            "accuracy: the decoded top token is the answer's first token, case ignored (the paper's exact "
            "match); restricted: argmax over the choices' first tokens"
        )
    else:
        lines.append(f"{judge.__name__}: {(judge.__doc__ or '').strip().splitlines()[0]}")
    lines.append(
        "one answer: the test set's most common answer given to every question (a model that matches its "
        "accuracy and f1 has collapsed onto that answer)"
    )
    return "\n".join(lines)


def evaluate(
    argv=None,
    *,
    datasets: tuple[str, ...] | None = None,
    judge=next_token_judge,
    kind: str = RUN_KIND,
    train_script: str = "trainRotation_NN_kernel.py",
    description: str = "TaRot: evaluate the best rotation of a finished search on held-out data.",
) -> dict:
    """Held-out evaluation, zero-shot and six-shot, unedited vs edited; ``judge(model, tokenizer, prompts,
    args) -> metrics`` scores the model in its current state (next token here, generated words for topics)."""
    p = parser(description)
    p.add_argument(
        "--exportModel",
        default=None,
        metavar="DIR",
        help="also save the edited model as a standard Hugging Face checkpoint in DIR",
    )
    p.add_argument(
        "--evalDataset",
        default=None,
        metavar="TASK",
        help="evaluate the angles searched on --dataset on this other task's test set instead (the "
        "test examples that task's own run with these flags uses), to measure collateral "
        "damage; writes results_on_<task>.json",
    )
    args = cli.parse(p, argv)
    check_dataset(args, datasets)
    task, split, run = _setup(args, kind)
    eval_task, eval_split = task, split
    if args.evalDataset is not None:
        eval_task = load_task(args.evalDataset, flag="--evalDataset")  # its own instruction: its prompts
        if eval_task.name == task.name:
            raise UsageError(
                f"--evalDataset: {args.evalDataset!r} is the task the angles were searched on; "
                f"leave --evalDataset out to evaluate on its own test set"
            )
        eval_split = make_split(
            eval_task,
            train_size=args.trainingDataSize,
            test_size=args.testingDataSize,
            seed=args.seed,
            few_shot=args.fewShotCategory,
        )
    if not run.config.exists():  # checked before the model loads
        raise UsageError(f"no trained run for these flags at {run.path}: run {train_script} first")
    if args.exportModel:
        check_export_path(args.exportModel)
    model, tokenizer = load_model(args.model, dtype=args.dtype, device=args.device)
    run.require_trained(
        _split_record(split, build_prompts(tokenizer, task, split.fewshot, split.train, split.shots)), train_script
    )
    shape = cli.angle_shape(model, args)
    angles, best = best_angles(run, shape)
    evaluations = len(run.load_evaluations()[0])
    planned = args.initialPoints + args.iterations
    if evaluations < planned:
        print(
            f"note: the search is unfinished ({evaluations} of {planned} evaluations); evaluating its best "
            f"point so far",
            file=sys.stderr,
        )
    n_test = len(eval_split.test)
    if n_test < args.testingDataSize:
        print(
            f"note: only {n_test} test examples remain for {eval_task.name} after {MAX_SHOTS} demonstrations "
            f"and {len(eval_split.train)} training examples (asked for {args.testingDataSize}); using all of "
            f"them",
            file=sys.stderr,
        )
    results = {
        "n_test": n_test,
        "test_ids": [e.id for e in eval_split.test],
        "best_iteration": best["iteration"],
        "best_train_value": best["value"],
        "metric": args.metric,
        "evaluations": evaluations,
        "planned_evaluations": planned,
        "judge": judge.__name__,
        "trained_on": task.name,
        "evaluated_on": eval_task.name,
    }
    edit = dict(layers=args.layer, module=args.moduleType, method=args.rotationMethod)
    for setting, shots in (("zero_shot", 0), ("few_shot", MAX_SHOTS)):
        prompts = build_prompts(
            tokenizer,
            eval_task,
            eval_split.fewshot,
            eval_split.test,
            [shots] * n_test,
            flag="--dataset" if eval_task is task else "--evalDataset",
        )
        base = judge(model, tokenizer, prompts, args)
        with rotation.rotated(model, angles, **edit):
            tarot = judge(model, tokenizer, prompts, args)
        results[setting] = {"shots": shots, "base": base, "tarot": tarot}
    output = run.results if eval_task is task else run.cross_results(eval_task.name)
    write_json(output, results)
    print(_table(results, judge, one_answer([e.target for e in eval_split.test])))
    print(f"written {output}")
    if args.exportModel:
        with rotation.rotated(model, angles, **edit):
            save_model(
                model,
                tokenizer,
                args.exportModel,
                {
                    "tarot": edit | {"layers": list(args.layer)},
                    "source_model": args.model,
                    "run": str(run.path),
                    "best_iteration": best["iteration"],
                },
            )
        print(f"edited model saved to {args.exportModel}")
    return results
