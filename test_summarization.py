"""Compare unedited and TaRot generations on held-out prompts: reward with a 95% interval, perplexity under
the unedited model, distinct-2; writes results.json and samples.jsonl."""

from tarot.cli import run_main
from tarot.generation import evaluate

if __name__ == "__main__":
    run_main(evaluate)
