"""TaRot on open-ended generation scored by a reward (train_summarization.py / test_summarization.py).

``imdb``: the model continues the first 2-8 tokens of an IMDB review; reward = P(positive) of prompt +
continuation. ``toxicity``: it continues a RealToxicityPrompts prompt; reward = 1 - toxicity of the
continuation. ``xsum``: it summarises a news article in one sentence; reward = ROUGE-L F1 against the
reference. Sampling uses a fixed seed per call, so the objective is a deterministic function of the angles
and the unedited and edited models are compared on the same random draws.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

import rotation
from tarot import cli
from tarot.choices import DEFAULT_SCORERS as DEFAULT_SCORERS  # re-exported: each task's --scorer
from tarot.data import DATA_DIR, XSUM_INSTRUCTION, file_fingerprint
from tarot.errors import UsageError
from tarot.models import load_model, model_device
from tarot.results import GenerationResults, GenerationScores, write_generation
from tarot.runs import RunDir, read_jsonl, write_jsonl
from tarot.scorers import make_scorer
from tarot.scoring import render
from tarot.search import best_angles, start_search
from tarot.stats import summary

RUN_KIND = "Generation"
DATA_FILES = {"imdb": "imdb_prompts.jsonl", "toxicity": "toxicity_prompts.jsonl", "xsum": "xsum.jsonl"}
XSUM_MAX_CHARS = 1200  # keeps prompts near 300 tokens: the search generates for every prompt per candidate


@dataclass(frozen=True)
class GenerationExample:
    id: int
    prompt: str  # the text the model sees (a chat prompt for xsum)
    shown: str  # what a reader sees as the prompt (the review's start, the article)
    new_tokens: int
    chat: bool  # the prompt is a chat-template prompt (xsum), else raw text to continue
    reference: str | None = None


def load_prompts(dataset: str, tokenizer, seed: int, instruction: str | None = None) -> list[GenerationExample]:
    """All examples of a generation dataset, in a seeded order, prompts built for this tokenizer."""
    if dataset not in DATA_FILES:
        raise UsageError(f"--dataset: unknown {dataset!r}; choose one of {', '.join(DATA_FILES)}")
    rows = read_jsonl(DATA_DIR / DATA_FILES[dataset])
    rng = np.random.default_rng(seed)
    rows = [rows[i] for i in rng.permutation(len(rows))]
    examples = []
    for row in rows:
        if dataset == "xsum":
            article = row["document"][:XSUM_MAX_CHARS].rsplit(" ", 1)[0]
            prompt = render(tokenizer, instruction or XSUM_INSTRUCTION, [], article)
            examples.append(GenerationExample(row["id"], prompt, article, 40, True, row["summary"]))
            continue
        if dataset == "imdb":  # the paper's prompt: the review's first 2-8 tokens
            ids = tokenizer(row["text"], add_special_tokens=False)["input_ids"][: int(rng.integers(2, 9))]
            text = tokenizer.decode(ids)
        else:
            text = row["text"]
        examples.append(GenerationExample(row["id"], text, text, int(rng.integers(10, 26)), False))
    return examples


@torch.no_grad()
def generate(
    model,
    tokenizer,
    prompts: list[str],
    new_tokens: list[int],
    *,
    chat: bool,
    seed: int,
    batch_size: int,
    sample: bool = True,
) -> list[str]:
    """Continue every prompt (left-padded batches), ``new_tokens[i]`` tokens at most. The RNG is reseeded
    per batch, so a result never depends on what ran before. ``chat``: the prompts already hold the chat
    template's special tokens (else the tokenizer adds its own, e.g. BOS)."""
    device = model_device(model)
    side, tokenizer.padding_side = tokenizer.padding_side, "left"  # the new tokens all start at one column
    # plain sampling from the full distribution (the model's own generation_config may set top-k/p);
    # greedy decoding unsets the sampling flags, which transformers would otherwise warn about
    sampling = dict(top_k=0, top_p=1.0, temperature=1.0) if sample else dict(top_k=None, top_p=None, temperature=None)
    outputs = []
    starts = range(0, len(prompts), batch_size)
    try:
        for start in tqdm(starts, desc="generate", unit="batch", leave=False, disable=len(starts) < 2):
            encoded = tokenizer(
                prompts[start : start + batch_size], return_tensors="pt", padding=True, add_special_tokens=not chat
            ).to(device)
            lengths = new_tokens[start : start + batch_size]
            torch.manual_seed(seed * 100_003 + start)
            generated = model.generate(
                **encoded,
                do_sample=sample,
                **sampling,
                max_new_tokens=max(lengths),
                pad_token_id=tokenizer.pad_token_id,
            )
            for row, length in enumerate(lengths):
                new = generated[row, encoded["input_ids"].shape[1] :][:length]
                outputs.append(tokenizer.decode(new, skip_special_tokens=True))
    finally:
        tokenizer.padding_side = side
    return outputs


def continue_examples(model, tokenizer, examples: list[GenerationExample], *, seed: int, batch_size: int):
    return generate(
        model,
        tokenizer,
        [e.prompt for e in examples],
        [e.new_tokens for e in examples],
        chat=examples[0].chat,
        seed=seed,
        batch_size=batch_size,
    )


def rewards(scorer, dataset: str, examples: list[GenerationExample], continuations: list[str]) -> list[float]:
    if dataset == "imdb":  # sentiment of the whole review-so-far, as in the paper
        return scorer([e.shown + c for e, c in zip(examples, continuations, strict=True)])
    if dataset == "xsum":
        return scorer([c.strip().split("\n")[0] for c in continuations], [e.reference for e in examples])
    return scorer(continuations)


@torch.no_grad()
def perplexity(model, tokenizer, examples: list[GenerationExample], continuations: list[str]) -> float:
    """Perplexity of the continuations given their prompts under ``model``: exp(mean token NLL)."""
    device = model_device(model)
    total_nll, total_tokens = 0.0, 0
    for example, text in zip(examples, continuations, strict=True):
        prompt_ids = tokenizer(example.prompt, add_special_tokens=not example.chat)["input_ids"]
        new_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if not new_ids:
            continue
        ids = torch.tensor([prompt_ids + new_ids], device=device)
        logits = model(ids).logits[0, len(prompt_ids) - 1 : -1].float()
        nll = torch.nn.functional.cross_entropy(logits, ids[0, len(prompt_ids) :], reduction="sum")
        total_nll += float(nll)
        total_tokens += len(new_ids)
    return float(np.exp(total_nll / total_tokens)) if total_tokens else float("nan")


def distinct_2(continuations: list[str]) -> float:
    """Distinct word bigrams over all bigrams of all continuations (diversity)."""
    bigrams = [
        tuple(words[i : i + 2])
        for text in continuations
        for words in [text.lower().split()]
        for i in range(len(words) - 1)
    ]
    return len(set(bigrams)) / len(bigrams) if bigrams else 0.0


# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Data:
    name: str
    fingerprint: str


def _identity(args) -> dict:
    # Sampling draws per batch, so the batch size changes the rewards: it is part of what a run is.
    data = _Data(args.dataset, file_fingerprint(DATA_DIR / DATA_FILES[args.dataset]))
    return cli.identity(args, data) | {"scorer": args.scorer, "batchSize": args.batchSize}


def _run(args) -> RunDir:
    """The run folder of these flags (checked by tarot/cli.py generation_flags), which must fit a run there."""
    run = RunDir(cli.run_path(args, args.dataset, RUN_KIND))
    run.check_identity(_identity(args))
    run.read_history()  # a damaged history is reported before the model loads
    return run


def _setup(args):
    scorer = make_scorer(args.scorer)  # the name and its fit to the dataset were checked with the flags
    model, tokenizer = load_model(args.model, dtype=args.dtype, device=args.device)
    examples = load_prompts(args.dataset, tokenizer, args.seed, args.instruction)
    if args.trainingDataSize >= len(examples):
        raise UsageError(
            f"--trainingDataSize: {args.dataset} has {len(examples)} prompts; allowed 1..{len(examples) - 1}"
        )
    return scorer, model, tokenizer, examples


def _split_record(train_set: list[GenerationExample]) -> dict:
    return {"train": [e.id for e in train_set], "train_prompts": [e.prompt for e in train_set]}


def train(argv=None) -> RunDir:
    args = cli.generation_train_flags(argv)
    run = _run(args)
    with run.locked():  # before the model loads: a second search of this folder stops at once
        _search(args, run)
    return run


def _search(args, run: RunDir) -> None:
    scorer, model, tokenizer, examples = _setup(args)
    shape = cli.angle_shape(model, args)
    train_set = examples[: args.trainingDataSize]
    edit = dict(layers=args.layer, module=args.moduleType, method=args.rotationMethod)

    def objective(angles: np.ndarray) -> dict:
        with rotation.rotated(model, angles.reshape(shape), **edit):
            texts = continue_examples(model, tokenizer, train_set, seed=args.seed, batch_size=args.batchSize)
        return {"reward": float(np.mean(rewards(scorer, args.dataset, train_set, texts)))}

    start_search(
        run,
        args,
        _identity(args),
        shape,
        _split_record(train_set),
        objective,
        what=f"{args.dataset} ({args.scorer}), {len(train_set)} prompts",
    )


def evaluate(argv=None) -> GenerationResults:
    args = cli.generation_evaluate_flags(argv)
    run = _run(args)
    run.require_search("train_summarization.py")
    with run.locked(run.results):  # other evaluations of this run may go on, not its search nor another of these
        return _evaluate(args, run)


def _evaluate(args, run: RunDir) -> GenerationResults:
    scorer, model, tokenizer, examples = _setup(args)
    train_set = examples[: args.trainingDataSize]
    run.require_trained(_split_record(train_set), "train_summarization.py")
    shape = cli.angle_shape(model, args)
    angles, best = best_angles(run, shape)
    seen = {e.prompt for e in train_set}  # short imdb prompts ("This movie") can repeat
    test = [e for e in examples[args.trainingDataSize :] if e.prompt not in seen][: args.testingDataSize]
    if not test:
        raise UsageError(
            f"--trainingDataSize: no held-out prompt of {args.dataset} is left after the "
            f"{len(train_set)} training prompts"
        )
    if len(test) < args.testingDataSize:
        print(f"note: only {len(test)} held-out prompts remain (asked for {args.testingDataSize})", file=sys.stderr)
    base_texts = continue_examples(model, tokenizer, test, seed=args.seed + 1, batch_size=args.batchSize)
    with rotation.rotated(model, angles, layers=args.layer, module=args.moduleType, method=args.rotationMethod):
        tarot_texts = continue_examples(model, tokenizer, test, seed=args.seed + 1, batch_size=args.batchSize)
    per_model: dict[str, list[float]] = {}
    scores: dict[str, GenerationScores] = {}
    for who, texts in (("base", base_texts), ("tarot", tarot_texts)):
        values = rewards(scorer, args.dataset, test, texts)
        per_model[who] = values
        stats = summary(values)
        scores[who] = GenerationScores(
            reward=stats["mean"],
            reward_ci95=stats["ci95"],
            perplexity=perplexity(model, tokenizer, test, texts),  # under the unedited model
            distinct_2=distinct_2(texts),
        )
    results: GenerationResults = {
        "n_test": len(test),
        "scorer": args.scorer,
        "best_iteration": best["iteration"],
        "best_train_value": best["value"],
        "test_ids": [e.id for e in test],
        "evaluations": len(read_jsonl(run.history)),  # points.safetensors may be absent (a run kept in results/)
        "planned_evaluations": args.initialPoints + args.iterations,
        "base": scores["base"],
        "tarot": scores["tarot"],
    }
    write_jsonl(
        run.path / "samples.jsonl",
        [
            {"id": e.id, "prompt": e.shown, "base": b, "tarot": t, "base_reward": rb, "tarot_reward": rt}
            for e, b, t, rb, rt in zip(
                test, base_texts, tarot_texts, per_model["base"], per_model["tarot"], strict=True
            )
        ],
    )
    write_generation(run.results, results)  # last: results.json means the evaluation is complete
    print(f"n_test = {len(test)}, scorer {args.scorer}")
    print(f"{'model':<7} {'reward':>8} {'95% CI':>16} {'perplexity':>11} {'distinct_2':>11}")
    for who, r in scores.items():
        print(
            f"{who:<7} {r['reward']:>8.3f} {'[{:.3f}, {:.3f}]'.format(*r['reward_ci95']):>16} "
            f"{r['perplexity']:>11.2f} {r['distinct_2']:>11.3f}"
        )
    for e, b, t in list(zip(test, base_texts, tarot_texts, strict=True))[:3]:
        print(f"\nprompt: {e.shown[:200]!r}\n  base : {b!r}\n  tarot: {t!r}")
    print(f"written {run.results}")
    return results
