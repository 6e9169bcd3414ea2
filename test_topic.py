"""Evaluate a topic task by the topic the model names in its generated answer, zero-shot and six-shot,
unedited vs TaRot."""

from tarot.cli import run_main, topic_evaluate_flags

if __name__ == "__main__":
    run_main("tarot.topic", "evaluate", flags=topic_evaluate_flags)
