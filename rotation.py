"""TaRot's rotation maths, folded into a model's weights.

TaRot rotates, inside a layer range [l0, l1), either

* ``module="reasoning"``: each query head's slice ``z_h`` of the input to the attention output
  projection, ``z_h -> z_h @ R(theta[l, h])``; or
* ``module="mlp"``: the output of the MLP block, ``out -> out @ R(theta[l])`` (over d_model).

R is built by one of three methods:

* ``rotary``: block-diagonal 2x2 rotations [[cos, -sin], [sin, cos]] on the pairs (2i, 2i+1): d/2 angles.
* ``givens``: a butterfly of Givens rotations: d-1 angles. Level r = 0 .. ceil(log2 d)-1 rotates the
  pairs (i, i+2^r) for i = 2^(r+1) k while i+2^r < d, in that order; P = G_last ... G_first. For powers of
  two this is the paper's butterfly; it also covers d = 96 (Phi-3) or 24.
* ``scale``: not a rotation but the paper's extra baseline: diag(1 + v), d values (zero = identity).

Instead of hooks, the rotation is folded into the weights that consume the rotated vector: for a linear
output projection y = z W^T + b, rotating head h's input slice gives y = z_h R W_h^T, so the columns
W_h of head h become W_h R^T; for the MLP, y R = x (R^T W)^T + b R, so the down projection becomes
R^T W and its bias b R. Biases of the attention output projection are untouched. The edited model then
runs at the unedited model's speed, in batches, and can be saved as an ordinary checkpoint.

Parameters are laid out like the paper's ``params.view(L, H, N)``: (layer, head, angle) for
``reasoning`` and (layer, angle) for ``mlp``; a flat vector of that size is accepted too.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import torch
from torch import nn

# The flags' choices and the angle syntax live in a module without torch, so the scripts check flags at once.
from tarot.choices import METHODS, MODULES, SHARING
from tarot.choices import parse_angle as parse_angle  # re-exported: rotation.parse_angle

# Where the tensor TaRot rotates is consumed, by attribute path inside one decoder layer. Covers the
# Llama family (Llama, SmolLM, Mistral, Qwen2, Phi-3, Gemma 1-3), GPT-2, GPT-NeoX, OPT, Bloom and others
# that use the same names.
_ATTN_OUT_NAMES = (
    "self_attn.o_proj",
    "self_attn.dense",
    "self_attn.out_proj",
    "attn.c_proj",
    "attn.out_proj",
    "attention.dense",
    "self_attention.dense",
    "attn.o_proj",
)
_MLP_OUT_NAMES = ("mlp.down_proj", "mlp.c_proj", "mlp.dense_4h_to_h", "mlp.fc2", "fc2", "mlp.dense_out")


# ----------------------------------------------------------------------------------------------
# Rotation matrices (batched over any leading dimensions; no Python loop per angle)
# ----------------------------------------------------------------------------------------------


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown rotation method {method!r}; choose one of {', '.join(METHODS)}")


def num_angles(method: str, d: int) -> int:
    """Number of parameters of one d x d matrix of the given method."""
    _check_method(method)
    if d < 1:
        raise ValueError(f"block size must be positive, got d={d}")
    if method == "rotary":
        if d % 2:
            raise ValueError(f"rotary rotation needs an even block size, got d={d}; use method 'givens'")
        return d // 2
    if method == "givens":
        return d - 1
    return d


def rotary_matrix(angles: torch.Tensor) -> torch.Tensor:
    """(..., n) angles -> (..., 2n, 2n) block-diagonal rotation, 2x2 blocks on the pairs (2i, 2i+1)."""
    n = angles.shape[-1]
    cos, sin = torch.cos(angles), torch.sin(angles)
    blocks = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)  # (..., n, 2, 2)
    out = angles.new_zeros(*angles.shape[:-1], n, 2, n, 2)
    # The diagonal over the two block indices is a writable view of shape (..., 2, 2, n).
    out.diagonal(dim1=-4, dim2=-2).copy_(blocks.movedim(-3, -1))
    return out.reshape(*angles.shape[:-1], 2 * n, 2 * n)


@cache
def givens_pairs(d: int) -> tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]:
    """The butterfly's pairs (i, j) level by level, in the order their angles are read."""
    levels = []
    for r in range(math.ceil(math.log2(d)) if d > 1 else 0):
        step = 2**r
        first = tuple(i for i in range(0, d, 2 * step) if i + step < d)
        levels.append((first, tuple(i + step for i in first)))
    return tuple(levels)


def givens_matrix(angles: torch.Tensor) -> torch.Tensor:
    """(..., d-1) angles -> (..., d, d) butterfly product of Givens rotations, P = G_last ... G_first.

    Within a level the pairs are disjoint, so one level is one matrix built at once; levels multiply
    on the left, as in the paper (``P = G @ P``).
    """
    d = angles.shape[-1] + 1
    batch = angles.shape[:-1]
    eye = torch.eye(d, dtype=angles.dtype, device=angles.device)
    product = eye.expand(*batch, d, d).clone()
    start = 0
    for first, second in givens_pairs(d):
        i = torch.tensor(first, device=angles.device)
        j = torch.tensor(second, device=angles.device)
        theta = angles[..., start : start + len(first)]
        start += len(first)
        level = eye.expand(*batch, d, d).clone()
        cos, sin = torch.cos(theta), torch.sin(theta)
        level[..., i, i] = cos
        level[..., i, j] = -sin
        level[..., j, i] = sin
        level[..., j, j] = cos
        product = level @ product
    return product


def scale_matrix(values: torch.Tensor) -> torch.Tensor:
    """(..., d) values -> (..., d, d) diagonal diag(1 + v): zero parameters leave the model unchanged."""
    return torch.diag_embed(1.0 + values)


def rotation_matrix(params: torch.Tensor, d: int, method: str) -> torch.Tensor:
    """(..., num_angles(method, d)) parameters -> (..., d, d) matrices."""
    n = num_angles(method, d)
    if params.shape[-1] != n:
        raise ValueError(f"{method} matrices of size {d} take {n} parameters each, got {params.shape[-1]}")
    if method == "rotary":
        return rotary_matrix(params)
    if method == "givens":
        return givens_matrix(params)
    return scale_matrix(params)


# ----------------------------------------------------------------------------------------------
# Where the rotated tensors live in a Hugging Face decoder
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Site:
    """One weight (and bias) to fold a rotation into, for one decoder layer."""

    layer: int
    module: nn.Module
    transposed: bool  # True for GPT-2's Conv1D, whose weight is (in, out) and computes x @ W + b


@dataclass(frozen=True)
class Layout:
    """The decoder layers of a model and the sizes TaRot needs."""

    architecture: str
    layers: tuple[nn.Module, ...]
    num_heads: int
    head_dim: int
    hidden_size: int


def _architecture(model: nn.Module) -> str:
    config = getattr(model, "config", None)
    return getattr(config, "model_type", None) or type(model).__name__


def _text_config(model: nn.Module) -> Any:
    config: Any = model.config
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def _decoder_layers(model: nn.Module) -> tuple[nn.Module, ...]:
    """The ModuleList holding the decoder blocks: found by structure, not by model name."""
    count = getattr(_text_config(model), "num_hidden_layers", None)
    for _, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == count and count:
            return tuple(module)
    raise ValueError(f"unsupported architecture {_architecture(model)!r}: found no list of {count} decoder layers")


def _find(layer: nn.Module, names: Sequence[str]) -> nn.Module | None:
    for name in names:
        try:
            module = layer.get_submodule(name)
        except AttributeError:
            continue
        weight = getattr(module, "weight", None)
        if isinstance(weight, torch.Tensor) and weight.dim() == 2:
            return module
    return None


def _weight(module: nn.Module) -> torch.Tensor:
    """A linear layer's weight (``nn.Module.__getattr__`` is typed as tensor-or-module)."""
    weight = module.weight
    assert isinstance(weight, torch.Tensor)
    return weight


def _is_conv1d(module: nn.Module) -> bool:
    return type(module).__name__ == "Conv1D"


def layout(model: nn.Module) -> Layout:
    """Describe the model's decoder, or raise a ValueError naming the unsupported architecture."""
    layers = _decoder_layers(model)
    out = _find(layers[0], _ATTN_OUT_NAMES)
    if out is None:
        raise ValueError(
            f"unsupported architecture {_architecture(model)!r}: no attention output "
            f"projection among {', '.join(_ATTN_OUT_NAMES)}"
        )
    config = _text_config(model)
    num_heads = config.num_attention_heads
    in_features = _weight(out).shape[0] if _is_conv1d(out) else _weight(out).shape[1]
    if in_features % num_heads:
        raise ValueError(
            f"unsupported architecture {_architecture(model)!r}: attention output "
            f"projection takes {in_features} features, not a multiple of {num_heads} heads"
        )
    return Layout(_architecture(model), layers, num_heads, in_features // num_heads, config.hidden_size)


def _sites(model: nn.Module, layers: Sequence[int], module: str) -> tuple[Layout, list[Site]]:
    if module not in MODULES:
        raise ValueError(f"unknown module {module!r}; choose one of {', '.join(MODULES)}")
    info = layout(model)
    l0, l1 = _check_layers(layers, len(info.layers))
    names = _ATTN_OUT_NAMES if module == "reasoning" else _MLP_OUT_NAMES
    sites = []
    for index in range(l0, l1):
        found = _find(info.layers[index], names)
        if found is None:
            raise ValueError(
                f"unsupported architecture {info.architecture!r}: layer {index} has no "
                f"{'attention output projection' if module == 'reasoning' else 'MLP output'} "
                f"among {', '.join(names)}"
            )
        sites.append(Site(index, found, _is_conv1d(found)))
    return info, sites


def _check_layers(layers: Sequence[int], count: int) -> tuple[int, int]:
    try:
        l0, l1 = (int(x) for x in layers)
    except (TypeError, ValueError):
        raise ValueError(f"layers must be two integers (start, end), got {layers!r}") from None
    if not 0 <= l0 < l1 <= count:
        raise ValueError(
            f"layer range [{l0}, {l1}) is empty or outside the model's {count} layers; need 0 <= start < end <= {count}"
        )
    return l0, l1


def _block_and_shape(info: Layout, layer_count: int, module: str, method: str) -> tuple[int, tuple[int, ...]]:
    """The matrix size d and the parameter shape: (layer, head, angle) or (layer, angle)."""
    if module == "reasoning":
        return info.head_dim, (layer_count, info.num_heads, num_angles(method, info.head_dim))
    return info.hidden_size, (layer_count, num_angles(method, info.hidden_size))


def param_shape(
    model: nn.Module, *, layers: Sequence[int], module: str, method: str, sharing: str = "none"
) -> tuple[int, ...]:
    """(layer, head, angle) for ``reasoning``, (layer, angle) for ``mlp``; with ``sharing`` the shared axes
    have size 1: ``"layer"``, one set per layer shared by its heads, (layer, 1, angle); ``"all"``, one set
    for every layer and head, (1, 1, angle) or (1, angle). Fold and rotate broadcast them."""
    if sharing not in SHARING:
        raise ValueError(f"unknown sharing {sharing!r}; choose one of {', '.join(SHARING)}")
    info, sites = _sites(model, tuple(layers), module)
    shape = _block_and_shape(info, len(sites), module, method)[1]
    if sharing == "layer" and module == "reasoning":
        return (shape[0], 1, shape[2])
    if sharing == "all":
        return (1,) * (len(shape) - 1) + (shape[-1],)
    return shape


def num_params(model: nn.Module, *, layers: Sequence[int], module: str, method: str) -> int:
    """How many angles the search has for this layer range, module and method."""
    return math.prod(param_shape(model, layers=layers, module=module, method=method))


# ----------------------------------------------------------------------------------------------
# Folding
# ----------------------------------------------------------------------------------------------


def _as_tensor(params, shape: tuple[int, ...]) -> torch.Tensor:
    """The parameters laid out as ``shape``: a flat vector or that shape, or a shared layout (one of
    :data:`SHARING`'s shapes, with size 1 on the shared axes), broadcast over the shared axes."""
    if isinstance(params, torch.Tensor):
        tensor = params.detach().to("cpu", torch.float64)
    else:
        tensor = torch.as_tensor(np.asarray(params, dtype=np.float64))
    if not torch.isfinite(tensor).all():
        raise ValueError("parameters contain NaN or infinity")
    if tensor.dim() == len(shape) and tuple(tensor.shape) != shape:
        if all(have in (1, want) for have, want in zip(tensor.shape, shape, strict=True)):
            return tensor.expand(shape)
        raise ValueError(f"parameters of shape {tuple(tensor.shape)} cannot be shared over the shape {shape}")
    expected = math.prod(shape)
    if tensor.numel() != expected:
        raise ValueError(f"expected {expected} parameters laid out as {shape}, got {tensor.numel()}")
    return tensor.reshape(shape)


@torch.no_grad()
def _folded(site: Site, matrices: torch.Tensor, module: str) -> dict[str, torch.Tensor]:
    """New weight (and bias) of one site, computed in float64 and cast back to the site's dtype."""
    weight = _weight(site.module)
    if weight.device.type == "meta":
        raise ValueError(
            f"layer {site.layer}'s weights are offloaded (on the meta device); "
            f"load the model without disk offload to edit it"
        )
    w = weight.detach().to(torch.float64)
    r = matrices.to(w.device)
    new: dict[str, torch.Tensor] = {}
    if module == "reasoning":
        heads, d = r.shape[0], r.shape[-1]
        if site.transposed:  # Conv1D: W is (in, out); head h's rows become R_h W_h.
            w = torch.einsum("hek,hko->heo", r, w.view(heads, d, -1)).reshape(w.shape)
        else:  # Linear: W is (out, in); head h's columns become W_h R_h^T.
            w = torch.einsum("ohk,hek->ohe", w.view(w.shape[0], heads, d), r).reshape(w.shape)
    else:
        w = w @ r if site.transposed else r.T @ w
        bias = getattr(site.module, "bias", None)
        if bias is not None:
            new["bias"] = (bias.detach().to(torch.float64) @ r).to(bias.dtype)
    new["weight"] = w.to(weight.dtype)
    return new


def _fold_all(model: nn.Module, params, layers, module: str, method: str) -> list[tuple[Site, dict]]:
    info, sites = _sites(model, tuple(layers), module)
    d, shape = _block_and_shape(info, len(sites), module, method)
    matrices = rotation_matrix(_as_tensor(params, shape), d, method)
    return [(site, _folded(site, matrices[i], module)) for i, site in enumerate(sites)]


def _write(site: Site, tensors: dict[str, torch.Tensor]) -> None:
    for name, value in tensors.items():
        getattr(site.module, name).data.copy_(value)


@torch.no_grad()
def fold(model: nn.Module, params, *, layers: Sequence[int], module: str, method: str) -> nn.Module:
    """Fold the rotation into the model's weights permanently. **This mutates the model.**

    Use it to export an edited model; for trying candidates use :func:`rotated`, which restores.
    """
    for site, tensors in _fold_all(model, params, layers, module, method):
        _write(site, tensors)
    return model


@contextlib.contextmanager
def rotated(model: nn.Module, params, *, layers: Sequence[int], module: str, method: str) -> Iterator[nn.Module]:
    """Context manager: the model with the rotation folded in; original weights restored bit for bit on exit.

    **This mutates the model while inside the block** (no copy is made, so it costs no memory beyond the
    touched weights). Restoration also happens when the body raises.
    """
    folded = _fold_all(model, params, layers, module, method)  # validates everything before touching
    saved = [
        (site, {name: getattr(site.module, name).detach().clone() for name in tensors}) for site, tensors in folded
    ]
    try:
        with torch.no_grad():
            for site, tensors in folded:
                _write(site, tensors)
        yield model
    finally:
        with torch.no_grad():
            for site, tensors in saved:
                _write(site, tensors)
