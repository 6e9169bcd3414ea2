"""Tiny randomly initialised decoders of several architectures (nothing is downloaded)."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach for the hub (read at import time)

import pytest
import torch
import transformers

ROOT = Path(__file__).resolve().parent.parent

_COMMON = dict(vocab_size=97, num_hidden_layers=3, max_position_embeddings=64)
_LLAMA_LIKE = dict(hidden_size=32, intermediate_size=40, num_attention_heads=4, num_key_value_heads=2)

# name -> config. Sizes vary on purpose: grouped-query attention, head_dim * heads != hidden (Gemma 2/3),
# a head size that is not a power of two (12), biases (Qwen2's attention, GPT-2, GPT-NeoX, OPT).
TINY_CONFIGS = {
    "llama": lambda: transformers.LlamaConfig(**_COMMON, **_LLAMA_LIKE),
    "mistral": lambda: transformers.MistralConfig(**_COMMON, **_LLAMA_LIKE, sliding_window=None),
    "qwen2": lambda: transformers.Qwen2Config(**_COMMON, **_LLAMA_LIKE),
    "phi3": lambda: transformers.Phi3Config(
        **_COMMON, hidden_size=48, intermediate_size=40, num_attention_heads=4, num_key_value_heads=4, pad_token_id=0
    ),
    "gemma": lambda: transformers.GemmaConfig(**_COMMON, **_LLAMA_LIKE, head_dim=8),
    "gemma2": lambda: transformers.Gemma2Config(
        **_COMMON, hidden_size=40, intermediate_size=40, num_attention_heads=4, num_key_value_heads=2, head_dim=12
    ),
    "gemma3_text": lambda: transformers.Gemma3TextConfig(
        **_COMMON, hidden_size=40, intermediate_size=40, num_attention_heads=4, num_key_value_heads=1, head_dim=12
    ),
    "gpt2": lambda: transformers.GPT2Config(vocab_size=97, n_layer=3, n_embd=32, n_head=4, n_positions=64),
    "gpt_neox": lambda: transformers.GPTNeoXConfig(
        vocab_size=97,
        num_hidden_layers=3,
        hidden_size=32,
        num_attention_heads=4,
        intermediate_size=40,
        max_position_embeddings=64,
    ),
    "opt": lambda: transformers.OPTConfig(
        vocab_size=97,
        num_hidden_layers=3,
        hidden_size=32,
        num_attention_heads=4,
        ffn_dim=40,
        max_position_embeddings=64,
        word_embed_proj_dim=32,
    ),
}


# benchmarks/gpu_check.sh runs the tiny-model tests on a GPU with TAROT_TEST_DEVICE=cuda
DEVICE = os.environ.get("TAROT_TEST_DEVICE", "cpu")


def make_tiny_model(name: str, seed: int = 0) -> transformers.PreTrainedModel:
    torch.manual_seed(seed)
    config = TINY_CONFIGS[name]()
    config.initializer_range = 0.2  # larger than the default, so that rotations move the logits clearly
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():  # random biases everywhere, so that bias handling is really exercised
        for parameter_name, parameter in model.named_parameters():
            if parameter_name.endswith("bias"):
                parameter.normal_(0, 0.5)
    return model.to(DEVICE).eval()


@pytest.fixture(params=sorted(TINY_CONFIGS))
def tiny_model(request):
    return make_tiny_model(request.param)


@pytest.fixture(scope="session")
def smollm2():
    """The real embedded model, loaded once for every test that needs it."""
    from tarot.models import load_model

    return load_model("smollm2", device="cpu")


@pytest.fixture
def tokens():
    return torch.randint(0, 97, (2, 7), generator=torch.Generator().manual_seed(1)).to(DEVICE)


def tiny_flags(*, iterations: int, testing: int) -> list[str]:
    """Flags of a classification run on the embedded model with a tiny budget: layers 0-1, 4 training
    examples, 2 initial points."""
    return [
        "--model",
        "smollm2",
        "--layer",
        "0",
        "2",
        "--trainingDataSize",
        "4",
        "--initialPoints",
        "2",
        "--iterations",
        str(iterations),
        "--testingDataSize",
        str(testing),
        "--batchSize",
        "8",
    ]


def fails_with(capsys, main, argv, message: str) -> str:
    """Run ``main(argv)`` as a script would: it must exit 2 with one line on stderr that contains ``message``."""
    from tarot.cli import run_main

    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda: main(argv))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    return err
