"""Baselines TaRot is compared with on classification tasks (baselines.py), on the same questions.

Given a TaRot line's flags, a baseline builds the same split, the same training prompts and the same test
questions (tarot.classification.task_split), and writes a run folder
``<outputDir>/<model>/<dataset>/Baseline_<method>_<shots>_n<train>_seed<seed>/`` with ``config.json`` and a
``results.json`` shaped like evaluateRotation.py's: ``zero_shot`` / ``few_shot`` x ``base`` / ``<method>``.

The free baselines target majority-label bias, the failure TaRot's search falls into on the embedded model.
Both divide the model's probability of each choice by a reference distribution over the choices and answer
with the largest ratio; they only rank the choices, so they are compared on the restricted metrics:

- ``contextual``: contextual calibration (Zhao et al. 2021, "Calibrate before use", arXiv 2102.09690). The
  reference is the mean, over content-free inputs ("N/A", "", "[MASK]") put in the same prompt (the same
  instruction and demonstrations), of the choices' probabilities renormalised over the choices.
- ``batch``: batch calibration (Zhou et al. 2024, ICLR). The reference is the mean renormalised probability
  of the choices over the training inputs, in the same prompt as the test questions: never test inputs.

Probabilities are those of each choice's first token after the prompt, as everywhere in this project.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from tarot import cli
from tarot.choices import BASELINE_RUN_KIND
from tarot.classification import classify, paired_intervals, restricted_metrics, task_split
from tarot.data import MAX_SHOTS, Example, Task, load_task
from tarot.errors import UsageError
from tarot.models import context_length, load_model
from tarot.runs import RunDir, git_commit, versions, write_json
from tarot.scoring import PromptSet, build_prompts, last_logits
from tarot.stats import one_answer

CONTENT_FREE_INPUTS = ("N/A", "", "[MASK]")
RUN_KIND = BASELINE_RUN_KIND


def run_path(args, task_name: str) -> Path:
    name = f"{RUN_KIND}_{args.method}_{args.fewShotCategory}_n{args.trainingDataSize}_seed{args.seed}"
    return cli.run_path(args, task_name, RUN_KIND).parent / name


def identity(args, task: Task) -> dict:
    """What defines a baseline's run: TaRot's identity less the search's own flags (the data, the split and
    prompts), plus the test size and the method."""
    shared = ("model", "dtype", "dataset", "data_sha256", "instruction", "fewShotCategory", "trainingDataSize", "seed")
    tarot = cli.identity(args, task)
    return {key: tarot[key] for key in shared} | {"testingDataSize": args.testingDataSize, "method": args.method}


def shared_choices(task: Task, method: str) -> tuple[str, ...]:
    """The one set of choices every question of the task offers (in any order; returned in the task's
    first-seen order): calibration divides by a distribution over it."""
    sets = {frozenset(example.choices) for example in task.examples}
    if sets == {frozenset()}:
        raise UsageError(
            f"--method {method}: {task.name} has no choices; calibration ranks a question's choices, so it needs "
            f"a task whose questions list them (a 'choices' field in each line)"
        )
    if len(sets) != 1:
        raise UsageError(
            f"--method {method}: the questions of {task.name} offer different choices; calibration "
            f"needs one set shared by all"
        )
    return task.labels


def choice_probabilities(logits: torch.Tensor, prompts: PromptSet, choices: Sequence[str]) -> torch.Tensor:
    """P(each choice's first token | prompt), renormalised over the choices, in the order of ``choices``
    (each question may list them in its own order): shape (prompts, choices)."""
    ids = torch.tensor(
        [
            [row_ids[row_choices.index(c)] for c in choices]
            for row_ids, row_choices in zip(prompts.choice_ids, prompts.choices, strict=True)
        ]
    )
    chosen = torch.softmax(logits.double(), dim=-1).gather(1, ids)
    return chosen / chosen.sum(dim=1, keepdim=True)


def calibrated_choices(probabilities: torch.Tensor, reference: torch.Tensor, choices: Sequence[str]) -> list[str]:
    """The choice with the largest ratio of its probability to the reference's: argmax_c p(c|x) / p_ref(c)."""
    return [choices[int(index)] for index in (probabilities / reference).argmax(dim=1)]


def reference_prompts(task: Task, split, method: str, choices: tuple[str, ...], shots: int) -> list[Example]:
    """The inputs the reference distribution is estimated on, to be put in the same prompt as the questions."""
    if method == "contextual":
        return [Example(-1 - i, text, choices[0], choices) for i, text in enumerate(CONTENT_FREE_INPUTS)]
    return list(split.train)  # batch: the training inputs, never the test questions


def run(argv=None) -> dict[str, Any]:
    """baselines.py: score the unedited model and the baseline on TaRot's test questions; write results.json."""
    args = cli.baseline_flags(argv)
    task = load_task(args.dataset, args.instruction)
    choices = shared_choices(task, args.method)
    split = task_split(task, args)
    folder = RunDir(run_path(args, task.name))
    folder.check_identity(identity(args, task))
    with folder.locked():  # one process per baseline folder; a failure before any write leaves none
        model, tokenizer = load_model(args.model, dtype=args.dtype, device=args.device)
        settings: dict[str, Any] = {}
        for setting, shots in (("zero_shot", 0), ("few_shot", MAX_SHOTS)):
            questions = build_prompts(
                tokenizer, task, split.fewshot, split.test, [shots] * len(split.test), max_tokens=context_length(model)
            )
            logits = last_logits(model, questions, batch_size=args.batchSize)
            base = classify(logits, questions, tokenizer)
            inputs = reference_prompts(task, split, args.method, choices, shots)
            # the reference inputs show the choices like the questions do, whatever their own examples hold
            references = build_prompts(
                tokenizer, task, split.fewshot, [replace(e, choices=choices) for e in inputs], [shots] * len(inputs)
            )
            reference_logits = last_logits(model, references, batch_size=args.batchSize)
            reference = choice_probabilities(reference_logits, references, choices).mean(dim=0)
            ranked = calibrated_choices(choice_probabilities(logits, questions, choices), reference, choices)
            method = restricted_metrics(ranked, questions.targets)
            method["paired_ci95"] = paired_intervals(method, base, questions.targets)
            settings[setting] = {
                "shots": shots,
                "base": base,
                args.method: method | {"reference": dict(zip(choices, reference.tolist(), strict=True))},
            }
        results = {
            "method": args.method,
            "n_test": len(split.test),
            "test_ids": [e.id for e in split.test],
            "trained_on": task.name,
            "evaluated_on": task.name,
            **settings,
        }
        config = {"identity": identity(args, task), "flags": vars(args) | {"layer": list(args.layer)}}
        write_json(folder.config, config | {"versions": versions(), "git_commit": git_commit(), "command": sys.argv})
        write_json(folder.results, results)
    print(table(results, one_answer([e.target for e in split.test])))
    print(f"written {folder.results}")
    return results


def table(results: dict[str, Any], baseline: dict) -> str:
    method = results["method"]
    lines = [
        f"n_test = {results['n_test']}; {method} calibration ranks the choices: compare restricted accuracy and F1",
        f"{'setting':<10} {'model':<11} {'restricted':>11} {'95% CI':>15} {'restr. f1':>9} "
        f"{'paired 95% CI of the change in restr. f1':>41}",
    ]
    for setting in ("zero_shot", "few_shot"):
        for who in ("base", method):
            r = results[setting][who]
            ci = "[{:.2f}, {:.2f}]".format(*r["restricted_accuracy_ci95"])
            paired = r.get("paired_ci95", {}).get("restricted_f1")
            lines.append(
                f"{setting:<10} {who:<11} {r['restricted_accuracy']:>11.3f} {ci:>15} {r['restricted_f1']:>9.3f} "
                + (f"{'[{:+.3f}, {:+.3f}]'.format(*paired):>41}" if paired else "")
            )
    lines.append(
        f"{'one answer ' + repr(baseline['answer']):<22} {baseline['accuracy']:>11.3f} {'':>15} {baseline['f1']:>9.3f}"
    )
    return "\n".join(lines)
