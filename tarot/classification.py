"""TaRot on classification tasks: the search (trainRotation_NN_kernel.py) and the held-out evaluation
(evaluateRotation.py)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

import rotation
from tarot import cli
from tarot.data import MAX_SHOTS, Split, Task, load_task, make_split, task_name
from tarot.errors import UsageError
from tarot.models import context_length, load_model, save_model
from tarot.results import ClassificationResults, LabelMetrics, Setting, write_classification
from tarot.runs import RunDir, read_jsonl
from tarot.scoring import PromptSet, build_prompts, last_logits, objective_values
from tarot.search import best_angles, select_on_dev, start_search
from tarot.stats import macro_f1, one_answer, paired_metric_interval, summary

RUN_KIND = "NN_kernel"
Flags = Callable[[Sequence[str] | None], argparse.Namespace]  # parses and checks a script's flags (tarot/cli.py)


def task_split(task: Task, args) -> Split:
    """The split these flags give (the same for every method run with them: TaRot and the baselines)."""
    return make_split(
        task,
        train_size=args.trainingDataSize,
        test_size=args.testingDataSize,
        seed=args.seed,
        few_shot=args.fewShotCategory,
        balanced=getattr(args, "balancedTraining", False),
    )


def _setup(args, kind: str) -> tuple[Task, Split, RunDir]:
    """Everything that can be checked before the model loads."""
    task = load_task(args.dataset, args.instruction)
    if args.metric == "choice_ce" and not all(e.choices for e in task.examples):
        raise UsageError(
            f"--metric choice_ce: {task.name} has no choices (a 'choices' field in each line); it is a "
            f"log-softmax over them: use balanced_logprob"
        )
    split = task_split(task, args)
    run = RunDir(cli.run_path(args, task.name, kind))
    run.check_identity(cli.identity(args, task))
    run.read_history()  # a damaged history is reported before the model loads
    return task, split, run


def _split_record(split: Split, prompts: PromptSet) -> dict:
    balanced = {} if split.label_counts is None else {"train_label_counts": split.label_counts}
    return {
        **split.ids(),
        "train_shots": split.shots,
        "train_prompts": prompts.texts,
        "train_answer_token_ids": prompts.answer_ids,
        **balanced,
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


def train(argv=None, *, flags: Flags = cli.train_flags, kind: str = RUN_KIND) -> RunDir:
    """The search. ``flags`` parses the script's flags (the topic scripts accept only topic tasks); ``kind``
    names the run folders (``NN_kernel_...`` like the paper's files)."""
    args = flags(argv)
    task, split, run = _setup(args, kind)
    with run.locked():  # before the model loads: a second search of this folder stops at once
        model, tokenizer = load_model(args.model, dtype=args.dtype, device=args.device)
        shape = cli.angle_shape(model, args)
        prompts = build_prompts(
            tokenizer, task, split.fewshot, split.train, split.shots, max_tokens=context_length(model)
        )
        dev = dev_rows(args, len(prompts))
        searched = [i for i in range(len(prompts)) if i not in dev]
        record = _split_record(split, prompts) | ({"dev": [split.train[i].id for i in dev]} if dev else {})
        start_search(
            run,
            args,
            cli.identity(args, task),
            shape,
            record,
            Objective(model, prompts.subset(searched), args, shape),
            what=f"{task.name}, {len(searched)} training prompts" + (f" (+{len(dev)} dev)" if dev else ""),
        )
        if dev:
            select_on_dev(run, shape, Objective(model, prompts.subset(dev), args, shape), args.metric)
    return run


def dev_rows(args, count: int) -> list[int]:
    """--selectOn dev:K: the last K training prompts (the split is already shuffled) are held out of the
    objective and score the final point's candidates instead; none without the flag."""
    if getattr(args, "selectOn", None) is None:
        return []
    k = int(args.selectOn.split(":")[1])
    return list(range(count - k, count))


# ----------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------


def classify(logits: torch.Tensor, prompts: PromptSet, tokenizer) -> LabelMetrics:
    """Accuracy (the paper's exact match: the decoded top token is the answer's first token, ignoring case
    and surrounding spaces, so "No" answers "no"), restricted accuracy (argmax over the choices' first
    tokens), macro F1 of the exact-match predictions, with 95% intervals."""
    top = logits.argmax(-1).tolist()

    def word(token_id: int) -> str:
        return tokenizer.decode([token_id]).strip().lower()

    exact, restricted, predicted, ranked_first = [], [], [], []
    rows = zip(prompts.answer_ids, prompts.choice_ids, prompts.choices, strict=True)
    for row, (answer, choice_ids, choices) in enumerate(rows):
        exact.append(float(word(top[row]) == word(answer) != ""))
        if choice_ids:
            best = int(logits[row, choice_ids].argmax())
            restricted.append(float(choice_ids[best] == answer))
            ranked_first.append(choices[best])
        # the label whose first token reads as the top token; else the token itself (counts as wrong)
        by_word = {word(i): c for i, c in zip(choice_ids, choices, strict=True)} | {word(answer): prompts.targets[row]}
        predicted.append(by_word.get(word(top[row]), word(top[row])))
    metrics = label_metrics(exact, predicted, prompts.targets)
    if restricted:
        metrics |= restricted_metrics(ranked_first, prompts.targets)
    return metrics


def label_metrics(correct: list[float], predicted: Sequence[str | None], targets: Sequence[str]) -> LabelMetrics:
    stats = summary(correct)
    return {
        "accuracy": stats["mean"],
        "accuracy_ci95": stats["ci95"],
        "f1": macro_f1(predicted, targets),
        "predictions": list(predicted),
    }


def restricted_metrics(ranked_first: Sequence[str], targets: Sequence[str]) -> LabelMetrics:
    """Accuracy (with its interval) and macro F1 of the choices ranked first: the model made to pick one."""
    stats = summary([float(p == t) for p, t in zip(ranked_first, targets, strict=True)])
    return {  # type: ignore[typeddict-item]  # the restricted half of LabelMetrics, merged into a whole one
        "restricted_accuracy": stats["mean"],
        "restricted_accuracy_ci95": stats["ci95"],
        "restricted_f1": macro_f1(ranked_first, targets),
        "restricted_predictions": list(ranked_first),
    }


# metric -> the predictions it is computed from, and how
PAIRED_METRICS = {
    "accuracy": ("predictions", "accuracy"),
    "f1": ("predictions", "f1"),
    "restricted_accuracy": ("restricted_predictions", "accuracy"),
    "restricted_f1": ("restricted_predictions", "f1"),
}


def paired_intervals(edited: LabelMetrics, unedited: LabelMetrics, targets: Sequence[str]) -> dict[str, list[float]]:
    """Paired bootstrap 95% intervals of (edited - unedited) on the same questions, for every metric whose
    predictions both hold."""
    intervals = {}
    for metric, (key, kind) in PAIRED_METRICS.items():
        if key in edited and key in unedited:
            intervals[metric] = paired_metric_interval(kind, edited[key], unedited[key], targets)  # type: ignore[literal-required]
    return intervals


Judge = Callable[..., LabelMetrics]  # judge(model, tokenizer, prompts, args): the model as it is now


def next_token_judge(model, tokenizer, prompts: PromptSet, args) -> LabelMetrics:
    """Score the model as it is now by its next token after each prompt."""
    return classify(last_logits(model, prompts, batch_size=args.batchSize), prompts, tokenizer)


def _table(results: ClassificationResults, judge: Judge, baseline: dict) -> str:
    cross = results["evaluated_on"] != results["trained_on"]
    lines = [
        f"n_test = {results['n_test']}"
        + (f" of {results['evaluated_on']} (angles searched on {results['trained_on']})" if cross else ""),
        f"{'setting':<10} {'model':<7} {'accuracy':>9} {'95% CI':>15} {'restricted':>11} {'f1':>6} "
        f"{'restr. f1':>9} {'paired 95% CI of the change in restr. f1':>41}",
    ]
    for setting in ("zero_shot", "few_shot"):
        for who in ("base", "tarot"):
            r = results[setting][who]
            ci = "[{:.2f}, {:.2f}]".format(*r["accuracy_ci95"])
            paired = r.get("paired_ci95", {}).get("restricted_f1")
            lines.append(
                f"{setting:<10} {who:<7} {r['accuracy']:>9.3f} {ci:>15} "
                f"{r.get('restricted_accuracy', float('nan')):>11.3f} {r['f1']:>6.3f} "
                f"{r.get('restricted_f1', float('nan')):>9.3f} "
                + (f"{'[{:+.3f}, {:+.3f}]'.format(*paired):>41}" if paired else "")
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
    flags: Flags = cli.evaluate_flags,
    judge: Judge = next_token_judge,
    kind: str = RUN_KIND,
    train_script: str = "trainRotation_NN_kernel.py",
) -> ClassificationResults:
    """Held-out evaluation, zero-shot and six-shot, unedited vs edited; ``judge(model, tokenizer, prompts,
    args) -> metrics`` scores the model in its current state (next token here, generated words for topics)."""
    args = flags(argv)
    task, split, run = _setup(args, kind)
    run.require_search(train_script)
    output = run.results if args.evalDataset is None else run.cross_results(task_name(args.evalDataset))
    with run.locked(output):  # other evaluations of this run may go on, not its search nor one writing output
        return _evaluate(args, task, split, run, judge, train_script, output)


def _evaluate(
    args, task: Task, split: Split, run: RunDir, judge: Judge, train_script: str, output: Path
) -> ClassificationResults:
    eval_task, eval_split = task, split
    if args.evalDataset is not None:
        eval_task = load_task(args.evalDataset, flag="--evalDataset")  # its own instruction: its prompts
        eval_split = task_split(eval_task, args)
    model, tokenizer = load_model(args.model, dtype=args.dtype, device=args.device)
    run.require_trained(
        _split_record(split, build_prompts(tokenizer, task, split.fewshot, split.train, split.shots)), train_script
    )
    shape = cli.angle_shape(model, args)
    angles, best = best_angles(run, shape, dev=getattr(args, "selectOn", None) is not None)
    evaluations = len(read_jsonl(run.history))  # points.safetensors may be absent (a run kept in results/)
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
    edit = dict(layers=args.layer, module=args.moduleType, method=args.rotationMethod)
    settings: dict[str, Setting] = {}
    for setting, shots in (("zero_shot", 0), ("few_shot", MAX_SHOTS)):
        prompts = build_prompts(
            tokenizer,
            eval_task,
            eval_split.fewshot,
            eval_split.test,
            [shots] * n_test,
            flag="--dataset" if eval_task is task else "--evalDataset",
            max_tokens=context_length(model),
        )
        base = judge(model, tokenizer, prompts, args)
        with rotation.rotated(model, angles, **edit):
            tarot = judge(model, tokenizer, prompts, args)
        tarot["paired_ci95"] = paired_intervals(tarot, base, prompts.targets)
        settings[setting] = {"shots": shots, "base": base, "tarot": tarot}
    results: ClassificationResults = {
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
        "zero_shot": settings["zero_shot"],
        "few_shot": settings["few_shot"],
    }
    write_classification(output, results)
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
