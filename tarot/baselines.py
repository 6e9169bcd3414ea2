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

The trained baselines, ``lora`` and ``road`` (peft), are trained on TaRot's training prompts in TaRot's layer
range with one fixed recipe (tarot/adapters.py says which and why); they answer like any model, so they get
every metric. Their run is not resumed: the results are written only once training and scoring are done, so
a run killed mid-training leaves no results and starts again from the beginning (it is deterministic).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from tarot import adapters, cli
from tarot.choices import BASELINE_RUN_KIND, CALIBRATION_METHODS
from tarot.classification import classify, paired_intervals, restricted_metrics, task_split
from tarot.data import MAX_SHOTS, Example, Task, load_task
from tarot.errors import UsageError
from tarot.models import context_length, load_model
from tarot.runs import RunDir, git_commit, versions, write_json, write_tensors
from tarot.scoring import PromptSet, build_prompts, last_logits
from tarot.stats import one_answer

CONTENT_FREE_INPUTS = ("N/A", "", "[MASK]")
RUN_KIND = BASELINE_RUN_KIND
ADAPTER_FILE = "adapter.safetensors"  # lora and road: the trained adapter's weights (peft's names)


def run_path(args, task_name: str) -> Path:
    name = f"{RUN_KIND}_{args.method}_{args.fewShotCategory}_n{args.trainingDataSize}_seed{args.seed}"
    return cli.run_path(args, task_name, RUN_KIND).parent / name


def identity(args, task: Task) -> dict:
    """What defines a baseline's run: TaRot's identity less the search's own flags (the data, the split and
    prompts), plus the test size and the method; for lora and road also the layers, module and recipe."""
    shared: tuple[str, ...] = (
        "model",
        "dtype",
        "dataset",
        "data_sha256",
        "instruction",
        "fewShotCategory",
        "trainingDataSize",
        "seed",
    )
    if args.method not in CALIBRATION_METHODS:
        shared += ("layer", "moduleType")
    tarot = cli.identity(args, task)
    trained = {} if args.method in CALIBRATION_METHODS else {"recipe": recipe_of(args).record()}
    return (
        {key: tarot[key] for key in shared} | {"testingDataSize": args.testingDataSize, "method": args.method} | trained
    )


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


SETTINGS = (("zero_shot", 0), ("few_shot", MAX_SHOTS))


def calibrated(
    model,
    tokenizer,
    task: Task,
    split,
    args,
    choices: tuple[str, ...],
    questions: PromptSet,
    logits: torch.Tensor,
    shots: int,
) -> dict[str, Any]:
    """The calibrated choices for ``questions``, whose unedited next-token ``logits`` are given (restricted
    metrics only), and the reference they divide by."""
    inputs = reference_prompts(task, split, args.method, choices, shots)
    # the reference inputs show the choices like the questions do, whatever their own examples hold
    references = build_prompts(
        tokenizer, task, split.fewshot, [replace(e, choices=choices) for e in inputs], [shots] * len(inputs)
    )
    reference_logits = last_logits(model, references, batch_size=args.batchSize)
    reference = choice_probabilities(reference_logits, references, choices).mean(dim=0)
    ranked = calibrated_choices(choice_probabilities(logits, questions, choices), reference, choices)
    return {
        **restricted_metrics(ranked, questions.targets),
        "reference": dict(zip(choices, reference.tolist(), strict=True)),
    }


def recipe_of(args) -> adapters.Recipe:
    return adapters.Recipe(args.method, max_steps=args.maxSteps)


def trained(model, tokenizer, task: Task, split, args) -> tuple[Any, dict[str, Any]]:
    """Train the adapter on TaRot's training prompts (steps chosen by cross-validation on them): returns the
    peft model (wrapping, and mutating, ``model``) and the training record."""
    prompts = build_prompts(tokenizer, task, split.fewshot, split.train, split.shots, max_tokens=context_length(model))
    recipe = recipe_of(args)
    common = dict(layers=args.layer, module=args.moduleType, seed=args.seed)
    started = time.perf_counter()
    learning_rate, steps, cross_validation = adapters.choose(model, prompts, recipe, **common)
    peft_model, log = adapters.fit(
        model,
        prompts,
        range(len(prompts)),
        steps,
        recipe,
        learning_rate=learning_rate,
        **common,
        desc=f"{args.method} (all)",
    )
    total = round(time.perf_counter() - started, 1)
    return peft_model, {"recipe": recipe.record(), "cross_validation": cross_validation, **log, "seconds_total": total}


def run(argv=None) -> dict[str, Any]:
    """baselines.py: score the unedited model and the baseline on TaRot's test questions; write results.json
    (and, for lora and road, the trained adapter as adapter.safetensors)."""
    args = cli.baseline_flags(argv)
    task = load_task(args.dataset, args.instruction)
    calibration = args.method in CALIBRATION_METHODS
    choices = shared_choices(task, args.method) if calibration else ()
    split = task_split(task, args)
    folder = RunDir(run_path(args, task.name))
    folder.check_identity(identity(args, task))
    with folder.locked():  # one process per baseline folder; a failure before any write leaves none
        model, tokenizer = load_model(args.model, dtype=args.dtype, device=args.device)
        if not calibration:
            adapters.target_modules(model, args.layer, args.moduleType)  # a bad --layer fails before any work
        questions = {
            setting: build_prompts(
                tokenizer, task, split.fewshot, split.test, [shots] * len(split.test), max_tokens=context_length(model)
            )
            for setting, shots in SETTINGS
        }
        unedited = {setting: last_logits(model, q, batch_size=args.batchSize) for setting, q in questions.items()}
        base = {setting: classify(unedited[setting], q, tokenizer) for setting, q in questions.items()}
        training: dict[str, Any] = {}
        edited: dict[str, dict[str, Any]]
        if calibration:
            edited = {
                setting: calibrated(
                    model, tokenizer, task, split, args, choices, questions[setting], unedited[setting], shots
                )
                for setting, shots in SETTINGS
            }
        else:
            peft_model, training = trained(model, tokenizer, task, split, args)
            edited = {
                setting: dict(classify(last_logits(peft_model, q, batch_size=args.batchSize), q, tokenizer))
                for setting, q in questions.items()
            }
            from peft import get_peft_model_state_dict

            folder.path.mkdir(parents=True, exist_ok=True)
            write_tensors(folder.path / ADAPTER_FILE, dict(get_peft_model_state_dict(peft_model)))
        settings: dict[str, Any] = {}
        for setting, shots in SETTINGS:
            method = dict(edited[setting])
            method["paired_ci95"] = paired_intervals(edited[setting], base[setting], questions[setting].targets)  # type: ignore[arg-type]
            settings[setting] = {"shots": shots, "base": base[setting], args.method: method}
        results = {
            "method": args.method,
            "n_test": len(split.test),
            "test_ids": [e.id for e in split.test],
            "trained_on": task.name,
            "evaluated_on": task.name,
            **({"training": training} if training else {}),
            **settings,
        }
        config = {"identity": identity(args, task), "flags": vars(args) | {"layer": list(args.layer)}}
        write_json(folder.config, config | {"versions": versions(), "git_commit": git_commit(), "command": sys.argv})
        write_json(folder.results, results)
    print(table(results, one_answer([e.target for e in split.test])))
    print(f"written {folder.results}")
    return results


def _number(record: dict, key: str, width: int) -> str:
    return f"{record[key]:>{width}.3f}" if key in record else " " * width


def table(results: dict[str, Any], baseline: dict) -> str:
    method = results["method"]
    if method in CALIBRATION_METHODS:
        heading = f"{method} calibration ranks the choices: compare restricted accuracy and F1"
    else:
        t = results["training"]
        heading = (
            f"{method}: {t['trainable_parameters']:,} trainable parameters, {t['steps']} steps (chosen by "
            f"cross-validation on the training prompts), {t['seconds']:.0f} s ({t['seconds_total']:.0f} s with "
            "the cross-validation)" + ("; DIVERGED" if t["diverged"] else "")
        )
    lines = [
        f"n_test = {results['n_test']}; {heading}",
        f"{'setting':<10} {'model':<11} {'accuracy':>9} {'f1':>6} {'restricted':>11} {'95% CI':>13} "
        f"{'restr. f1':>9} {'paired 95% CI of the change in restr. f1':>41}",
    ]
    for setting in ("zero_shot", "few_shot"):
        for who in ("base", method):
            r = results[setting][who]
            ci = "[{:.2f}, {:.2f}]".format(*r["restricted_accuracy_ci95"]) if "restricted_accuracy_ci95" in r else ""
            paired = r.get("paired_ci95", {}).get("restricted_f1")
            lines.append(
                f"{setting:<10} {who:<11} {_number(r, 'accuracy', 9)} {_number(r, 'f1', 6)} "
                f"{_number(r, 'restricted_accuracy', 11)} {ci:>13} {_number(r, 'restricted_f1', 9)} "
                + (f"{'[{:+.3f}, {:+.3f}]'.format(*paired):>41}" if paired else "")
            )
    lines.append(f"{'one answer ' + repr(baseline['answer']):<22} {baseline['accuracy']:>9.3f} {baseline['f1']:>6.3f}")
    return "\n".join(lines)
