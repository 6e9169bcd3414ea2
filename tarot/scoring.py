"""Prompts as token ids, and fast next-token scoring with a shared few-shot prefix.

Every prompt of a run starts with the same system instruction and the first k of the same six
demonstrations, so all prompts share a prefix with the six-shot prefix. The prefix is computed once per
batch of prompts and each prompt then costs only its own question's tokens: packed with the questions into
one sequence under a block mask (:func:`last_logits`), or through its reused key/value cache (models that
ignore such a mask, and greedy decoding: :func:`greedy_continuations`). Only the logits at the last
position are computed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import DynamicCache

from tarot.choices import CLASSIFICATION_METRICS
from tarot.data import Example, Task
from tarot.errors import UsageError
from tarot.models import model_device


@dataclass
class PromptSet:
    """Tokenised prompts with what is needed to score them."""

    texts: list[str]
    prompt_ids: list[list[int]]
    prefix_ids: list[int]  # the longest shared prefix: system instruction + all six demonstrations
    answer_ids: list[int]  # first token of each prompt's target
    choice_ids: list[list[int]]  # first token of each of the example's choices (empty: no choices)
    targets: list[str]
    choices: list[tuple[str, ...]] = field(default_factory=list)  # the choices, aligned with choice_ids

    def __post_init__(self):
        if not self.choices:
            self.choices = [()] * len(self.prompt_ids)

    def __len__(self) -> int:
        return len(self.prompt_ids)

    def subset(self, rows: Sequence[int]) -> PromptSet:
        """These prompts only (the shared prefix is kept)."""
        return PromptSet(
            [self.texts[i] for i in rows],
            [self.prompt_ids[i] for i in rows],
            self.prefix_ids,
            [self.answer_ids[i] for i in rows],
            [self.choice_ids[i] for i in rows],
            [self.targets[i] for i in rows],
            [self.choices[i] for i in rows],
        )


def _question(example: Example, show_choices: bool) -> str:
    if show_choices and example.choices:
        return f"{example.input}\nChoices: {', '.join(example.choices)}"
    return example.input


def _messages(instruction: str, demos: Sequence[Example], question: str | None, show_choices: bool):
    messages = [{"role": "system", "content": instruction}]
    for demo in demos:
        messages += [
            {"role": "user", "content": _question(demo, show_choices)},
            {"role": "assistant", "content": demo.target},
        ]
    if question is not None:
        messages.append({"role": "user", "content": question})
    return messages


def render(
    tokenizer, instruction: str, demos: Sequence[Example], question: str | None, show_choices: bool = False
) -> str:
    """The prompt text: the chat template when the tokenizer has one, else a plain Q/A layout."""
    messages = _messages(instruction, demos, question, show_choices)
    if getattr(tokenizer, "chat_template", None):
        generation = question is not None
        try:
            return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)
        except Exception:  # some templates (Gemma) refuse a system role: fold it into the first turn
            merged = [{"role": "user", "content": f"{instruction}\n\n{messages[1]['content']}"}, *messages[2:]]
            return tokenizer.apply_chat_template(merged, tokenize=False, add_generation_prompt=generation)
    lines = [instruction, ""]
    for message in messages[1:]:
        lines.append(("Q: " if message["role"] == "user" else "A: ") + message["content"])
    return "\n".join(lines) + ("\nA:" if question is not None else "")


def _encode(tokenizer, text: str) -> list[int]:
    # Chat templates write their own special tokens; the plain layout needs the tokenizer's (e.g. BOS).
    return tokenizer(text, add_special_tokens=not getattr(tokenizer, "chat_template", None))["input_ids"]


def first_token(tokenizer, prompt_text: str, prompt_ids: list[int], answer: str) -> int:
    """The token the model must produce first to start ``answer`` right after the prompt."""
    if not getattr(tokenizer, "chat_template", None):
        answer = " " + answer  # the plain layout ends with "A:" and its demonstrations read "A: answer"
    joined = _encode(tokenizer, prompt_text + answer)
    if joined[: len(prompt_ids)] == prompt_ids and len(joined) > len(prompt_ids):
        return joined[len(prompt_ids)]
    return tokenizer(answer, add_special_tokens=False)["input_ids"][0]  # the answer merged into the prompt


def build_prompts(
    tokenizer,
    task: Task,
    demos: Sequence[Example],
    examples: Sequence[Example],
    shots: Sequence[int],
    flag: str = "--dataset",
    max_tokens: int | None = None,
) -> PromptSet:
    """One prompt per example with ``shots[i]`` demonstrations: the first ones of ``demos``; errors name
    ``flag``, the option that gave the task.

    The first-token score needs answers that start with different tokens: an example's choices, or, for
    examples without choices, every answer of the task (its labels). A prompt longer than ``max_tokens``
    (the model's context) is an error too.
    """
    texts, prompt_ids, answer_ids, choice_ids = [], [], [], []
    labels_checked = False
    for example, k in zip(examples, shots, strict=True):
        text = render(tokenizer, task.instruction, demos[:k], _question(example, task.show_choices), task.show_choices)
        ids = _encode(tokenizer, text)
        if max_tokens is not None and len(ids) > max_tokens:
            raise UsageError(
                f"{flag}: the prompt for {task.name} example {example.id} ({k} demonstrations) is {len(ids)} "
                f"tokens, longer than the model's context of {max_tokens}; shorten the task's inputs or use a "
                f"model with a longer context"
            )
        choices = [first_token(tokenizer, text, ids, c) for c in example.choices]
        if len(set(choices)) != len(choices):
            clash = [c for c, t in zip(example.choices, choices, strict=True) if choices.count(t) > 1]
            raise UsageError(
                f"{flag}: choices {clash} of {task.name} example {example.id} start with the same token; "
                f"the first-token score cannot tell them apart: rename them"
            )
        if not example.choices and not labels_checked:  # once: the tokens after the prompt's end do not vary
            labels_checked = True
            labels = task.labels
            starts = [first_token(tokenizer, text, ids, label) for label in labels]
            clash = [label for label, t in zip(labels, starts, strict=True) if starts.count(t) > 1]
            if clash:
                raise UsageError(
                    f"{flag}: answers {clash} of {task.name} start with the same token; the first-token score "
                    f"cannot tell them apart (a wrong one of them counts as right): rename them"
                )
        texts.append(text)
        prompt_ids.append(ids)
        answer_ids.append(first_token(tokenizer, text, ids, example.target))
        choice_ids.append(choices)
    prefix = _encode(tokenizer, render(tokenizer, task.instruction, demos, None, task.show_choices))
    return PromptSet(
        texts, prompt_ids, prefix, answer_ids, choice_ids, [e.target for e in examples], [e.choices for e in examples]
    )


def _shared_length(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _left_padded(sequences: Sequence[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, width - len(seq) :] = torch.tensor(seq)
        mask[row, width - len(seq) :] = 1
    return ids.to(device), mask.to(device)


def _pad_id(model) -> int:
    pad = getattr(model.config, "pad_token_id", None)
    return pad if isinstance(pad, int) else 0


@torch.no_grad()
def last_logits(model, prompts: PromptSet, *, batch_size: int = 32, prefix_cache: bool = True) -> torch.Tensor:
    """Next-token logits (float32, on the CPU) after each prompt: shape (len(prompts), vocab).

    With ``prefix_cache`` the shared prefix is computed once per chunk of ``batch_size`` prompts and every
    prompt attends to it: by default all of them packed into one sequence with a block mask
    (:func:`_packed_logits`), or, for models where that mask is not honoured, through a reused key/value
    cache (:func:`_cached_logits`). Without ``prefix_cache`` every prompt runs in full, left-padded: the
    reference the tests compare with.
    """
    out = torch.empty(len(prompts), model.get_output_embeddings().weight.shape[0])
    for start in range(0, len(prompts), batch_size):
        rows = list(range(start, min(start + batch_size, len(prompts))))
        chunk = [prompts.prompt_ids[i] for i in rows]
        if not prefix_cache:
            out[rows] = _run(model, chunk, 0, None)
        elif _packing_works(model, chunk, prompts.prefix_ids):
            out[rows] = _packed_logits(model, chunk, prompts.prefix_ids)
        else:
            out[rows] = _cached_logits(model, chunk, prompts.prefix_ids)
    return out


def _shared_lengths(prompts: Sequence[list[int]], prefix: list[int]) -> list[int]:
    """Tokens each prompt shares with the prefix, leaving at least one token of its own."""
    return [min(_shared_length(ids, prefix), len(ids) - 1) for ids in prompts]


def _packing_works(model, prompts: Sequence[list[int]], prefix: list[int]) -> bool:
    """Whether this model honours a custom block mask: checked once per model against the cache path.

    Some attention implementations (Gemma 2's, for one) replace a given 4D mask with their own, which
    would let packed prompts see each other; for those the key/value-cache path is used instead.
    """
    verdict = getattr(model, "_tarot_packing_works", None)
    if verdict is None:
        if len(prompts) < 2:  # one prompt alone cannot show a leak between prompts: do not decide yet
            return False
        sample = list(prompts[:4])
        difference = (_packed_logits(model, sample, prefix) - _cached_logits(model, sample, prefix)).abs().max()
        verdict = bool(difference < 1e-3)
        model._tarot_packing_works = verdict
    return verdict


def trainable_logits(model, prompts: PromptSet, rows: Sequence[int]) -> torch.Tensor:
    """Next-token logits after the prompts ``rows``, with gradients (for training an adapter): packed like
    :func:`last_logits`, or each prompt in full, left-padded, for models that do not honour the block mask."""
    chunk = [prompts.prompt_ids[i] for i in rows]
    if _packing_works(model, chunk, prompts.prefix_ids):
        return _packed_forward(model, chunk, prompts.prefix_ids)
    return _forward(model, chunk, 0, None)


def _packed_forward(model, prompts: Sequence[list[int]], prefix: list[int]) -> torch.Tensor:
    """One forward pass over [prefix, suffix_1, ..., suffix_n] in a single row, no padding.

    Each suffix keeps its own positions (continuing after the prefix tokens it shares) and a boolean mask
    lets it see exactly those prefix tokens and itself, causally: the same attention it has alone.
    Logits are computed only at each suffix's last token.
    """
    device = model_device(model)
    shared = _shared_lengths(prompts, prefix)
    longest = max(shared)
    suffixes = [ids[length:] for ids, length in zip(prompts, shared, strict=True)]
    tokens = prefix[:longest] + [t for suffix in suffixes for t in suffix]
    positions = list(range(longest))
    mask = torch.zeros(len(tokens), len(tokens), dtype=torch.bool)
    mask[:longest, :longest] = True
    ends, start = [], longest
    for suffix, length in zip(suffixes, shared, strict=True):
        end = start + len(suffix)
        positions += range(length, length + len(suffix))
        mask[start:end, :length] = True
        mask[start:end, start:end] = True
        start = end
        ends.append(end - 1)
    mask = mask.tril()  # causal within the prefix and within each suffix; prefix columns come first
    logits = model(
        input_ids=torch.tensor([tokens], device=device),
        attention_mask=mask[None, None].to(device),
        position_ids=torch.tensor([positions], device=device),
        use_cache=False,
        logits_to_keep=torch.tensor(ends, device=device),
    ).logits
    return logits[0].float().cpu()


_packed_logits = torch.no_grad()(_packed_forward)


@torch.no_grad()
def _cached_logits(model, prompts: Sequence[list[int]], prefix: list[int]) -> torch.Tensor:
    """The prefix runs once; its key/value cache is reused by groups of prompts sharing the same length."""
    out = torch.empty(len(prompts), model.get_output_embeddings().weight.shape[0])
    for length, rows, past in _prefix_groups(model, prompts, prefix):
        out[rows] = _run(model, [prompts[i][length:] for i in rows], length, past)
    return out


@torch.no_grad()
def _prefix_groups(model, prompts: Sequence[list[int]], prefix: list[int]):
    """Yield (shared length, prompt indices, the prefix's key/value pairs for that length or None): the
    prefix runs once, and the prompts that share the same number of its tokens form one group."""
    shared = _shared_lengths(prompts, prefix)
    longest = max(shared)
    layers = []
    if longest:
        cache = model(
            input_ids=torch.tensor([prefix[:longest]], device=model_device(model)), use_cache=True
        ).past_key_values
        layers = [(layer.keys, layer.values) for layer in cache.layers]
    groups: dict[int, list[int]] = defaultdict(list)
    for index, length in enumerate(shared):
        groups[length].append(index)
    for length, rows in groups.items():
        yield length, rows, [(k[:, :, :length], v[:, :, :length]) for k, v in layers] if length else None


def _suffix_inputs(model, suffixes: Sequence[list[int]], offset: int, past) -> dict:
    """Model inputs for left-padded suffixes that continue ``offset`` cached prefix tokens."""
    device = model_device(model)
    ids, mask = _left_padded(suffixes, _pad_id(model), device)
    # Positions continue after the prefix and skip the padding, so a padded row sees the same positions
    # (and the same attention) as when it runs alone.
    positions = (offset + mask.cumsum(-1) - 1).clamp(min=offset)
    inputs: dict[str, Any] = dict(input_ids=ids, attention_mask=mask, position_ids=positions)
    if past is not None:
        batch = len(suffixes)
        inputs["past_key_values"] = DynamicCache(
            [(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)) for k, v in past]
        )
        inputs["attention_mask"] = torch.cat([torch.ones(batch, offset, dtype=mask.dtype, device=device), mask], dim=1)
    return inputs


def _forward(model, suffixes: Sequence[list[int]], offset: int, past) -> torch.Tensor:
    """Last-position logits of left-padded suffixes that continue ``offset`` cached prefix tokens."""
    logits = model(**_suffix_inputs(model, suffixes, offset, past), logits_to_keep=1, use_cache=past is not None).logits
    return logits[:, -1].float().cpu()


_run = torch.no_grad()(_forward)


@torch.no_grad()
def greedy_continuations(model, prompts: PromptSet, max_new_tokens: int, *, batch_size: int = 32) -> list[list[int]]:
    """Greedy continuation of every prompt, as token ids, up to ``max_new_tokens`` or the first stop token
    (the model's ``generation_config.eos_token_id``; not included).

    What ``model.generate`` gives on the whole prompts (tested), but the shared few-shot prefix runs once per
    chunk of ``batch_size`` prompts and its key/value cache is reused, so a six-shot prompt costs only its
    question and the new tokens (review_topic's held-out evaluation: 15.6 min instead of about 35).
    """
    eos = model.generation_config.eos_token_id
    stop_ids = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
    stop = torch.tensor(stop_ids)
    out: list[list[int]] = [[] for _ in prompts.prompt_ids]
    starts = range(0, len(prompts), batch_size)
    for start in tqdm(starts, desc="generate", unit="batch", leave=False, disable=len(starts) < 2):
        chunk = prompts.prompt_ids[start : start + batch_size]
        for length, rows, past in _prefix_groups(model, chunk, prompts.prefix_ids):
            inputs = _suffix_inputs(model, [chunk[i][length:] for i in rows], length, past)
            finished = torch.zeros(len(rows), dtype=torch.bool)
            for _ in range(max_new_tokens):
                result = model(**inputs, logits_to_keep=1, use_cache=True)
                token = result.logits[:, -1].argmax(-1).cpu()
                for row, value, done in zip(rows, token.tolist(), finished.tolist(), strict=True):
                    if not done:
                        out[start + row].append(value)
                finished |= torch.isin(token, stop)
                if finished.all():
                    break
                mask = inputs["attention_mask"]
                inputs = dict(
                    input_ids=token[:, None].to(mask.device),
                    past_key_values=result.past_key_values,
                    attention_mask=torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1),
                    position_ids=inputs["position_ids"][:, -1:] + 1,
                )
    return [ids[:-1] if ids and ids[-1] in stop_ids else ids for ids in out]


# ----------------------------------------------------------------------------------------------
# Metrics on next-token logits
# ----------------------------------------------------------------------------------------------

METRICS = CLASSIFICATION_METRICS  # --metric: named in tarot/choices.py, computed here


def token_metrics(logits: torch.Tensor, prompts: PromptSet, base_logits: torch.Tensor | None = None) -> dict:
    """Per-prompt lists: probability of the answer token, exact match, rank, logit change vs the base."""
    answers = torch.tensor(prompts.answer_ids)
    answer_logit = logits.gather(1, answers[:, None])[:, 0]
    result = {
        "prob": torch.softmax(logits, -1).gather(1, answers[:, None])[:, 0].tolist(),
        "accuracy": (logits.argmax(-1) == answers).float().tolist(),
        "rank": (logits > answer_logit[:, None]).sum(-1).float().tolist(),
    }
    if base_logits is not None:
        result["logit_diff"] = (answer_logit - base_logits.gather(1, answers[:, None])[:, 0]).tolist()
    return result


def label_balanced(values: Sequence[float], labels: Sequence[str]) -> float:
    """Mean over the labels of the mean of ``values`` over each label's prompts: a label answered by most
    training prompts weighs no more than a rare one."""
    by_label: dict[str, list[float]] = defaultdict(list)
    for value, label in zip(values, labels, strict=True):
        by_label[label].append(value)
    return sum(sum(v) / len(v) for v in by_label.values()) / len(by_label)


def choice_log_probs(logits: torch.Tensor, prompts: PromptSet) -> list[float] | None:
    """log P(answer | the choices' first tokens only): a log-softmax over each prompt's choices (None when a
    prompt lists no choices)."""
    if not all(prompts.choice_ids):
        return None
    values = []
    for row, (answer, ids) in enumerate(zip(prompts.answer_ids, prompts.choice_ids, strict=True)):
        values.append(float(torch.log_softmax(logits[row, ids].double(), -1)[ids.index(answer)]))
    return values


def objective_values(logits: torch.Tensor, prompts: PromptSet, base_logits: torch.Tensor | None) -> dict:
    """Means over the training prompts; each is to be maximised (``rank`` enters as minus the mean rank).

    ``balanced_logprob``: the mean over labels of the mean log-probability of the answer's first token over
    that label's prompts, so one answer given to everything is punished on every other label.
    ``choice_ce``: the same class balance over log P(answer | the choices' first tokens): minus the
    cross-entropy restricted to the choices, a format-free objective (only for tasks whose prompts list
    their choices).
    """
    per_prompt = token_metrics(logits, prompts, base_logits)
    means = {name: sum(values) / len(values) for name, values in per_prompt.items()}
    means["rank"] = -means["rank"]
    answers = torch.tensor(prompts.answer_ids)
    log_probs = torch.log_softmax(logits.double(), -1).gather(1, answers[:, None])[:, 0].tolist()
    means["balanced_logprob"] = label_balanced(log_probs, prompts.targets)
    choice = choice_log_probs(logits, prompts)
    if choice is not None:
        means["choice_ce"] = label_balanced(choice, prompts.targets)
    return means
