"""Where a search's time goes: one real TaRot search under cProfile, split into the model's forward passes,
folding and restoring the rotation, the optimiser's suggestions, and the rest.

Runs trainRotation_NN_kernel.py's search (train.sh's settings by default, a shorter budget) into a scratch
folder and prints one JSON object with the seconds and fractions of each part, so that the next speed-up is
chosen from data.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/profile_search.py --dataset entailed_polarity --iterations 26
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import pstats
import sys
import tempfile
import time

import torch

# (part, the functions whose cumulative time is that part); a function is counted once, at its outermost call
PARTS = {
    "forward": ("last_logits",),
    "fold_restore": ("rotated",),  # rotation.rotated: fold on entry, restore on exit (a generator: both resumes)
    "suggest": ("suggest",),
}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="entailed_polarity")
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--layer", nargs=2, default=("0", "15"))
    parser.add_argument("--iterations", type=int, default=26, help="after the 4 initial points")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from tarot.classification import train
    from tarot.models import load_model

    load_model(args.model, device="cpu")  # the model's first load is not part of a search
    with tempfile.TemporaryDirectory() as scratch:
        flags = [
            "--model", args.model, "--dataset", args.dataset, "--layer", *args.layer, "--iterations",
            str(args.iterations), "--outputDir", scratch,
        ]  # fmt: skip
        profile = cProfile.Profile()
        start = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):  # the search's own summary line: stdout is the JSON only
            profile.runcall(train, flags)
        total = time.perf_counter() - start
    stats = pstats.Stats(profile)
    cumulative: dict[str, float] = {}
    for (_, _, name), (_, _, _, cum, _) in stats.stats.items():  # type: ignore[attr-defined]
        for part, names in PARTS.items():
            if name in names:
                cumulative[part] = cumulative.get(part, 0.0) + cum
    # the one-off scoring of the unedited model counts as forward too
    rest = total - sum(cumulative.values())
    result = {
        "model": args.model,
        "dataset": args.dataset,
        "layers": [int(x) for x in args.layer],
        "evaluations": 4 + args.iterations,
        "threads": torch.get_num_threads(),
        "seconds_total": round(total, 2),
        "seconds": {part: round(value, 2) for part, value in cumulative.items()} | {"rest": round(rest, 2)},
        "fractions": {part: round(value / total, 3) for part, value in cumulative.items()}
        | {"rest": round(rest / total, 3)},
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
