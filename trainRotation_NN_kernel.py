"""Search TaRot rotation angles by Bayesian optimisation on a few labelled examples of a classification task.

Example (the paper's flags):
    python trainRotation_NN_kernel.py --model smollm2 --layer 0 15 --angle_0 'neg 1/4' --angle_1 '1/4' \
        --dataset entailed_polarity --moduleType reasoning --metric prob --fewShotCategory mix \
        --trainingDataSize 20 --rotationMethod rotary
"""

from tarot.cli import run_main, train_flags

if __name__ == "__main__":
    run_main("tarot.classification", "train", flags=train_flags, resumable=True)
