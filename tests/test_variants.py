"""The knobs aimed at answer collapse (issue 12): class-balanced objectives, balanced training examples,
shared angles and the final point chosen on held-out training prompts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import fails_with, make_tiny_model, tiny_flags

import rotation
from tarot import cli
from tarot.classification import evaluate, train
from tarot.data import load_task, make_split
from tarot.reference import hooked
from tarot.runs import RunDir
from tarot.scoring import PromptSet, objective_values
from tarot.search import DEV_CANDIDATES, best_angles, select_on_dev

LAYERS = (1, 3)


# ---- class-balanced objectives ---------------------------------------------------------------------


def test_balanced_objectives_against_a_direct_computation():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 10, generator=generator) * 3
    targets = ["a", "a", "a", "a", "b", "c"]  # "a" is four times as frequent as the others
    token = {"a": 2, "b": 5, "c": 7}
    prompts = PromptSet(
        [""] * 6,
        [[1]] * 6,
        [],
        [token[t] for t in targets],
        [[2, 5, 7]] * 6,
        targets,
        [("a", "b", "c")] * 6,
    )
    values = objective_values(logits, prompts, None)
    x = logits.double().numpy()
    log_probs = x - np.log(np.exp(x).sum(1, keepdims=True))
    answer = np.array([log_probs[i, token[t]] for i, t in enumerate(targets)])
    expected = np.mean([answer[:4].mean(), answer[4], answer[5]])  # the mean over labels of each label's mean
    assert values["balanced_logprob"] == pytest.approx(expected, rel=1e-12)
    sub = x[:, [2, 5, 7]]
    choice = sub - np.log(np.exp(sub).sum(1, keepdims=True))
    by_row = np.array([choice[i, "abc".index(t)] for i, t in enumerate(targets)])
    assert values["choice_ce"] == pytest.approx(np.mean([by_row[:4].mean(), by_row[4], by_row[5]]), rel=1e-12)
    # answering "a" to everything wins the plain mean probability but not the balanced objectives
    collapsed = torch.full((6, 10), -5.0)
    collapsed[:, 2] = 5.0
    balanced = torch.full((6, 10), -5.0)
    balanced[:, [2, 5, 7]] = 0.0
    for row, t in enumerate(targets):
        balanced[row, token[t]] = 1.0  # right every time, but less sure of it
    one, fair = objective_values(collapsed, prompts, None), objective_values(balanced, prompts, None)
    assert one["prob"] > fair["prob"]
    assert one["balanced_logprob"] < fair["balanced_logprob"] and one["choice_ce"] < fair["choice_ce"]


def test_choice_ce_needs_choices(tmp_path, capsys):
    data = tmp_path / "parity.jsonl"
    data.write_text(
        "".join(json.dumps({"input": f"{i}?", "target": "odd" if i % 2 else "even"}) + "\n" for i in range(40))
    )
    flags = [*tiny_flags(iterations=0, testing=4), "--dataset", str(data), "--outputDir", str(tmp_path)]
    fails_with(capsys, train, [*flags, "--metric", "choice_ce"], "--metric choice_ce: parity has no choices")


# ---- balanced training examples ----------------------------------------------------------------------


@pytest.mark.parametrize("task_name", ["navigate", "color", "entailed_polarity"])
def test_balanced_training_keeps_the_test_questions_and_evens_the_labels(task_name):
    task = load_task(task_name)
    plain = make_split(task, train_size=20, test_size=200, seed=1, few_shot="mix")
    balanced = make_split(task, train_size=20, test_size=200, seed=1, few_shot="mix", balanced=True)
    assert balanced.ids()["test"] == plain.ids()["test"] and balanced.ids()["fewshot"] == plain.ids()["fewshot"]
    assert balanced.shots == plain.shots and len(balanced.train) == 20
    tested = {e.input for e in balanced.test}
    assert not tested & {e.input for e in balanced.train}
    counts = balanced.label_counts
    assert counts is not None and sum(counts.values()) == 20
    pool = [e for e in task.examples if e.input not in tested and e not in balanced.fewshot]
    available = {label: sum(e.target == label for e in pool) for label in counts}
    share = 20 // len({e.target for e in pool})
    # every label gets its share, or all its examples when it has fewer
    assert all(counts[label] >= min(share, available[label]) for label in counts)
    plain_counts = np.unique([e.target for e in plain.train], return_counts=True)[1]
    assert max(counts.values()) - min(counts.values()) <= max(plain_counts) - min(plain_counts)


def test_balanced_training_counts_and_the_impossible_request(tmp_path):
    task = load_task("navigate")
    split = make_split(task, train_size=20, test_size=200, seed=0, few_shot="mix", balanced=True)
    assert split.label_counts == {"False": 10, "True": 10}
    one_label = tmp_path / "yes.jsonl"
    one_label.write_text("".join(json.dumps({"input": f"{i}?", "target": "yes"}) + "\n" for i in range(30)))
    with pytest.raises(cli.UsageError, match=r"--balancedTraining: every training candidate of yes has the label"):
        make_split(load_task(str(one_label)), train_size=4, test_size=4, seed=0, few_shot="mix", balanced=True)


# ---- shared angles ---------------------------------------------------------------------------------


@pytest.mark.parametrize("sharing", ["layer", "all"])
@pytest.mark.parametrize("module", ["reasoning", "mlp"])
def test_shared_angles_equal_the_hooks_with_the_angles_repeated(tiny_model, tokens, sharing, module):
    full = rotation.param_shape(tiny_model, layers=LAYERS, module=module, method="rotary")
    shared_shape = rotation.param_shape(tiny_model, layers=LAYERS, module=module, method="rotary", sharing=sharing)
    if module == "reasoning":  # (layer, head, angle)
        assert shared_shape == ((full[0], 1, full[2]) if sharing == "layer" else (1, 1, full[2]))
    else:  # (layer, angle): a layer's MLP has one set already
        assert shared_shape == (full if sharing == "layer" else (1, full[1]))
    shared = torch.rand(shared_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2)) * 1.6 - 0.8
    repeated = shared.expand(full).contiguous()
    with torch.no_grad():
        with hooked(tiny_model, repeated, layers=LAYERS, module=module, method="rotary"):
            expected = tiny_model(tokens).logits
        with rotation.rotated(tiny_model, shared, layers=LAYERS, module=module, method="rotary"):
            folded = tiny_model(tokens).logits
    torch.testing.assert_close(folded, expected, atol=1e-4, rtol=0)


def test_shared_angles_fold_like_their_repetition(tokens):
    model, twin = make_tiny_model("llama"), make_tiny_model("llama")
    shape = rotation.param_shape(model, layers=LAYERS, module="reasoning", method="givens", sharing="all")
    shared = torch.linspace(-0.7, 0.7, int(np.prod(shape))).reshape(shape)
    rotation.fold(model, shared, layers=LAYERS, module="reasoning", method="givens")
    full = rotation.param_shape(model, layers=LAYERS, module="reasoning", method="givens")
    rotation.fold(twin, shared.expand(full), layers=LAYERS, module="reasoning", method="givens")
    with torch.no_grad():
        assert torch.equal(model(tokens).logits, twin(tokens).logits)
    with pytest.raises(ValueError, match="cannot be shared"):
        rotation.fold(model, torch.zeros(2, 2, shape[-1]), layers=LAYERS, module="reasoning", method="givens")
    with pytest.raises(ValueError, match="unknown sharing 'heads'"):
        rotation.param_shape(model, layers=LAYERS, module="reasoning", method="givens", sharing="heads")


# ---- the final point chosen on held-out training prompts ----------------------------------------------


def test_select_on_dev_picks_the_best_dev_value_among_the_best_training_points(tmp_path):
    run = RunDir(tmp_path)
    tmp_path.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    points = rng.uniform(-1, 1, (30, 4))
    history = [{"iteration": i, "value": float(v), "seconds": 0.0} for i, v in enumerate(rng.uniform(0, 1, 30))]
    run.save_evaluations(history, points)
    with pytest.raises(cli.UsageError, match=r"no selection\.json"):
        best_angles(run, (2, 2), dev=True)

    def dev_objective(x: np.ndarray) -> dict:
        return {"prob": float(-np.abs(x - 0.3).sum())}  # a different ranking from the training values

    selection = select_on_dev(run, (2, 2), dev_objective, "prob")
    top = sorted(range(30), key=lambda i: -history[i]["value"])[:DEV_CANDIDATES]
    assert [c["iteration"] for c in selection["candidates"]] == top
    chosen = max(top, key=lambda i: dev_objective(points[i])["prob"])
    assert selection["chosen"] == chosen != top[0]
    angles, row = best_angles(run, (2, 2), dev=True)
    assert row["iteration"] == chosen and np.array_equal(angles.numpy().ravel(), points[chosen])
    assert best_angles(run, (2, 2))[1]["iteration"] == top[0]  # without --selectOn: the best training point
    run.points.unlink()  # a run kept in results/: best_angles.safetensors must hold the chosen point
    assert best_angles(run, (2, 2), dev=True)[1]["iteration"] == chosen


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--selectOn", "dev:0"], "--selectOn: 'dev:0' is not dev:K with 1 <= K < --trainingDataSize (4)"),
        (["--selectOn", "dev:4"], "--selectOn: 'dev:4' is not dev:K"),
        (["--selectOn", "test:2"], "--selectOn: 'test:2' is not dev:K"),
        (["--angleSharing", "heads"], "--angleSharing: invalid choice: 'heads'"),
    ],
)
def test_knob_flag_errors(tmp_path, capsys, flags, message):
    base = [*tiny_flags(iterations=0, testing=4), "--dataset", "navigate", "--outputDir", str(tmp_path)]
    fails_with(capsys, train, [*base, *flags], message)


def test_every_knob_together_on_the_embedded_model(tmp_path, smollm2):
    flags = [
        *tiny_flags(iterations=2, testing=8),
        "--dataset", "navigate", "--outputDir", str(tmp_path), "--metric", "choice_ce",
        "--balancedTraining", "--angleSharing", "layer", "--selectOn", "dev:2",
    ]  # fmt: skip
    run = train(flags)
    assert run.path.name.endswith("_seed0_share-layer_balanced_dev2")
    config = json.loads(run.config.read_text())
    assert config["angle_shape"] == [2, 1, 32]
    assert {k: config["identity"][k] for k in ("angleSharing", "balancedTraining", "selectOn", "metric")} == {
        "angleSharing": "layer", "balancedTraining": True, "selectOn": "dev:2", "metric": "choice_ce",
    }  # fmt: skip
    split = json.loads(run.split.read_text())
    assert split["train_label_counts"] == {"False": 2, "True": 2} and split["dev"] == split["train"][2:]
    history = [json.loads(line) for line in run.history.read_text().splitlines()]
    assert len(history) == 4 and all(row["value"] == row["choice_ce"] for row in history)
    selection = json.loads(run.selection.read_text())
    assert len(selection["candidates"]) == 4 and selection["chosen"] in range(4)
    results = evaluate(flags)
    assert results["best_iteration"] == selection["chosen"]
    plain = [f for f in flags if f not in ("--balancedTraining", "layer", "--angleSharing", "--selectOn", "dev:2")]
    assert cli.run_path(cli.train_flags(plain), "navigate", "NN_kernel").name == run.path.name.removesuffix(
        "_share-layer_balanced_dev2"
    )
