"""Classification tasks: examples, deterministic splits and chat prompts.

A task is a JSONL file, one example per line: ``{"input": ..., "target": ..., "choices": [...]}``
(``choices`` optional; ``id`` optional, defaults to the line's index). A line holding only ``canary`` (and
source notes) is a file header, as in the BIG-bench files under ``data/``.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tarot.errors import UsageError, first_line

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
SHOT_COUNTS = {"zero": (0,), "mix": (0, 2, 4, 6), "sixShot": (6,)}
MAX_SHOTS = 6
DEFAULT_INSTRUCTION = "Answer the question with one of the given choices. Reply with the answer only."

# Built-in tasks: file under data/ and the system instruction (from each BIG-bench task's own prefix).
TASKS = {
    "color": (
        "color.jsonl",
        "Identify the color specified by the given HEX encoding. Answer with one word, one of: black, "
        "blue, brown, gray, green, orange, purple, red, white, yellow.",
    ),
    "navigate": (
        "navigate.jsonl",
        "Given a series of navigation instructions, determine whether one would end up back at the "
        "starting point. If you follow these instructions, do you return to the starting point? "
        "Answer with True or False.",
    ),
    "entailed_polarity": ("entailed_polarity.jsonl", "Given a fact, answer the following question with a yes or a no."),
    "winowhy": (
        "winowhy.jsonl",
        "Please answer the following questions about which words certain pronouns refer to. Say "
        "whether the reasoning given is correct or incorrect. Answer with correct or incorrect.",
    ),
    "review_topic": (
        "review_topic.jsonl",
        "Say what the review is about. Answer with one word: hotels, medicine, products or university.",
    ),
}
ONLINE_TASKS = ("ag_news",)
AG_NEWS_LABELS = ("World", "Sports", "Business", "Sci/Tech")
AG_NEWS_INSTRUCTION = (
    "Classify the news article into one of: World, Sports, Business, Sci/Tech. Answer with the topic only."
)
XSUM_INSTRUCTION = "Summarize the news article in one sentence."  # the generation task xsum (tarot/generation.py)


def file_fingerprint(source: str | Path) -> str:
    """sha256 of a data file, so a run can tell that its data changed (the path may move); a source that
    is not a file (``datasets:ag_news``) stands for itself."""
    path = Path(source)
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else str(source)


@dataclass(frozen=True)
class Example:
    id: int
    input: str
    target: str
    choices: tuple[str, ...] = ()


@dataclass
class Task:
    name: str
    instruction: str
    examples: list[Example]
    source: str
    show_choices: bool = False  # list the choices in each question (users' files; built-ins say it once)

    @property
    def fingerprint(self) -> str:
        return file_fingerprint(self.source)

    @property
    def labels(self) -> tuple[str, ...]:
        """Every answer the task allows: the union of choices, else of targets, in first-seen order."""
        seen: dict[str, None] = {}
        for example in self.examples:
            for label in example.choices or (example.target,):
                seen.setdefault(label)
        return tuple(seen)


def read_jsonl(path: Path, flag: str = "--dataset") -> list[Example]:
    """Read examples from a JSONL file; header lines without ``input`` must carry a ``canary``. Errors
    name ``flag``, the option that gave the file."""
    examples: list[Example] = []
    try:
        lines = Path(path).read_text(encoding="utf-8").split("\n")  # not splitlines(): U+2028 may sit in a string
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"{flag}: cannot read {path} as UTF-8 text ({first_line(error)})") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise UsageError(f"{flag}: {path}:{number} is not valid JSON ({error.msg})") from None
        if not isinstance(record, dict):
            raise UsageError(f"{flag}: {path}:{number} is not a JSON object")
        if "input" not in record and "canary" in record:
            continue
        if (
            not isinstance(record.get("input"), str)
            or not isinstance(record.get("target"), str)
            or not record["target"].strip()
        ):
            raise UsageError(f"{flag}: {path}:{number} needs string fields 'input' and 'target' (a non-empty answer)")
        choices = record.get("choices") or []
        if not isinstance(choices, list) or not all(isinstance(c, str) and c.strip() for c in choices):
            raise UsageError(f"{flag}: {path}:{number}: 'choices' must be a list of non-empty strings")
        choices = tuple(choices)
        if choices and record["target"] not in choices:
            raise UsageError(
                f"{flag}: {path}:{number}: target {record['target']!r} is not among its choices {list(choices)}"
            )
        if not isinstance(record.get("id", 0), int):
            raise UsageError(f"{flag}: {path}:{number}: 'id' must be an integer")
        examples.append(Example(record.get("id", len(examples)), record["input"], record["target"], choices))
    if not examples:
        raise UsageError(f"{flag}: {path} holds no examples")
    if len({e.id for e in examples}) != len(examples):
        raise UsageError(f"{flag}: {path}: example ids are not unique")
    return examples


def _load_ag_news(flag: str) -> list[Example]:
    try:
        import datasets
        import huggingface_hub

        huggingface_hub.utils.logging.set_verbosity_error()  # one error line offline, not a page of retries
        rows = datasets.load_dataset("ag_news", split="test")
    except Exception as error:  # the hub is unreachable, or the cache lacks it
        raise UsageError(
            f"{flag} ag_news: needs the Hugging Face hub or a local datasets cache "
            "(`datasets.load_dataset('ag_news')` failed: "
            f"{first_line(error)}); offline, use review_topic or a JSONL file"
        ) from None
    return [Example(i, row["text"], AG_NEWS_LABELS[row["label"]], AG_NEWS_LABELS) for i, row in enumerate(rows)]


def check_source(dataset: str, flag: str = "--dataset") -> None:
    """A built-in task name, ``ag_news``, or an existing ``.jsonl`` file (any case); reads nothing."""
    if dataset in TASKS or dataset in ONLINE_TASKS:
        return
    path = Path(dataset)
    if path.suffix.lower() == ".jsonl":
        if not path.exists():
            raise UsageError(f"{flag}: the file {dataset!r} does not exist")
        if not path.is_file():
            raise UsageError(f"{flag}: {dataset!r} is not a file")
        return
    raise UsageError(
        f"{flag}: unknown {dataset!r}; choose one of {', '.join([*TASKS, *ONLINE_TASKS])} "
        f"or give a path to a .jsonl file" + (" (this file's name does not end in .jsonl)" if path.is_file() else "")
    )


def task_name(dataset: str) -> str:
    """The name a task goes by in run folders and results: a built-in name, or a JSONL file's stem."""
    return dataset if dataset in TASKS or dataset in ONLINE_TASKS else Path(dataset).stem


def default_instruction(dataset: str) -> str:
    """The system instruction a task gets when --instruction is not given."""
    if dataset in TASKS:
        return TASKS[dataset][1]
    return AG_NEWS_INSTRUCTION if dataset == "ag_news" else DEFAULT_INSTRUCTION


def load_task(dataset: str, instruction: str | None = None, flag: str = "--dataset") -> Task:
    """A built-in task name, ``ag_news`` (online), or a path to a JSONL file; errors name ``flag``."""
    check_source(dataset, flag)
    instruction = instruction or default_instruction(dataset)
    if dataset in TASKS:
        file = DATA_DIR / TASKS[dataset][0]
        return Task(dataset, instruction, read_jsonl(file, flag), str(file))
    if dataset == "ag_news":
        return Task(dataset, instruction, _load_ag_news(flag), "datasets:ag_news")
    path = Path(dataset)
    return Task(task_name(dataset), instruction, read_jsonl(path, flag), str(path.resolve()), True)


@dataclass
class Split:
    """Disjoint example sets: demonstrations for few-shot prompts, training (the search) and test."""

    fewshot: list[Example]
    train: list[Example]
    test: list[Example]
    shots: list[int] = field(default_factory=list)  # shot count of each training prompt, drawn once
    label_counts: dict[str, int] | None = None  # --balancedTraining: training examples per label

    def ids(self) -> dict[str, list[int]]:
        return {
            "fewshot": [e.id for e in self.fewshot],
            "train": [e.id for e in self.train],
            "test": [e.id for e in self.test],
        }


def make_split(
    task: Task, *, train_size: int, test_size: int, seed: int, few_shot: str, balanced: bool = False
) -> Split:
    """Shuffle once with the seed; take 6 demonstrations, then the training examples, then the test set.

    The test set never holds an input that also appears among the demonstrations or training examples
    (BIG-bench winowhy has duplicates). Shot counts of the training prompts are drawn here, once, so the
    objective is a deterministic function of the angles. ``balanced`` (--balancedTraining) then draws the
    training examples again, stratified by label (:func:`balanced_training`), keeping the same test questions
    and shot counts, so that the runs with and without it are compared on the same questions.
    """
    if few_shot not in SHOT_COUNTS:
        raise UsageError(f"--fewShotCategory: unknown {few_shot!r}; choose one of {', '.join(SHOT_COUNTS)}")
    rng = np.random.default_rng(seed)
    order = [task.examples[i] for i in rng.permutation(len(task.examples))]
    available = len(order) - MAX_SHOTS
    if train_size < 1 or train_size >= available:
        raise UsageError(
            f"--trainingDataSize: {train_size} is not possible for {task.name}: it has "
            f"{len(order)} examples, {MAX_SHOTS} go to demonstrations and at least one to "
            f"the test set; allowed 1..{available - 1}"
        )
    fewshot, train = order[:MAX_SHOTS], order[MAX_SHOTS : MAX_SHOTS + train_size]
    seen = {e.input for e in fewshot + train}
    test = [e for e in order[MAX_SHOTS + train_size :] if e.input not in seen][:test_size]
    if not test:
        raise UsageError(
            f"--trainingDataSize: no test example of {task.name} is left after {MAX_SHOTS} "
            f"demonstrations and {train_size} training examples (inputs seen in those are not tested)"
        )
    shots = [int(k) for k in rng.choice(SHOT_COUNTS[few_shot], size=train_size)]
    if not balanced:
        return Split(fewshot, train, test, shots)
    tested = {e.input for e in test}
    pool = [e for e in order[MAX_SHOTS:] if e.input not in tested]  # never a test question or its input
    train = balanced_training(pool, train_size, task.name)
    return Split(fewshot, train, test, shots, dict(sorted(Counter(e.target for e in train).items())))


def balanced_training(pool: list[Example], size: int, task: str) -> list[Example]:
    """``size`` examples of ``pool`` (in its order), as equal in count per label as the pool allows: each
    label's share is ``size // labels``, the first ``size % labels`` labels (sorted) one more; a label with
    fewer examples than its share gives them all, and the rest is filled from the other labels in order."""
    labels = sorted({e.target for e in pool})
    if len(labels) < 2:
        raise UsageError(
            f"--balancedTraining: every training candidate of {task} has the label {labels}; nothing to balance"
        )
    assert len(pool) >= size  # the pool holds the unbalanced split's training examples
    share = {label: size // len(labels) + (k < size % len(labels)) for k, label in enumerate(labels)}
    chosen: list[Example] = []
    for label in labels:
        chosen += [e for e in pool if e.target == label][: share[label]]
    taken = {id(e) for e in chosen}
    chosen += [e for e in pool if id(e) not in taken][: size - len(chosen)]
    position = {id(e): k for k, e in enumerate(pool)}
    return sorted(chosen, key=lambda e: position[id(e)])


def split_from_ids(task: Task, ids: dict[str, list[int]], shots: list[int]) -> Split:
    by_id = {e.id: e for e in task.examples}
    fewshot, train, test = ([by_id[i] for i in ids[key]] for key in ("fewshot", "train", "test"))
    return Split(fewshot, train, test, shots=list(shots))
