"""An independent, hook-based TaRot, written the paper's way, to check the folded weights against.

Nothing here is shared with rotation.py: matrices are built with Python loops, one angle at a time (as in
the paper's Utils/intervention.py), the modules are named per architecture by hand, and the rotation is
applied to activations by forward hooks instead of being folded into weights.
"""

from __future__ import annotations

import contextlib
import math

import torch

# architecture -> (path to the decoder layers, attention output projection, MLP output module)
MODULE_PATHS = {
    "llama": ("model.layers", "self_attn.o_proj", "mlp.down_proj"),
    "mistral": ("model.layers", "self_attn.o_proj", "mlp.down_proj"),
    "qwen2": ("model.layers", "self_attn.o_proj", "mlp.down_proj"),
    "phi3": ("model.layers", "self_attn.o_proj", "mlp.down_proj"),
    "gemma": ("model.layers", "self_attn.o_proj", "mlp.down_proj"),
    "gemma2": ("model.layers", "self_attn.o_proj", "mlp.down_proj"),
    "gemma3_text": ("model.layers", "self_attn.o_proj", "mlp.down_proj"),
    "gpt2": ("transformer.h", "attn.c_proj", "mlp.c_proj"),
    "gpt_neox": ("gpt_neox.layers", "attention.dense", "mlp.dense_4h_to_h"),
    "opt": ("model.decoder.layers", "self_attn.out_proj", "fc2"),
}


def rotary_loop(angles: torch.Tensor) -> torch.Tensor:
    n = angles.shape[0]
    matrix = torch.zeros(2 * n, 2 * n, dtype=torch.float64)
    for i, angle in enumerate(angles.tolist()):
        c, s = math.cos(angle), math.sin(angle)
        matrix[2 * i, 2 * i], matrix[2 * i, 2 * i + 1] = c, -s
        matrix[2 * i + 1, 2 * i], matrix[2 * i + 1, 2 * i + 1] = s, c
    return matrix


def givens_loop(angles: torch.Tensor) -> torch.Tensor:
    d = angles.shape[0] + 1
    product = torch.eye(d, dtype=torch.float64)
    flag = 0
    r = 0
    while 2**r < d:
        step = 2**r
        k = 0
        while 2 * step * k + step < d:
            i, j = 2 * step * k, 2 * step * k + step
            c, s = math.cos(angles[flag].item()), math.sin(angles[flag].item())
            flag += 1
            g = torch.eye(d, dtype=torch.float64)
            g[i, i], g[i, j], g[j, i], g[j, j] = c, -s, s, c
            product = g @ product
            k += 1
        r += 1
    assert flag == d - 1
    return product


def scale_loop(values: torch.Tensor) -> torch.Tensor:
    return torch.diag(1.0 + values.to(torch.float64))


MATRIX = {"rotary": rotary_loop, "givens": givens_loop, "scale": scale_loop}


@contextlib.contextmanager
def hooked(model, params: torch.Tensor, *, layers, module: str, method: str):
    """Rotate activations with hooks: z_h -> z_h @ R for each head, or mlp_out -> mlp_out @ R."""
    layers_path, attn_path, mlp_path = MODULE_PATHS[model.config.model_type]
    decoder = model.get_submodule(layers_path)
    handles = []
    for offset, index in enumerate(range(*layers)):
        layer = decoder[index]
        if module == "reasoning":
            heads = params.shape[1]
            matrices = [MATRIX[method](params[offset, h]) for h in range(heads)]

            def pre_hook(mod, args, matrices=matrices):
                (z,) = args
                d = matrices[0].shape[0]
                parts = z.view(*z.shape[:-1], len(matrices), d)
                rotated = torch.stack([parts[..., h, :].double() @ m.to(z.device) for h, m in enumerate(matrices)], -2)
                return (rotated.to(z.dtype).reshape(z.shape),)

            handles.append(layer.get_submodule(attn_path).register_forward_pre_hook(pre_hook))
        else:
            matrix = MATRIX[method](params[offset])

            def hook(mod, args, output, matrix=matrix):
                return (output.double() @ matrix.to(output.device)).to(output.dtype)

            handles.append(layer.get_submodule(mlp_path).register_forward_hook(hook))
    try:
        yield model
    finally:
        for handle in handles:
            handle.remove()
