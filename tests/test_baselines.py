"""baselines.py: the calibrations' arithmetic against a direct computation, the same questions as TaRot's line,
and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import fails_with, tiny_flags

from tarot import baselines
from tarot.classification import evaluate, task_split, train
from tarot.cli import baseline_flags
from tarot.data import load_task
from tarot.scoring import PromptSet

TINY = tiny_flags(iterations=0, testing=12)


def test_calibration_divides_by_the_reference_in_each_questions_own_choice_order():
    # two questions listing the same labels in different orders; vocabulary of 6 tokens
    logits = torch.tensor([[0.0, 2.0, 1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 3.0, 1.0, 0.5]])
    prompts = PromptSet(
        ["a", "b"], [[0], [0]], [], [1, 4], [[1, 2], [4, 3]], ["yes", "yes"], [("yes", "no"), ("yes", "no")]
    )
    labels = ("no", "yes")
    probabilities = baselines.choice_probabilities(logits, prompts, labels).numpy()
    softmax = np.exp(logits.double().numpy()) / np.exp(logits.double().numpy()).sum(1, keepdims=True)
    expected = np.array([[softmax[0, 2], softmax[0, 1]], [softmax[1, 3], softmax[1, 4]]])  # (no, yes) per row
    np.testing.assert_allclose(probabilities, expected / expected.sum(1, keepdims=True), rtol=1e-12)
    # uniform reference: the plain argmax; a reference that favours "no" enough flips the first question
    assert baselines.calibrated_choices(torch.tensor(probabilities), torch.tensor([0.5, 0.5]), labels) == ["yes", "no"]
    ratio = probabilities / np.array([0.9, 0.1])
    flipped = [labels[i] for i in ratio.argmax(1)]
    assert baselines.calibrated_choices(torch.tensor(probabilities), torch.tensor([0.9, 0.1]), labels) == flipped
    assert flipped == ["yes", "yes"]


@pytest.mark.parametrize("method", ["contextual", "batch"])
def test_a_baseline_answers_tarots_test_questions(tmp_path, method, smollm2):
    flags = [*TINY, "--dataset", "entailed_polarity", "--outputDir", str(tmp_path)]
    results = baselines.run([*flags, "--method", method])
    # the same test questions as TaRot's line with these flags, and the same unedited model's answers
    train(flags)
    tarot = evaluate(flags)
    split = task_split(load_task("entailed_polarity"), baseline_flags([*flags, "--method", method]))
    assert results["test_ids"] == tarot["test_ids"] == [e.id for e in split.test]
    for setting in ("zero_shot", "few_shot"):
        base, calibrated = results[setting]["base"], results[setting][method]
        assert base == {key: value for key, value in tarot[setting]["base"].items()}
        reference = calibrated["reference"]
        assert set(reference) == {"yes", "no"} and sum(reference.values()) == pytest.approx(1.0)
        assert len(calibrated["restricted_predictions"]) == results["n_test"]
        assert set(calibrated["paired_ci95"]) == {"restricted_accuracy", "restricted_f1"}
        low, high = calibrated["paired_ci95"]["restricted_f1"]
        assert low <= calibrated["restricted_f1"] - base["restricted_f1"] <= high
    written = tmp_path / "smollm2" / "entailed_polarity" / f"Baseline_{method}_mix_n4_seed0"
    assert json.loads((written / "results.json").read_text()) == json.loads(json.dumps(results))
    assert json.loads((written / "config.json").read_text())["identity"]["method"] == method


def test_baseline_bad_input(tmp_path, capsys):
    flags = [*TINY, "--outputDir", str(tmp_path)]
    fails_with(
        capsys, baselines.run, [*flags, "--dataset", "navigate", "--method", "bogus"], "--method: invalid choice"
    )
    no_choices = tmp_path / "parity.jsonl"
    no_choices.write_text(
        "".join(json.dumps({"input": f"{i}?", "target": "odd" if i % 2 else "even"}) + "\n" for i in range(40))
    )
    fails_with(
        capsys,
        baselines.run,
        [*flags, "--dataset", str(no_choices), "--method", "contextual"],
        "--method contextual: parity has no choices",
    )
    assert not any(tmp_path.glob("smollm2/**/results.json"))
