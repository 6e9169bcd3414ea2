"""Topic classification answered in words (train_topic.py / test_topic.py).

Training is the classification search (the objective scores the label's first token); the evaluation lets
the model write its answer (greedy, a few tokens) and reads the topic's name from the text, so an answer
such as "This review is about a hotel" is read as it would be by a person, not by its first token.
"""

from __future__ import annotations

import re

from tarot import classification, cli
from tarot.results import LabelMetrics
from tarot.scoring import PromptSet, greedy_continuations, last_logits

RUN_KIND = "Topic"  # own run folders: evaluateRotation.py on the same task would write another results.json
ANSWER_TOKENS = 8
# Words that name a label without being its exact string (plural/singular, AG News's "Sci/Tech").
_SYNONYMS = {
    "hotels": ("hotel",),
    "products": ("product",),
    "university": ("universities", "school"),
    "Sci/Tech": ("science", "technology", "tech"),
    "Sports": ("sport",),
    "Business": ("economy",),
}


def parse_label(text: str, labels: tuple[str, ...]) -> str | None:
    """The label named earliest in ``text`` (case-insensitive, whole words, simple synonyms); None if none."""
    best, best_position = None, len(text) + 1
    for label in labels:
        for word in (label, *_SYNONYMS.get(label, ())):
            match = re.search(rf"(?<![A-Za-z]){re.escape(word)}(?![A-Za-z])", text, flags=re.IGNORECASE)
            if match and match.start() < best_position:
                best, best_position = label, match.start()
    return best


def generated_answer_judge(model, tokenizer, prompts: PromptSet, args) -> LabelMetrics:
    """Accuracy and macro F1 of the topic read from a short greedy answer.

    Also the next token's metrics, which do not depend on how an answer is read: the restricted ones (the
    choice whose first token ranks first), and under ``next_token`` the exact match of the first token; the
    baselines (baselines.py) are judged by those, so TaRot's topic runs compare with them."""
    texts = [
        tokenizer.decode(ids, skip_special_tokens=True)
        for ids in greedy_continuations(model, prompts, ANSWER_TOKENS, batch_size=args.batchSize)
    ]
    predicted = [
        parse_label(text, choices or (target,))
        for text, choices, target in zip(texts, prompts.choices, prompts.targets, strict=True)
    ]
    correct = [float(p == t) for p, t in zip(predicted, prompts.targets, strict=True)]
    metrics = classification.label_metrics(correct, predicted, prompts.targets)
    metrics["unparsed"] = sum(p is None for p in predicted) / len(predicted)
    metrics["examples"] = texts[:3]
    first_token = classification.classify(last_logits(model, prompts, batch_size=args.batchSize), prompts, tokenizer)
    for key in ("restricted_accuracy", "restricted_accuracy_ci95", "restricted_f1", "restricted_predictions"):
        if key in first_token:
            metrics[key] = first_token[key]
    metrics["next_token"] = {key: first_token[key] for key in ("accuracy", "accuracy_ci95", "f1", "predictions")}
    return metrics


def train(argv=None):
    return classification.train(argv, flags=cli.topic_train_flags, kind=RUN_KIND)


def evaluate(argv=None):
    return classification.evaluate(
        argv, flags=cli.topic_evaluate_flags, judge=generated_answer_judge, kind=RUN_KIND, train_script="train_topic.py"
    )
