"""Search TaRot angles that raise a reward of generated text (imdb: positive sentiment; toxicity:
non-toxicity; xsum: ROUGE-L of a one-sentence summary)."""

from tarot.cli import generation_train_flags, run_main

if __name__ == "__main__":
    run_main("tarot.generation", "train", flags=generation_train_flags, resumable=True)
