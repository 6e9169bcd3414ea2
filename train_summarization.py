"""Search TaRot angles that raise a reward of generated text (imdb: positive sentiment; toxicity:
non-toxicity; xsum: ROUGE-L of a one-sentence summary)."""

from tarot.cli import run_main
from tarot.generation import train

if __name__ == "__main__":
    run_main(train, resumable=True)
