"""Search TaRot angles on a topic task (review_topic offline, ag_news online)."""

from tarot.cli import run_main, topic_train_flags

if __name__ == "__main__":
    run_main("tarot.topic", "train", flags=topic_train_flags, resumable=True)
