"""Reward scorers: offline sentiment, toxicity and ROUGE-L, name handling, and the hf: path on a tiny model."""

from __future__ import annotations

import math
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import transformers

from tarot.errors import UsageError
from tarot.scorers import SCORER_NAMES, _load_textcat_imdb, make_scorer, reward_label, textcat_imdb_path

ROOT = Path(__file__).resolve().parent.parent

POSITIVE = "This movie was wonderful, I loved every minute of it. A beautiful, moving story."
NEGATIVE = "Terrible film. A boring, stupid waste of time; the worst acting I have ever seen."


def test_sentiment_prefers_the_positive_review():
    scorer = make_scorer("sentiment")
    assert scorer.name == "sentiment:spacy" and not scorer.needs_references
    positive, negative = scorer([POSITIVE, NEGATIVE])
    assert positive > 0.5 > negative
    assert negative >= 0.0 and positive <= 1.0
    assert scorer([]) == []


def test_toxicity_reward_is_high_for_polite_text():
    scorer = make_scorer("toxicity")
    toxic, polite = scorer(
        ["You are a fucking idiot, shut the fuck up.", "Thank you so much for your kind help, have a lovely day."]
    )
    assert toxic < 0.5 < polite


def test_rouge_l_matches_hand_computed_values():
    rouge = make_scorer("rouge")
    assert rouge.needs_references
    texts = [
        "the cat sat on the mat",  # identical
        "the cat sat on the mat",  # LCS "the cat on the mat" = 5 of 6 and 6 tokens: P = R = F = 5/6
        "the cat sat",  # LCS 3: P = 3/3, R = 3/6, F = 2PR/(P+R) = 2/3
        "cats running",  # stemmed: cat run vs the cat run: P = 2/2, R = 2/3, F = 4/5
        "",
    ]  # nothing generated
    references = [
        "the cat sat on the mat",
        "the cat was on the mat",
        "the cat sat on the mat",
        "the cat runs",
        "the cat",
    ]
    expected = [1.0, 5 / 6, 2 / 3, 4 / 5, 0.0]
    assert rouge(texts, references) == pytest.approx(expected, abs=1e-12)


def test_references_are_required_exactly_where_needed():
    with pytest.raises(ValueError, match="needs references"):
        make_scorer("rouge")(["a summary"])
    with pytest.raises(ValueError, match="1 texts but 2 references"):
        make_scorer("rouge")(["a"], ["a", "b"])
    with pytest.raises(ValueError, match="takes no references"):
        make_scorer("toxicity")(["hello"], references=["hello"])
    with pytest.raises(TypeError):
        make_scorer("toxicity")("one string, not a list")


def test_unknown_scorer_name_is_a_usage_error():
    with pytest.raises(UsageError, match=r"--scorer: unknown 'happiness'; choose one of sentiment"):
        make_scorer("happiness")
    assert "sentiment" in SCORER_NAMES and "rouge" in SCORER_NAMES


def test_hf_scorer_offline_is_a_one_line_usage_error(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(UsageError) as caught:
        make_scorer("hf:tarot-tests/no-such-sentiment-model")
    message = str(caught.value)
    assert message.startswith("--scorer hf:tarot-tests/no-such-sentiment-model: cannot load ")
    assert "\n" not in message
    with pytest.raises(UsageError, match="give a model id"):
        make_scorer("hf:")


@pytest.mark.parametrize(
    "labels, expected",
    [
        (["NEGATIVE", "POSITIVE"], "POSITIVE"),  # lvwerra/distilbert-imdb
        (["nothate", "hate"], "nothate"),  # facebook/roberta-hate-speech-dynabench-r4-target
        (["toxic", "non-toxic"], "non-toxic"),
        (["neutral", "toxic"], "neutral"),  # two labels, one of them the penalty
        (["negative", "neutral", "positive"], "positive"),
    ],
)
def test_reward_label_inference(labels, expected):
    assert reward_label(labels) == expected


def test_reward_label_explicit_and_ambiguous():
    assert reward_label(["LABEL_0", "LABEL_1"], "label_1") == "LABEL_1"
    with pytest.raises(ValueError, match="cannot tell"):
        reward_label(["LABEL_0", "LABEL_1"])
    with pytest.raises(ValueError, match="not one of"):
        reward_label(["NEGATIVE", "POSITIVE"], "joy")


@pytest.fixture(scope="module")
def tiny_classifier(tmp_path_factory):
    """A local two-label BERT classifier whose output ignores the text: P(POSITIVE) = sigmoid(1.5)."""
    folder = tmp_path_factory.mktemp("tiny-sentiment")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "film"]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    config = transformers.BertConfig(
        vocab_size=len(vocab),
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=16,
        id2label={0: "NEGATIVE", 1: "POSITIVE"},
        label2id={"NEGATIVE": 0, "POSITIVE": 1},
    )
    model = transformers.BertForSequenceClassification(config)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([0.0, 1.5]))
    model.save_pretrained(folder)
    transformers.BertTokenizer(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    return folder


def test_hf_scorer_on_a_local_model(tiny_classifier):
    scorer = make_scorer(f"hf:{tiny_classifier}")
    assert scorer.name == f"hf:{tiny_classifier}:POSITIVE"
    p_positive = 1 / (1 + math.exp(-1.5))
    long_text = "good film " * 50  # longer than the 16 positions: must be truncated, not crash
    assert scorer(["good film", long_text]) == pytest.approx([p_positive] * 2, abs=1e-5)
    negative = make_scorer(f"hf:{tiny_classifier}:negative")
    assert negative(["bad film"]) == pytest.approx([1 - p_positive], abs=1e-5)
    with pytest.raises(UsageError, match="label 'joy' is not one of"):
        make_scorer(f"hf:{tiny_classifier}:joy")


def test_imports_are_lazy():
    code = (
        "import sys\n"
        "from tarot.scorers import make_scorer\n"
        "heavy = ('spacy', 'profanity_check', 'rouge_score', 'transformers', 'textblob', 'langtest')\n"
        "assert not [m for m in heavy if m in sys.modules], [m for m in heavy if m in sys.modules]\n"
        "make_scorer('rouge')\n"
        "assert 'rouge_score' in sys.modules\n"
        "assert not [m for m in heavy[:2] if m in sys.modules], [m for m in heavy if m in sys.modules]\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_spacy_model_loads_silently_without_importing_langtest():
    _load_textcat_imdb.cache_clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # spaCy's version warning [W095] must not escape
        make_scorer("sentiment")
    assert "langtest" not in sys.modules
    assert textcat_imdb_path().name == "textcat_imdb"
