"""Classification end to end: splits, the prefix-cached objective, determinism, resume and bad input.

The scoring maths runs on tiny random models of several architectures; the scripts run on the real embedded
model with tiny budgets (a few layers, 4 training prompts, a handful of evaluations).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import ROOT, fails_with, make_tiny_model, tiny_flags

import rotation
from tarot.classification import evaluate, train
from tarot.data import load_task, make_split
from tarot.errors import UsageError
from tarot.scoring import PromptSet, _cached_logits, build_prompts, greedy_continuations, last_logits

TINY = tiny_flags(iterations=2, testing=12)


def _history(run):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in map(json.loads, run.history.open())]


# ---- prompts and the prefix cache -----------------------------------------------------------


@pytest.mark.parametrize("name", ["llama", "qwen2", "gemma2", "gemma3_text", "gpt2", "gpt_neox", "opt", "phi3"])
def test_prefix_cache_equals_plain_forward(name):
    model = make_tiny_model(name)
    rng = np.random.default_rng(0)
    prefix = rng.integers(3, 97, size=15).tolist()
    # prompts share 0, 5, 9 or 15 prefix tokens, then have their own questions of different lengths
    prompts = [
        prefix[:k] + rng.integers(3, 97, size=int(rng.integers(2, 8))).tolist() for k in (0, 5, 5, 9, 15, 15, 15)
    ]
    prompt_set = PromptSet(
        [""] * len(prompts), prompts, prefix, [1] * len(prompts), [[]] * len(prompts), [""] * len(prompts)
    )
    params = (
        torch.rand(
            rotation.param_shape(model, layers=(0, 2), module="reasoning", method="givens"),
            generator=torch.Generator().manual_seed(0),
        )
        - 0.5
    )
    with rotation.rotated(model, params, layers=(0, 2), module="reasoning", method="givens"):
        fast = last_logits(model, prompt_set, batch_size=4)  # packed, or the cache where packing fails
        cached = _cached_logits(model, prompts, prefix)
        plain = last_logits(model, prompt_set, prefix_cache=False, batch_size=3)
        alone = torch.stack([model(torch.tensor([p])).logits[0, -1] for p in prompts]).detach()
    torch.testing.assert_close(plain, alone, atol=1e-5, rtol=0)  # left padding changes nothing
    torch.testing.assert_close(cached, alone, atol=1e-5, rtol=0)
    torch.testing.assert_close(fast, alone, atol=1e-5, rtol=0)
    # packing is checked once per model; Gemma 2's attention ignores the block mask, so it falls back
    assert model._tarot_packing_works == (name != "gemma2")


@pytest.mark.parametrize("name", ["llama", "gemma2", "gpt2", "opt"])
def test_greedy_continuations_equal_generate(name):
    model = make_tiny_model(name)
    rng = np.random.default_rng(1)
    prefix = rng.integers(3, 97, size=12).tolist()
    prompts = [prefix[:k] + rng.integers(3, 97, size=int(rng.integers(2, 7))).tolist() for k in (0, 4, 12, 12, 12)]
    prompt_set = PromptSet(
        [""] * len(prompts), prompts, prefix, [1] * len(prompts), [[]] * len(prompts), [""] * len(prompts)
    )

    def generate(ids):  # one prompt at a time, the whole prompt, transformers' own greedy search
        return model.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=9, pad_token_id=0)[
            0, len(ids) :
        ].tolist()

    model.generation_config.eos_token_id = None
    unstopped = [generate(ids) for ids in prompts]
    assert greedy_continuations(model, prompt_set, 9, batch_size=4) == unstopped
    # a token one prompt writes third becomes a stop token: that prompt ends early, others may not
    model.generation_config.eos_token_id = [unstopped[2][2], 96]
    expected = [generate(ids) for ids in prompts]
    expected = [next((new[:i] for i, t in enumerate(new) if t in (unstopped[2][2], 96)), new) for new in expected]
    fast = greedy_continuations(model, prompt_set, 9, batch_size=4)
    assert fast == expected and len(fast[2]) <= 2


def test_splits_are_disjoint_and_deterministic():
    task = load_task("winowhy")  # has duplicated inputs
    split = make_split(task, train_size=20, test_size=2000, seed=3, few_shot="mix")
    ids = split.ids()
    assert len(ids["fewshot"]) == 6 and len(ids["train"]) == 20
    assert not set(ids["fewshot"]) & set(ids["train"])
    assert not (set(ids["fewshot"]) | set(ids["train"])) & set(ids["test"])
    seen_inputs = {e.input for e in split.fewshot + split.train}
    assert not any(e.input in seen_inputs for e in split.test)
    assert set(split.shots) <= {0, 2, 4, 6}
    again = make_split(task, train_size=20, test_size=2000, seed=3, few_shot="mix")
    assert again.ids() == ids and again.shots == split.shots
    assert make_split(task, train_size=20, test_size=2000, seed=4, few_shot="mix").ids() != ids
    # the test size never changes what is trained on
    assert make_split(task, train_size=20, test_size=5, seed=3, few_shot="mix").ids()["train"] == ids["train"]


# ---- the scripts on the embedded model -------------------------------------------------------


def test_train_is_deterministic_and_resumes_exactly(tmp_path):
    flags = [*TINY, "--dataset", "entailed_polarity"]
    full = train([*flags, "--outputDir", str(tmp_path / "a"), "--iterations", "4"])
    again = train([*flags, "--outputDir", str(tmp_path / "b"), "--iterations", "4"])
    assert _history(full) == _history(again)
    assert len(_history(full)) == 2 + 4
    assert _history(full)[0]["initial"] and not _history(full)[-1]["initial"]

    # interrupted after 3 evaluations (the points file holds one unlogged extra point, as after a kill
    # between its two writes), then continued with a larger --iterations
    resumed = train([*flags, "--outputDir", str(tmp_path / "c"), "--iterations", "2"])
    lines = resumed.history.read_text().splitlines()
    resumed.history.write_text("\n".join(lines[:3]) + "\n")
    train([*flags, "--outputDir", str(tmp_path / "c"), "--iterations", "4"])
    assert _history(resumed) == _history(full)

    split = json.loads(full.split.read_text())
    assert len(split["train_prompts"]) == 4 and len(split["train_answer_token_ids"]) == 4
    config = json.loads(full.config.read_text())
    assert config["num_angles"] == 2 * 9 * 32 and config["identity"]["seed"] == 0


def test_zero_rotation_is_the_unedited_model(tmp_path):
    run = train([*TINY, "--dataset", "navigate", "--outputDir", str(tmp_path)])
    first = _history(run)[0]
    assert first["logit_diff"] == pytest.approx(0.0, abs=1e-5)  # the zero point changes no logit


def test_custom_jsonl_end_to_end(tmp_path, capsys):
    data = tmp_path / "parity.jsonl"
    with data.open("w") as handle:
        for i in range(40):
            handle.write(
                json.dumps(
                    {
                        "input": f"Is {i} even or odd?",
                        "target": "even" if i % 2 == 0 else "odd",
                        "choices": ["even", "odd"],
                    }
                )
                + "\n"
            )
    flags = [
        *TINY,
        "--dataset",
        str(data),
        "--instruction",
        "Answer even or odd.",
        "--outputDir",
        str(tmp_path / "runs"),
    ]
    run = train(flags)
    results = evaluate(flags)
    assert results["n_test"] == 12 == len(results["test_ids"])
    for setting in ("zero_shot", "few_shot"):
        for who in ("base", "tarot"):
            r = results[setting][who]
            assert 0 <= r["accuracy"] <= 1 and 0 <= r["restricted_accuracy"] <= 1
            assert r["accuracy_ci95"][0] <= r["accuracy"] <= r["accuracy_ci95"][1]
    assert json.loads(run.results.read_text())["few_shot"]["base"] == results["few_shot"]["base"]
    assert set(results["test_ids"]).isdisjoint(json.loads(run.split.read_text())["train"])
    split = json.loads(run.split.read_text())
    assert "Choices: even, odd" in split["train_prompts"][0]
    # the printed table ends with the one-answer baseline: the test set's most common answer, its share
    targets = [e.target for e in load_task(str(data)).examples if e.id in results["test_ids"]]
    common = max(("even", "odd"), key=targets.count)
    baseline = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("one answer '")]
    assert len(baseline) == 1 and baseline[0][2] == f"'{common}'"
    assert float(baseline[0][3]) == pytest.approx(targets.count(common) / len(targets), abs=5e-4)


# ---- bad input: one line, exit code 2, nothing overwritten -----------------------------------


def test_bad_input(tmp_path, capsys):
    base = [*TINY, "--outputDir", str(tmp_path)]
    ep = [*base, "--dataset", "entailed_polarity"]
    fails_with(capsys, train, [*base, "--dataset", "nope"], "--dataset: unknown 'nope'")
    fails_with(capsys, train, [*ep, "--metric", "f2"], "--metric")
    fails_with(capsys, train, [*ep, "--rotationMethod", "spin"], "--rotationMethod")
    fails_with(capsys, train, [*ep, "--angle_0", "quarter"], "--angle_0/--angle_1: cannot read angle 'quarter'")
    fails_with(capsys, train, [*ep, "--angle_0", "1/4", "--angle_1", "neg 1/4"], "--angle_0 must be below")
    fails_with(capsys, train, [*ep, "--trainingDataSize", "500"], "--trainingDataSize: 500 is not possible")
    fails_with(capsys, train, [*ep, "--layer", "0", "99"], "outside the model's 30 layers")
    fails_with(capsys, train, [*ep, "--layer", "3", "1"], "--layer")
    fails_with(capsys, evaluate, ep, "run trainRotation_NN_kernel.py first")
    run = train(ep)
    history = run.history.read_text()
    capsys.readouterr()
    # another optimizer writes elsewhere, but a changed instruction in the same folder is refused
    fails_with(capsys, train, [*ep, "--instruction", "Say yes."], "holds a run with other settings")
    assert run.history.read_text() == history


def test_bad_task_files(tmp_path):
    cases = {
        '{"input": "q", "target": "a", "choices": 5}': "'choices' must be a list of non-empty strings",
        '{"input": "q", "target": "a", "choices": ["a", 1]}': "'choices' must be a list of non-empty strings",
        '{"input": "q", "target": "a", "choices": "ab"}': "'choices' must be a list of non-empty strings",
        '{"input": "q", "target": ""}': "(a non-empty answer)",
        '{"input": "q"}': "needs string fields 'input' and 'target'",
        "[1, 2]": "is not a JSON object",
    }
    for line, message in cases.items():
        path = tmp_path / "task.jsonl"
        path.write_text(line + "\n")
        with pytest.raises(UsageError, match=re.escape(message)):
            load_task(str(path))
    path.write_bytes(b'{"input": "caf\xe9", "target": "a"}\n')  # Latin-1, not UTF-8
    with pytest.raises(UsageError, match=r"--dataset: cannot read .* as UTF-8"):
        load_task(str(path))
    # every input repeated: once the demonstrations and training inputs are removed, no test example is left
    path.write_text("".join(json.dumps({"input": "same", "target": "ab"[i % 2]}) + "\n" for i in range(12)))
    with pytest.raises(UsageError, match="--trainingDataSize: no test example of task is left"):
        make_split(load_task(str(path)), train_size=2, test_size=5, seed=0, few_shot="mix")


def test_choices_with_the_same_first_token_are_an_error(tmp_path, smollm2):
    path = tmp_path / "fruit.jsonl"
    path.write_text(
        json.dumps(
            {"input": "Which dessert?", "target": "apple pie", "choices": ["apple pie", "apple tart", "cherry pie"]}
        )
        + "\n"
    )
    task = load_task(str(path))
    with pytest.raises(
        UsageError,
        match=re.escape(
            "--evalDataset: choices ['apple pie', 'apple tart'] of fruit example 0 start with the same token"
        ),
    ):
        build_prompts(smollm2[1], task, [], task.examples, [0], flag="--evalDataset")


def test_script_exit_code_and_single_line(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "trainRotation_NN_kernel.py",
            "--dataset",
            "entailed_polarity",
            "--angle_0",
            "neg 1/4",
            "--angle_1",
            "neg 1/2",
            "--outputDir",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "trainRotation_NN_kernel.py: error: --angle_0 must be below --angle_1, got 'neg 1/4' >= 'neg 1/2'"
    ]
    assert not list(tmp_path.iterdir())


def test_exact_match_ignores_case_and_restricted_uses_choices():
    from tarot.classification import classify
    from tarot.models import load_model

    _, tokenizer = load_model("smollm2", device="cpu")
    ids = {w: tokenizer(w, add_special_tokens=False)["input_ids"][0] for w in ("no", "No", "yes", "The")}
    prompts = PromptSet(
        ["", "", ""],
        [[1], [1], [1]],
        [1],
        [ids["no"], ids["yes"], ids["no"]],
        [[ids["no"], ids["yes"]]] * 3,
        ["no", "yes", "no"],
        [("no", "yes")] * 3,
    )
    logits = torch.zeros(3, len(tokenizer))
    logits[0, ids["No"]], logits[0, ids["no"]] = 5.0, 1.0  # "No" answers "no"
    logits[1, ids["The"]], logits[1, ids["yes"]] = 5.0, 1.0  # "The" is wrong, but yes beats no
    logits[2, ids["yes"]] = 5.0  # plainly wrong
    result = classify(logits, prompts, tokenizer)
    assert result["accuracy"] == pytest.approx(1 / 3)
    assert result["restricted_accuracy"] == pytest.approx(2 / 3)


def test_resume_refuses_changed_prompts_and_bad_seed(tmp_path, capsys):
    flags = [*TINY, "--dataset", "navigate", "--outputDir", str(tmp_path), "--iterations", "0"]
    run = train(flags)
    split = json.loads(run.split.read_text())
    split["train_prompts"][0] += " (edited)"
    run.split.write_text(json.dumps(split))
    capsys.readouterr()
    fails_with(capsys, train, flags, "train_prompts differ from what these flags build now")
    fails_with(capsys, evaluate, flags, "train_prompts differ from what these flags build now")
    fails_with(capsys, train, [*flags, "--seed", "-1"], "--seed must be at least 0")
    fails_with(capsys, train, [*flags, "--device", "tpu"], "--device")


def test_export_never_overwrites_a_foreign_folder(tmp_path):
    from tarot.cli import check_export_path
    from tarot.errors import UsageError

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("precious")
    with pytest.raises(UsageError, match="not an earlier TaRot export"):
        check_export_path(tmp_path / "mine")
    with pytest.raises(UsageError, match="working directory"):
        check_export_path(".")
    (tmp_path / "old_export").mkdir()
    (tmp_path / "old_export" / "tarot_edit.json").write_text("{}")
    assert check_export_path(tmp_path / "old_export") == (tmp_path / "old_export").resolve()
    assert check_export_path(tmp_path / "new") == (tmp_path / "new").resolve()


def test_eval_dataset_scores_the_other_tasks_own_test_set(tmp_path, capsys):
    ep = [*TINY, "--dataset", "entailed_polarity", "--outputDir", str(tmp_path)]
    nav = [*TINY, "--dataset", "navigate", "--outputDir", str(tmp_path)]
    run = train(ep)
    evaluate(ep)
    own = run.results.read_bytes()
    cross = evaluate([*ep, "--evalDataset", "navigate"])
    assert run.results.read_bytes() == own  # the run's own results are left alone
    assert json.loads(run.cross_results("navigate").read_text()) == cross
    assert cross["trained_on"] == "entailed_polarity" and cross["evaluated_on"] == "navigate"
    train(nav)
    navigate_own = evaluate(nav)
    # the same test examples and prompts as navigate's own evaluation, so the unedited scores agree exactly
    assert cross["test_ids"] == navigate_own["test_ids"]
    for setting in ("zero_shot", "few_shot"):
        assert cross[setting]["base"] == navigate_own[setting]["base"]
    capsys.readouterr()
    fails_with(capsys, evaluate, [*ep, "--evalDataset", "nope"], "--evalDataset: unknown 'nope'")
    fails_with(
        capsys,
        evaluate,
        [*ep, "--evalDataset", "entailed_polarity"],
        "--evalDataset: 'entailed_polarity' is the task the angles were searched on",
    )
