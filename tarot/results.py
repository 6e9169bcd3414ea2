"""The schema of results.json (and results_on_<task>.json): what the evaluations write and report.py reads.

Classification runs (evaluateRotation.py, test_topic.py) write ClassificationResults; generation runs
(test_summarization.py) write GenerationResults. The keys, and their order in the files, are those of the
committed results/; a field that older files lack is NotRequired.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NotRequired, TypedDict

from tarot.runs import write_json


class LabelMetrics(TypedDict):
    """One model (unedited or edited) on one test set, as a judge scores it."""

    accuracy: float
    accuracy_ci95: list[float]  # 95% bootstrap interval of the accuracy
    f1: float  # macro F1 over the test set's answers
    restricted_accuracy: NotRequired[float]  # next-token judge: argmax over the choices' first tokens
    restricted_accuracy_ci95: NotRequired[list[float]]
    restricted_f1: NotRequired[float]  # macro F1 of the restricted predictions
    predictions: NotRequired[list[str | None]]  # the label each question was answered with (exact match)
    restricted_predictions: NotRequired[list[str]]  # the choice ranked first
    # an edited model or a baseline: paired bootstrap 95% interval of (it - unedited) on the same questions,
    # for each of accuracy, f1, restricted_accuracy, restricted_f1 that both have
    paired_ci95: NotRequired[dict[str, list[float]]]
    unparsed: NotRequired[float]  # generated-answer judge (topics): share of answers naming no label
    examples: NotRequired[list[str]]  # generated-answer judge: the first three answers
    # generated-answer judge: the next-token judge's exact match too (accuracy, accuracy_ci95, f1,
    # predictions), so that topics compare with baselines judged by the first token
    next_token: NotRequired[dict]


class Setting(TypedDict):
    """Zero-shot or few-shot: the unedited and the edited model on the same prompts."""

    shots: int
    base: LabelMetrics
    tarot: LabelMetrics


class ClassificationResults(TypedDict):
    n_test: int
    test_ids: list[int]
    best_iteration: int  # the history row whose angles were evaluated
    best_train_value: float
    metric: str
    evaluations: int  # logged evaluations of the search
    planned_evaluations: int  # --initialPoints + --iterations
    judge: str  # next_token_judge or generated_answer_judge
    trained_on: NotRequired[str]  # the task the angles were searched on (absent before --evalDataset)
    evaluated_on: NotRequired[str]  # the task of the test set (another one for results_on_<task>.json)
    zero_shot: Setting
    few_shot: Setting


class GenerationScores(TypedDict):
    """One model's generations on the held-out prompts."""

    reward: float
    reward_ci95: list[float]
    perplexity: float  # of its continuations under the unedited model
    distinct_2: float


class GenerationResults(TypedDict):
    n_test: int
    scorer: str
    best_iteration: int
    best_train_value: float
    test_ids: list[int]
    evaluations: int
    planned_evaluations: int
    base: GenerationScores
    tarot: GenerationScores


Results = ClassificationResults | GenerationResults


def write_classification(path: Path, results: ClassificationResults) -> None:
    write_json(path, results)


def write_generation(path: Path, results: GenerationResults) -> None:
    write_json(path, results)


def read_classification(path: Path) -> ClassificationResults:
    return json.loads(path.read_text())


def read_generation(path: Path) -> GenerationResults:
    return json.loads(path.read_text())
