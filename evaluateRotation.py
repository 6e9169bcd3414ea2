"""Evaluate the best rotation of a finished search on held-out data, zero-shot and six-shot, against the
unedited model. Takes the same flags as trainRotation_NN_kernel.py, plus --exportModel DIR (save the edited
model) and --evalDataset TASK (score the angles on another task's test set)."""

from tarot.cli import evaluate_flags, run_main

if __name__ == "__main__":
    run_main("tarot.classification", "evaluate", flags=evaluate_flags)
