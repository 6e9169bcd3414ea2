"""Baselines TaRot is compared with, on the same questions as TaRot's line: the same flags plus --method.

Example (TaRot's entailed_polarity line of train.sh, with a baseline instead of the search):
    python baselines.py --model smollm2 --layer 0 15 --dataset entailed_polarity --fewShotCategory mix \
        --trainingDataSize 20 --seed 0 --method contextual
"""

from tarot.cli import baseline_flags, run_main

if __name__ == "__main__":
    run_main("tarot.baselines", "run", flags=baseline_flags)
