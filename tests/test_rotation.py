"""rotation.py against an independent hook-based implementation, on tiny random models."""

from __future__ import annotations

import math

import pytest
import torch
import transformers

import rotation
from tarot.models import save_model
from tarot.reference import MATRIX, hooked

LAYERS = (1, 3)


# ---- matrices --------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["rotary", "givens"])
@pytest.mark.parametrize("d", [2, 8, 24, 64, 96, 128])
def test_matrices_are_rotations(method, d):
    n = rotation.num_angles(method, d)
    angles = torch.rand(5, n, dtype=torch.float64, generator=torch.Generator().manual_seed(d)) * 6 - 3
    r = rotation.rotation_matrix(angles, d, method)
    assert r.shape == (5, d, d)
    eye = torch.eye(d, dtype=torch.float64)
    torch.testing.assert_close(r @ r.transpose(-1, -2), eye.expand(5, d, d), atol=1e-12, rtol=0)
    torch.testing.assert_close(torch.linalg.det(r), torch.ones(5, dtype=torch.float64), atol=1e-10, rtol=0)
    assert torch.equal(rotation.rotation_matrix(torch.zeros(n, dtype=torch.float64), d, method), eye)
    for k in range(5):  # the batched construction equals the one-angle-at-a-time reference
        torch.testing.assert_close(r[k], MATRIX[method](angles[k]), atol=1e-12, rtol=0)


def test_matrices_are_not_trivially_identity():
    r = rotation.rotation_matrix(torch.full((7,), 0.3, dtype=torch.float64), 8, "givens")
    assert (r - torch.eye(8, dtype=torch.float64)).abs().max() > 0.1


def test_num_angles():
    assert rotation.num_angles("rotary", 64) == 32
    assert rotation.num_angles("givens", 96) == 95
    assert rotation.num_angles("scale", 24) == 24
    assert sum(len(first) for first, _ in rotation.givens_pairs(96)) == 95


def test_scale_zero_is_identity_and_diagonal():
    values = torch.tensor([0.0, 0.5, -0.25])
    assert torch.equal(rotation.scale_matrix(values), torch.diag(torch.tensor([1.0, 1.5, 0.75])))


# ---- folded weights == hooks -----------------------------------------------------------------


def _random_params(model, module, method, seed=0):
    shape = rotation.param_shape(model, layers=LAYERS, module=module, method=method)
    return torch.rand(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)) * 1.6 - 0.8


@pytest.mark.parametrize("module", ["reasoning", "mlp"])
@pytest.mark.parametrize("method", ["rotary", "givens", "scale"])
def test_folded_equals_hooked(tiny_model, tokens, module, method):
    params = _random_params(tiny_model, module, method)
    with torch.no_grad():
        base = tiny_model(tokens).logits
        with hooked(tiny_model, params, layers=LAYERS, module=module, method=method):
            expected = tiny_model(tokens).logits
        with rotation.rotated(tiny_model, params, layers=LAYERS, module=module, method=method):
            folded = tiny_model(tokens).logits
        flat = params.flatten().numpy()  # a flat numpy vector is accepted too
        with rotation.rotated(tiny_model, flat, layers=LAYERS, module=module, method=method):
            folded_flat = tiny_model(tokens).logits
    assert (expected - base).abs().max() > 1e-3, "the rotation should change the logits"
    torch.testing.assert_close(folded, expected, atol=1e-4, rtol=0)
    assert torch.equal(folded, folded_flat)


def _snapshot(model):
    return {name: p.detach().clone() for name, p in model.state_dict().items()}


def _assert_bitwise_equal(model, snapshot):
    for name, value in model.state_dict().items():
        assert torch.equal(value, snapshot[name]), name


@pytest.mark.parametrize("module", ["reasoning", "mlp"])
def test_rotated_restores_weights_bit_for_bit(tiny_model, module):
    before = _snapshot(tiny_model)
    params = _random_params(tiny_model, module, "givens")
    with rotation.rotated(tiny_model, params, layers=LAYERS, module=module, method="givens"):
        changed = any(not torch.equal(v, before[k]) for k, v in tiny_model.state_dict().items())
    assert changed
    _assert_bitwise_equal(tiny_model, before)
    with (
        pytest.raises(RuntimeError, match="boom"),
        rotation.rotated(tiny_model, params, layers=LAYERS, module=module, method="givens"),
    ):
        raise RuntimeError("boom")
    _assert_bitwise_equal(tiny_model, before)


def test_zero_angles_keep_logits(tiny_model, tokens):
    n = rotation.num_params(tiny_model, layers=LAYERS, module="reasoning", method="givens")
    with torch.no_grad():
        base = tiny_model(tokens).logits
        with rotation.rotated(tiny_model, torch.zeros(n), layers=LAYERS, module="reasoning", method="givens"):
            same = tiny_model(tokens).logits
    torch.testing.assert_close(same, base, atol=1e-5, rtol=0)


def test_fold_is_permanent_and_matches_rotated(tokens):
    from conftest import make_tiny_model

    model = make_tiny_model("qwen2")
    params = _random_params(model, "reasoning", "rotary")
    with torch.no_grad():
        with rotation.rotated(model, params, layers=LAYERS, module="reasoning", method="rotary"):
            expected = model(tokens).logits
        rotation.fold(model, params, layers=LAYERS, module="reasoning", method="rotary")
        assert torch.equal(model(tokens).logits, expected)


# ---- export ----------------------------------------------------------------------------------


class _NoTokenizer:
    """save_model saves a tokenizer too; tiny models have none, so this stands in for that call only."""

    def save_pretrained(self, path):
        pass


@pytest.mark.parametrize("name", ["llama", "gpt2", "gemma3_text"])
def test_exported_checkpoint_reproduces_rotated_logits(name, tokens, tmp_path):
    from conftest import make_tiny_model

    model = make_tiny_model(name)
    params = _random_params(model, "mlp", "givens")
    with torch.no_grad(), rotation.rotated(model, params, layers=LAYERS, module="mlp", method="givens"):
        expected = model(tokens).logits
        save_model(model, _NoTokenizer(), tmp_path / "edited", {"method": "givens"})
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "edited").eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(tokens).logits, expected, atol=1e-5, rtol=0)
    assert (tmp_path / "edited" / "model.safetensors").exists()
    assert not list(tmp_path.glob(".edited.*")), "no temporary folder is left behind"


# ---- bad input -------------------------------------------------------------------------------


def test_bad_input_errors():
    from conftest import make_tiny_model

    model = make_tiny_model("llama")
    gemma2 = make_tiny_model("gemma2")  # hidden size 40, head size 12
    good = dict(layers=(0, 2), module="reasoning", method="rotary")
    n = rotation.num_params(model, **good)
    cases = [
        (lambda: rotation.num_angles("rotary", 7), "even block size"),
        (lambda: rotation.rotated(model, torch.zeros(n + 1), **good).__enter__(), f"expected {n} parameters"),
        (
            lambda: rotation.num_params(model, layers=(0, 4), module="reasoning", method="rotary"),
            "outside the model's 3 layers",
        ),
        (lambda: rotation.num_params(model, layers=(2, 1), module="reasoning", method="rotary"), "empty"),
        (lambda: rotation.num_params(model, layers=(-1, 1), module="reasoning", method="rotary"), "outside"),
        (
            lambda: rotation.num_params(model, layers=(0, 1), module="attention", method="rotary"),
            "unknown module 'attention'",
        ),
        (
            lambda: rotation.num_params(model, layers=(0, 1), module="mlp", method="spin"),
            "unknown rotation method 'spin'",
        ),
        (lambda: rotation.rotated(model, torch.full((n,), math.nan), **good).__enter__(), "NaN"),
        (lambda: rotation.parse_angle("quarter"), "cannot read angle 'quarter'"),
        (lambda: rotation.parse_angle("1/0"), "division by zero"),
        (lambda: rotation.parse_angle("neg"), "cannot read angle"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()
    # rotary over a head of 12 works, and over d_model = 40 too; givens is the answer for odd sizes
    assert rotation.num_params(gemma2, layers=(0, 1), module="reasoning", method="rotary") == 4 * 6


def test_unsupported_architecture_is_named():
    model = transformers.AutoModelForCausalLM.from_config(
        transformers.MambaConfig(vocab_size=97, num_hidden_layers=2, hidden_size=32)
    )
    with pytest.raises(ValueError, match="unsupported architecture 'mamba'"):
        rotation.num_params(model, layers=(0, 1), module="reasoning", method="rotary")


def test_parse_angle():
    assert rotation.parse_angle("neg 1/4") == -0.25
    assert rotation.parse_angle("-1/4") == -0.25
    assert rotation.parse_angle("1/6") == pytest.approx(1 / 6)
    assert rotation.parse_angle("0.25") == 0.25
    assert rotation.parse_angle(" 1 / 4 ") == 0.25
