"""Search TaRot angles on a topic task (review_topic offline, ag_news online)."""

from tarot.cli import run_main
from tarot.topic import train

if __name__ == "__main__":
    run_main(train, resumable=True)
