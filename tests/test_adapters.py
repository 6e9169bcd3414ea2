"""LoRA and RoAd (tarot/adapters.py): RoAd on the value projections against TaRot's own fold of per-head
rotations, training on tiny random models, the cross-validated choice of steps, and the baselines.py runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import ROOT, fails_with, make_tiny_model, tiny_flags

import rotation
from tarot import adapters, baselines
from tarot.classification import evaluate, train
from tarot.scoring import PromptSet, last_logits

# the tiny architectures with a separate value projection (Phi-3, GPT-2, GPT-NeoX and OPT fuse or name it otherwise)
WITH_VALUES = ["gemma", "gemma2", "gemma3_text", "llama", "mistral", "qwen2"]


def road_matrix(theta: np.ndarray, alpha: np.ndarray, group: int) -> np.ndarray:
    """RoAd's road_1 map of one value vector, y = M x, written out from the paper's equation: within each group
    of ``group`` elements, element j and j + group/2 are rotated by theta and scaled by alpha (one pair each)."""
    d = theta.size * 2
    m = np.zeros((d, d))
    half = group // 2
    for pair in range(theta.size):
        g, j = divmod(pair, half)
        a, b = g * group + j, g * group + j + half
        c, s = np.cos(theta[pair]) * alpha[pair], np.sin(theta[pair]) * alpha[pair]
        m[a, a], m[a, b], m[b, a], m[b, b] = c, -s, s, c
    return m


@pytest.mark.parametrize("name", WITH_VALUES)
def test_road_on_the_values_is_tarots_per_head_rotation_of_the_head_outputs(name, tokens):
    """A head's output is an attention-weighted sum of its values, so RoAd on v_proj (rotating and scaling the
    values of each key/value head) equals folding, into the output projection, the same map of every query
    head's output: what TaRot's ``reasoning`` edit does with its own rotations."""
    model = make_tiny_model(name)
    info = rotation.layout(model)
    layers = (1, 3)
    reference = make_tiny_model(name)
    generator = torch.Generator().manual_seed(3)
    peft_model, _ = adapters.fit(
        model, _prompts([[1, 2, 3]]), [0], 0, adapters.Recipe("road"), learning_rate=1e-3, layers=layers,
        module="reasoning", seed=0,
    )  # fmt: skip
    sites = rotation._sites(reference, layers, "reasoning")[1]
    for site in sites:
        v_proj = peft_model.base_model.model.get_submodule(
            adapters.target_modules(reference, (site.layer, site.layer + 1), "reasoning")[0]
        )
        theta, alpha = v_proj.road_theta["default"], v_proj.road_alpha["default"]
        with torch.no_grad():
            theta.copy_(torch.rand(theta.shape, generator=generator) * 2 - 1)
            alpha.copy_(0.5 + torch.rand(alpha.shape, generator=generator))
        per_kv_head = road_matrix(theta.detach().double().numpy(), alpha.detach().double().numpy(), info.head_dim)
        d = info.head_dim
        kv_heads = per_kv_head.shape[0] // d
        # query head h reads key/value head h // (heads per group); its output z -> z M^T (row vectors)
        matrices = torch.tensor(
            np.stack(
                [
                    per_kv_head[k * d : (k + 1) * d, k * d : (k + 1) * d].T
                    for k in (h // (info.num_heads // kv_heads) for h in range(info.num_heads))
                ]
            )
        )
        rotation._write(site, rotation._folded(site, matrices, "reasoning"))
    with torch.no_grad():
        expected = reference(tokens).logits
        got = peft_model(input_ids=tokens).logits
    assert (got - expected).abs().max() < 1e-4 * expected.abs().max()
    assert (got - make_tiny_model(name)(tokens).logits).abs().max() > 1e-2  # the edit does change the model


def _prompts(prompt_ids: list[list[int]], answers: list[int] | None = None) -> PromptSet:
    answers = answers or [5] * len(prompt_ids)
    return PromptSet([""] * len(prompt_ids), prompt_ids, [], answers, [[]] * len(prompt_ids), [""] * len(prompt_ids))


@pytest.mark.parametrize("method", ["lora", "road"])
@pytest.mark.parametrize("name", ["llama", "qwen2"])
def test_training_lowers_the_training_loss_and_unload_gives_the_model_back(method, name, tokens):
    model = make_tiny_model(name)
    before = model(tokens).logits.detach()
    prompts = _prompts([[1, 2, 3, 4], [1, 2, 7], [1, 9, 9, 9, 4], [1, 2, 3, 8]], [5, 6, 5, 6])
    peft_model, log = adapters.fit(
        model, prompts, range(4), 20, adapters.Recipe(method), learning_rate=3e-2, layers=(0, 2), module="reasoning",
        seed=0,
    )  # fmt: skip
    assert log["steps"] == 20 and not log["diverged"]
    assert log["train_losses"][-1] < 0.8 * log["train_losses"][0]
    # the loss is the cross-entropy of the answer tokens after each prompt, each prompt run alone
    with torch.no_grad():
        alone = torch.stack([peft_model(input_ids=torch.tensor([ids])).logits[0, -1] for ids in prompts.prompt_ids])
    expected = torch.nn.functional.cross_entropy(alone, torch.tensor(prompts.answer_ids))
    assert float(adapters.mean_loss(peft_model, prompts, range(4))) == pytest.approx(float(expected), rel=1e-4)
    per_layer = {"lora": 8 * 32 + 16 * 8, "road": 16}  # rank 8, 32 -> 16 values; road_1: an angle+scale per pair
    assert log["trainable_parameters"] == 2 * per_layer[method]
    assert torch.equal(peft_model.unload()(tokens).logits.detach(), before)


def test_rate_and_steps_are_chosen_by_the_mean_held_out_loss_of_the_folds(tokens):
    model = make_tiny_model("llama")
    prompts = _prompts([[1, 2, 3 + i % 5, 4 + i % 3] for i in range(8)], [5 + i % 2 for i in range(8)])
    recipe = adapters.Recipe("lora", learning_rates=(3e-2, 1e-1), max_steps=7, check_every=3)
    rate, steps, record = adapters.choose(model, prompts, recipe, layers=(0, 3), module="reasoning", seed=1)
    folds = record["folds"]
    assert sorted(i for fold in folds for i in fold) == list(range(8)) and len(folds) == 2
    logs = record["fold_logs"]
    assert [log["learning_rate"] for log in logs] == [3e-2, 3e-2, 1e-1, 1e-1]
    assert all(sorted(log["held_out_losses"]) == [0, 3, 6, 7] for log in logs)
    mean = {
        (lr, s): (logs[2 * k]["held_out_losses"][s] + logs[2 * k + 1]["held_out_losses"][s]) / 2
        for k, lr in enumerate((3e-2, 1e-1))
        for s in (0, 3, 6, 7)
    }
    assert (rate, steps) == min(mean, key=mean.__getitem__)
    assert (record["chosen_learning_rate"], record["chosen_steps"]) == (rate, steps)
    assert record["mean_held_out_loss"]["0.1"][3] == pytest.approx(mean[(1e-1, 3)])
    assert not hasattr(model, "peft_config")  # every fold's adapter was removed again


def test_a_layer_range_the_model_lacks_and_fused_value_projections_are_flag_errors():
    with pytest.raises(adapters.UsageError, match=r"--layer: layer range \[0, 9\)"):
        adapters.target_modules(make_tiny_model("llama"), (0, 9), "reasoning")
    with pytest.raises(adapters.UsageError, match="--moduleType reasoning: layer 0 of 'gpt2' has no linear layer"):
        adapters.target_modules(make_tiny_model("gpt2"), (0, 1), "reasoning")
    names = adapters.target_modules(make_tiny_model("llama"), (1, 3), "mlp")
    assert names == ["model.layers.1.mlp.down_proj", "model.layers.2.mlp.down_proj"]


TINY = tiny_flags(iterations=0, testing=12)


def test_lora_baseline_on_the_embedded_model(tmp_path, smollm2):
    flags = [*TINY, "--dataset", "entailed_polarity", "--outputDir", str(tmp_path)]
    results = baselines.run([*flags, "--method", "lora", "--maxSteps", "2"])
    train(flags)
    tarot = evaluate(flags)
    assert results["test_ids"] == tarot["test_ids"]
    training = results["training"]
    assert training["recipe"] == {
        "method": "lora", "learning_rates": [1e-3], "rank": 8, "alpha": 16, "max_steps": 2, "check_every": 5,
        "folds": 2,
    }  # fmt: skip
    assert training["steps"] == training["cross_validation"]["chosen_steps"] in (0, 2)
    assert training["trainable_parameters"] == 2 * 8 * (576 + 192)  # layers 0-1, v_proj 576 -> 192
    for setting in ("zero_shot", "few_shot"):
        base, lora = results[setting]["base"], results[setting]["lora"]
        assert base == tarot[setting]["base"]
        assert set(lora["paired_ci95"]) == {"accuracy", "f1", "restricted_accuracy", "restricted_f1"}
        low, high = lora["paired_ci95"]["accuracy"]
        assert low <= lora["accuracy"] - base["accuracy"] <= high
    folder = tmp_path / "smollm2" / "entailed_polarity" / "Baseline_lora_mix_n4_seed0"
    assert json.loads((folder / "results.json").read_text()) == json.loads(json.dumps(results))
    assert (folder / baselines.ADAPTER_FILE).exists()
    # the same flags again: the same adapter and the same answers (training is deterministic)
    again = baselines.run([*flags, "--method", "lora", "--maxSteps", "2"])
    assert again["few_shot"]["lora"]["predictions"] == results["few_shot"]["lora"]["predictions"]
    assert again["training"]["train_losses"] == training["train_losses"]


def test_trained_baseline_bad_input(tmp_path, capsys):
    flags = [*TINY, "--dataset", "navigate", "--outputDir", str(tmp_path)]
    fails_with(
        capsys, baselines.run, [*flags, "--method", "road", "--layer", "0", "99"], "--layer: layer range [0, 99)"
    )
    fails_with(capsys, baselines.run, [*flags, "--method", "lora", "--maxSteps", "0"], "--maxSteps")
    assert not any(tmp_path.glob("smollm2/**/results.json"))


def test_the_scored_logits_of_an_adapted_model_are_its_logits_alone(smollm2):
    """last_logits packs the prompts under a block mask: with a peft adapter in, each prompt must still get
    the logits it gets alone."""
    model, tokenizer = smollm2
    prompts = _prompts([tokenizer.encode(t) for t in ("Is the sky blue?", "Is grass red? Answer:", "Hi")])
    prompts.prefix_ids = tokenizer.encode("Is the sky")
    peft_model, _ = adapters.fit(
        model, prompts, range(3), 1, adapters.Recipe("road"), learning_rate=1e-1, layers=(0, 2), module="reasoning",
        seed=0,
    )  # fmt: skip
    try:
        packed = last_logits(peft_model, prompts, batch_size=8)
        with torch.no_grad():
            alone = torch.stack([peft_model(input_ids=torch.tensor([ids])).logits[0, -1] for ids in prompts.prompt_ids])
        assert (packed - alone).abs().max() < 1e-3
    finally:
        peft_model.unload()


def test_a_trained_baseline_killed_mid_training_leaves_nothing_and_starts_again(tmp_path):
    flags = [*TINY, "--dataset", "entailed_polarity", "--outputDir", str(tmp_path), "--method", "road"]
    process = subprocess.Popen(
        [sys.executable, "baselines.py", *flags, "--maxSteps", "200"], cwd=ROOT, stderr=subprocess.PIPE
    )
    try:
        assert process.stderr is not None
        seen = b""
        while b"| 3/201" not in seen and process.poll() is None:  # kill after three training steps
            seen += os.read(process.stderr.fileno(), 256)
        process.kill()
        process.wait()
    finally:
        if process.poll() is None:
            process.kill()
    assert b"fold 1/2" in seen and b"| 3/201" in seen, seen[-500:]
    folder = tmp_path / "smollm2" / "entailed_polarity" / "Baseline_road_mix_n4_seed0"
    assert sorted(p.name for p in folder.iterdir()) == [".run.lock"]  # no config, results or adapter
    results = baselines.run([*flags, "--maxSteps", "2"])  # the same folder, from the beginning
    assert results["training"]["recipe"]["max_steps"] == 2 and (folder / "results.json").exists()
