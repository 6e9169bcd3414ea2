"""Build the BIG-bench classification data files used by TaRot.

Writes ``data/<task>.jsonl`` for four multiple-choice BIG-bench tasks
(color/hex, navigate, entailed_polarity, winowhy), taken from the
``bigbench==1.0.0`` source distribution on PyPI (Apache-2.0).

The script downloads the sdist with pip, checks its sha256 against the
pinned value below, and reads each ``task.json`` straight out of the
tarball (no extraction). Each output file looks like::

    {"canary": "...", "source": "bigbench==1.0.0 <path>", "license": "Apache-2.0"}
    {"id": 0, "input": "...", "target": "...", "choices": ["...", ...]}
    ...

The first line keeps BIG-bench's canary string. ``id`` is the 0-based index
in the original ``examples`` list, ``choices`` are the keys of
``target_scores`` in their original order and ``target`` is the single
choice scored 1.

Usage::

    python data/prepare.py                       # all four tasks
    python data/prepare.py --tasks navigate winowhy
    python data/prepare.py --cache-dir ~/.cache/tarot-bigbench   # reuse the sdist
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

PACKAGE = "bigbench"
VERSION = "1.0.0"
SDIST_NAME = f"{PACKAGE}-{VERSION}.tar.gz"
SDIST_SHA256 = "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2"
LICENSE = "Apache-2.0"

# Output task name -> path of its task.json inside the sdist.
TASKS = {
    "color": "bigbench/benchmark_tasks/color/hex/task.json",
    "navigate": "bigbench/benchmark_tasks/navigate/task.json",
    "entailed_polarity": "bigbench/benchmark_tasks/entailed_polarity/task.json",
    "winowhy": "bigbench/benchmark_tasks/winowhy/task.json",
}
SDIST_ROOT = f"{PACKAGE}-{VERSION}/"

DATA_DIR = Path(__file__).resolve().parent


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_sdist(dest: Path) -> Path:
    """Return the path of the verified sdist in ``dest``, downloading it if needed."""
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / SDIST_NAME
    if path.exists():
        print(f"using cached {path}")
    else:
        print(f"downloading {PACKAGE}=={VERSION} sdist (~360 MB) into {dest} ...")
        start = time.monotonic()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-binary",
                ":all:",
                f"{PACKAGE}=={VERSION}",
                "-d",
                str(dest),
            ],
            check=True,
        )
        print(f"download took {time.monotonic() - start:.1f} s")
        if not path.exists():
            sys.exit(f"error: pip did not produce {path}")
    actual = sha256_of(path)
    if actual != SDIST_SHA256:
        sys.exit(
            f"error: sha256 mismatch for {path}\n"
            f"  expected {SDIST_SHA256}\n  got      {actual}\n"
            "Delete the file (if cached) and retry; if it persists, the PyPI "
            "artifact has changed and the data must be re-checked."
        )
    print(f"sha256 ok: {actual}")
    return path


def read_task_jsons(sdist: Path, members: dict[str, str]) -> dict[str, dict]:
    """Read the given task.json files (name -> in-package path) from the tarball."""
    wanted = {SDIST_ROOT + path: name for name, path in members.items()}
    found: dict[str, dict] = {}
    with tarfile.open(sdist, "r:gz") as tar:
        for member in tar:  # one sequential pass over the gzip stream
            name = wanted.get(member.name)
            if name is None:
                continue
            with tar.extractfile(member) as f:
                found[name] = json.load(f)
            if len(found) == len(wanted):
                break
    missing = sorted(set(members) - set(found))
    if missing:
        sys.exit(f"error: not found in {sdist.name}: {[members[m] for m in missing]}")
    return found


def convert_examples(task: dict) -> list[dict]:
    """Turn BIG-bench examples into {id, input, target, choices} records."""
    records = []
    for i, ex in enumerate(task["examples"]):
        scores = ex["target_scores"]
        winners = [choice for choice, score in scores.items() if score == 1]
        assert len(winners) == 1, f"example {i}: expected one choice scored 1, got {winners}"
        assert all(score in (0, 1) for score in scores.values()), f"example {i}: {scores}"
        target = winners[0]
        if "target" in ex:  # color/hex also carries an explicit target; it must agree
            assert ex["target"] == target, f"example {i}: target {ex['target']!r} != {target!r}"
        records.append(
            {
                "id": i,
                "input": ex["input"].rstrip(),
                "target": target,
                "choices": list(scores),
            }
        )
    return records


def write_jsonl(path: Path, header: dict, records: list[dict]) -> None:
    """Write header + records as JSON lines, atomically (temp file + os.replace)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            for obj in [header, *records]:
                f.write(json.dumps(obj, ensure_ascii=False) + "\n")
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; make it an ordinary data file
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def summarize(name: str, records: list[dict]) -> None:
    """Print the sanity checks reported in SOURCES.md."""
    choice_sets = collections.Counter(tuple(r["choices"]) for r in records)
    targets_ok = all(r["target"] in r["choices"] for r in records)
    first_words_ok = all(
        len({c.split()[0] if c.split() else c for c in r["choices"]}) == len(r["choices"]) for r in records
    )
    inputs = collections.Counter(r["input"] for r in records)
    dup_extra = sum(n - 1 for n in inputs.values() if n > 1)
    conflicting = sum(
        1 for text, n in inputs.items() if n > 1 and len({r["target"] for r in records if r["input"] == text}) > 1
    )
    print(f"  {name}: {len(records)} examples")
    print(f"    choice orderings: {dict(choice_sets)}")
    print(f"    distinct choices: {sorted({c for r in records for c in r['choices']})}")
    print(f"    targets: {dict(collections.Counter(r['target'] for r in records))}")
    print(f"    all targets among choices: {targets_ok}; choices differ in first word: {first_words_ok}")
    print(f"    duplicate inputs: {dup_extra} extra copies ({conflicting} duplicated inputs with conflicting targets)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--tasks", nargs="+", choices=sorted(TASKS), default=list(TASKS), help="tasks to build (default: all)"
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="keep the downloaded sdist here and reuse it on later runs "
        "(default: a temporary directory, deleted afterwards)",
    )
    parser.add_argument(
        "--out-dir", type=Path, default=DATA_DIR, help=f"where to write <task>.jsonl (default: {DATA_DIR})"
    )
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="tarot-bigbench-") as tmp:
        sdist = fetch_sdist(args.cache_dir or Path(tmp))
        tasks = read_task_jsons(sdist, {name: TASKS[name] for name in args.tasks})

    args.out_dir.mkdir(parents=True, exist_ok=True)
    for name in args.tasks:
        task = tasks[name]
        header = {
            "canary": task["canary"],
            "source": f"{PACKAGE}=={VERSION} {TASKS[name]}",
            "license": LICENSE,
        }
        records = convert_examples(task)
        out = args.out_dir / f"{name}.jsonl"
        write_jsonl(out, header, records)
        print(f"wrote {out} ({out.stat().st_size:,} bytes)")
        summarize(name, records)


if __name__ == "__main__":
    main()
