"""LoRA and RoAd: the trained baselines of baselines.py (peft), and their one training recipe.

Both are trained by gradient on TaRot's own training prompts (the same examples, the same shot counts) with
the cross-entropy of the answer's first token, in TaRot's layer range, on the linear layer whose output
TaRot's edit acts on:

- ``--moduleType reasoning``: the value projection. A head's output is an attention-weighted sum of its
  values, so rotating the values of a head rotates its output: RoAd there is the same family of edit as
  TaRot's, learned by gradient instead of searched. Differences: RoAd pairs element i with i + group_size/2
  (TaRot's rotary pairs 2i with 2i+1); it also scales each pair; ``group_size`` = the head size keeps each
  rotation inside one head; with grouped-query attention a value head, and so its angles, is shared by the
  query heads of its group (SmolLM2: 3 value heads for 9 query heads).
- ``--moduleType mlp``: the MLP's output projection.

The recipe was fixed before any run, from the libraries' documentation, and is the same for every task:

- lora: rank 8, alpha 16, no dropout (peft's LoraConfig defaults, with alpha = 2 x rank).
- road: variant ``road_1`` (one angle and one scale per pair of elements), group size = the head size.
- AdamW, no weight decay, every step on all training prompts at once (20 prompts: there is nothing to gain
  from mini-batches).
- The number of steps, and for RoAd the learning rate, are chosen by 2-fold cross-validation on the training
  examples only: train on one half, measure the cross-entropy on the other half every ``CHECK_EVERY`` steps
  up to ``MAX_STEPS`` (``--maxSteps``); the learning rate and step count (0 included: no training) with the
  lowest mean held-out loss are then used to train on all the training examples. No test question is seen.
- Learning rates: LoRA 1e-3. RoAd: 1e-3 or 1e-2. peft's RoAd guide advises "around 1e-3", for training
  runs of thousands of steps; at 40 steps that is too slow here: on the training folds of
  entailed_polarity, seed 0, RoAd's held-out loss was still falling steadily at step 40 (1.68 -> 1.15) where
  LoRA's bottomed out at step 15, so RoAd's cross-validation also tries 1e-2 (decided on training data).

A run records its trainable parameters, steps, seconds and every loss. A loss that is not finite, or a
final training loss above the first, marks the run ``diverged``; it is reported, not hidden.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

import rotation
from tarot.errors import UsageError
from tarot.scoring import PromptSet, trainable_logits

MAX_STEPS = 40
CHECK_EVERY = 5
FOLDS = 2
# Where the tensor TaRot rotates is produced, by attribute path inside one decoder layer.
_VALUE_NAMES = ("self_attn.v_proj", "attn.v_proj", "self_attention.v_proj", "attention.v_proj")


# the learning rates each method's cross-validation tries (see the module's docstring)
LEARNING_RATES = {"lora": (1e-3,), "road": (1e-3, 1e-2)}


@dataclass(frozen=True)
class Recipe:
    """The one recipe of a trained baseline (see the module's docstring for why these values)."""

    method: str
    learning_rates: tuple[float, ...] = ()  # the candidates; empty: the method's LEARNING_RATES
    rank: int = 8  # lora
    alpha: int = 16  # lora
    variant: str = "road_1"  # road
    max_steps: int = MAX_STEPS
    check_every: int = CHECK_EVERY
    folds: int = FOLDS

    def __post_init__(self):
        if not self.learning_rates:
            object.__setattr__(self, "learning_rates", LEARNING_RATES[self.method])

    def record(self) -> dict[str, Any]:
        fields = asdict(self) | {"learning_rates": list(self.learning_rates)}
        unused = ("variant",) if self.method == "lora" else ("rank", "alpha")
        return {key: value for key, value in fields.items() if key not in unused}


def target_modules(model: nn.Module, layers: Sequence[int], module: str) -> list[str]:
    """Full names of the linear layers to adapt: the value projections (``reasoning``) or the MLP output
    projections (``mlp``) of the layers [start, end). A range outside the model is a flag error."""
    try:
        info = rotation.layout(model)
        start, end = rotation._check_layers(layers, len(info.layers))
    except ValueError as error:
        raise UsageError(f"--layer: {error}") from None
    names = _VALUE_NAMES if module == "reasoning" else rotation._MLP_OUT_NAMES
    wanted = {}
    for index in range(start, end):
        found = rotation._find(info.layers[index], names)
        if found is None:
            raise UsageError(
                f"--moduleType {module}: layer {index} of {info.architecture!r} has no linear layer among "
                f"{', '.join(names)} for an adapter"
            )
        wanted[id(found)] = index
    return [name for name, sub in model.named_modules() if id(sub) in wanted]


def head_size(model: nn.Module) -> int:
    return rotation.layout(model).head_dim


def adapter_config(model: nn.Module, recipe: Recipe, layers: Sequence[int], module: str):
    from peft import LoraConfig, RoadConfig

    targets = target_modules(model, layers, module)
    if recipe.method == "lora":
        return LoraConfig(r=recipe.rank, lora_alpha=recipe.alpha, lora_dropout=0.0, target_modules=targets)
    return RoadConfig(variant=recipe.variant, group_size=head_size(model), target_modules=targets)


def mean_loss(model, prompts: PromptSet, rows: Sequence[int]) -> torch.Tensor:
    """Mean cross-entropy of each prompt's answer token (its first token), over the whole vocabulary."""
    logits = trainable_logits(model, prompts, rows)
    return torch.nn.functional.cross_entropy(logits, torch.tensor([prompts.answer_ids[i] for i in rows]))


def fit(
    model: nn.Module,
    prompts: PromptSet,
    rows: Sequence[int],
    steps: int,
    recipe: Recipe,
    *,
    learning_rate: float,
    layers: Sequence[int],
    module: str,
    seed: int,
    held_out: Sequence[int] = (),
    desc: str = "",
) -> tuple[Any, dict[str, Any]]:
    """Add a fresh adapter to ``model`` and train it for ``steps`` full-batch steps on the prompts ``rows``.

    This mutates the model: it returns the peft model wrapping it; ``peft_model.unload()`` gives the
    unedited model back. With ``held_out``, the loss on those prompts is measured before the first step,
    every ``recipe.check_every`` steps and after the last. Returns the peft model and its log (losses,
    seconds, parameters).
    """
    from peft import get_peft_model

    torch.manual_seed(seed)  # LoRA's A matrices start random; RoAd starts at the identity
    peft_model = get_peft_model(model, adapter_config(model, recipe, layers, module))
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=learning_rate, weight_decay=0.0)
    losses: list[float] = []
    held_out_losses: dict[int, float] = {}
    started = time.perf_counter()
    for step in tqdm(range(steps + 1), desc=desc or f"{recipe.method} steps", leave=False):
        if held_out and (step % recipe.check_every == 0 or step == steps):
            with torch.no_grad():
                held_out_losses[step] = float(mean_loss(peft_model, prompts, held_out))
        if step == steps:
            break
        loss = mean_loss(peft_model, prompts, rows)
        losses.append(float(loss.detach()))
        if not math.isfinite(losses[-1]):
            break
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    peft_model.eval()
    log = {
        "learning_rate": learning_rate,
        "steps": len(losses),
        "seconds": round(time.perf_counter() - started, 1),
        "trainable_parameters": sum(p.numel() for p in trainable),
        "train_losses": losses,
        "held_out_losses": held_out_losses,
        "diverged": diverged(losses),
    }
    return peft_model, log


def diverged(losses: Sequence[float]) -> bool:
    return bool(losses) and (not all(math.isfinite(x) for x in losses) or losses[-1] > losses[0])


def folds(count: int, parts: int, seed: int) -> list[list[int]]:
    """A seeded split of ``range(count)`` into ``parts`` interleaved folds of near-equal size."""
    order = np.random.default_rng(seed).permutation(count)
    return [sorted(int(i) for i in order[k::parts]) for k in range(parts)]


def choose(
    model: nn.Module, prompts: PromptSet, recipe: Recipe, *, layers: Sequence[int], module: str, seed: int
) -> tuple[float, int, dict[str, Any]]:
    """The learning rate and number of steps with the lowest held-out loss, averaged over the folds of the
    training prompts (ties: fewer steps, then the smaller rate). Returns them and the record of the search."""
    parts = folds(len(prompts), recipe.folds, seed)
    mean: dict[str, dict[int, float]] = {}
    logs = []
    for learning_rate in recipe.learning_rates:
        curves = []
        for k, held_out in enumerate(parts):
            rows = [i for i in range(len(prompts)) if i not in held_out]
            peft_model, log = fit(
                model, prompts, rows, recipe.max_steps, recipe, learning_rate=learning_rate, layers=layers,
                module=module, seed=seed, held_out=held_out,
                desc=f"{recipe.method} lr {learning_rate:g} fold {k + 1}/{len(parts)}",
            )  # fmt: skip
            peft_model.unload()
            curves.append(log["held_out_losses"])
            logs.append(log)
        checked = sorted(set.intersection(*(set(c) for c in curves)))
        mean[f"{learning_rate:g}"] = {step: float(np.mean([c[step] for c in curves])) for step in checked}
    candidates = [
        (value, step, learning_rate)
        for learning_rate in recipe.learning_rates
        for step, value in mean[f"{learning_rate:g}"].items()
        if math.isfinite(value)
    ]
    _, steps, learning_rate = min(candidates) if candidates else (0.0, 0, recipe.learning_rates[0])
    record = {
        "folds": parts,
        "mean_held_out_loss": mean,
        "chosen_learning_rate": learning_rate,
        "chosen_steps": steps,
        "fold_logs": logs,
    }
    return learning_rate, steps, record
