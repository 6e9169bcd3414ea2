"""Compare unedited and TaRot generations on held-out prompts: reward with a 95% interval, perplexity under
the unedited model, distinct-2; writes results.json and samples.jsonl."""

from tarot.cli import generation_evaluate_flags, run_main

if __name__ == "__main__":
    run_main("tarot.generation", "evaluate", flags=generation_evaluate_flags)
