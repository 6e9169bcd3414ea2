"""Generation and topic tasks on the embedded model with tiny budgets, plus their small helpers."""

from __future__ import annotations

import json

import pytest

from tarot import baselines, generation, topic
from tarot.classification import PAIRED_METRICS
from tarot.cli import run_main

TINY = [
    "--layer",
    "0",
    "1",
    "--trainingDataSize",
    "2",
    "--initialPoints",
    "1",
    "--iterations",
    "1",
    "--testingDataSize",
    "3",
    "--batchSize",
    "8",
]


@pytest.mark.parametrize("dataset", ["imdb", "toxicity", "xsum"])
def test_generation_train_and_test(dataset, tmp_path):
    flags = [*TINY, "--dataset", dataset, "--outputDir", str(tmp_path)]
    run = generation.train(flags)
    history = [json.loads(line) for line in run.history.read_text().splitlines()]
    assert len(history) == 2 and all(0 <= row["reward"] <= 1 for row in history)
    results = generation.evaluate(flags)
    assert results["n_test"] == 3
    for who in ("base", "tarot"):
        r = results[who]
        assert 0 <= r["reward"] <= 1 and r["reward_ci95"][0] <= r["reward"] <= r["reward_ci95"][1]
        assert r["perplexity"] > 1 and 0 <= r["distinct_2"] <= 1
    samples = [json.loads(line) for line in (run.path / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 3 and {"prompt", "base", "tarot"} <= set(samples[0])
    assert json.loads(run.config.read_text())["identity"]["scorer"] == generation.DEFAULT_SCORERS[dataset]


def test_generation_is_seeded(smollm2):
    model, tokenizer = smollm2
    examples = generation.load_prompts("imdb", tokenizer, seed=0)[:3]
    assert all(2 <= len(tokenizer(e.prompt, add_special_tokens=False)["input_ids"]) <= 8 for e in examples)
    first = generation.continue_examples(model, tokenizer, examples, seed=5, batch_size=2)
    assert generation.continue_examples(model, tokenizer, examples, seed=5, batch_size=2) == first
    assert generation.continue_examples(model, tokenizer, examples, seed=6, batch_size=2) != first


def test_perplexity_tells_fluent_from_random(smollm2):
    model, tokenizer = smollm2
    example = generation.load_prompts("imdb", tokenizer, seed=0)[0]
    fluent = generation.generate(
        model, tokenizer, [example.prompt], [15], chat=False, seed=0, batch_size=1, sample=False
    )
    assert generation.perplexity(model, tokenizer, [example], fluent) < generation.perplexity(
        model, tokenizer, [example], ["zebra quantum umbrella fax ninety ketchup"]
    )


def test_distinct_2():
    assert generation.distinct_2(["a b c", "a b d"]) == pytest.approx(3 / 4)
    assert generation.distinct_2(["same same same"]) == pytest.approx(1 / 2)


def test_topic_train_and_test(tmp_path):
    flags = [*TINY, "--dataset", "review_topic", "--outputDir", str(tmp_path)]
    topic.train(flags)
    results = topic.evaluate(flags)
    for setting in ("zero_shot", "few_shot"):
        for who in ("base", "tarot"):
            r = results[setting][who]
            assert 0 <= r["accuracy"] <= 1 and 0 <= r["f1"] <= 1 and 0 <= r["unparsed"] <= 1
            assert set(r["next_token"]) == {"accuracy", "accuracy_ci95", "f1", "predictions"}
            assert len(r["restricted_predictions"]) == results["n_test"]
        assert set(results[setting]["tarot"]["paired_ci95"]) == set(PAIRED_METRICS)
    # the first token's metrics are those a baseline's unedited model gets on the same questions
    batch = baselines.run([*flags, "--method", "batch"])
    assert batch["test_ids"] == results["test_ids"]
    for setting in ("zero_shot", "few_shot"):
        topic_base, base = results[setting]["base"], batch[setting]["base"]
        assert topic_base["next_token"] == {key: base[key] for key in topic_base["next_token"]}
        assert topic_base["restricted_predictions"] == base["restricted_predictions"]


def test_parse_label():
    labels = ("hotels", "medicine", "products", "university")
    assert topic.parse_label("This review is about a hotel stay.", labels) == "hotels"
    assert topic.parse_label("Medicine. Not products.", labels) == "medicine"
    assert topic.parse_label("It concerns universities", labels) == "university"
    assert topic.parse_label("I cannot tell.", labels) is None
    assert topic.parse_label("hotelier", labels) is None  # whole words only


def test_generation_bad_input(tmp_path, capsys):
    for argv, message in [
        ([*TINY, "--dataset", "sst2"], "--dataset: unknown 'sst2'"),
        ([*TINY, "--dataset", "imdb", "--fewShotCategory", "mix"], "generation tasks are zero-shot"),
        ([*TINY, "--dataset", "imdb", "--scorer", "magic"], "--scorer: unknown 'magic'"),
        ([*TINY, "--dataset", "imdb", "--trainingDataSize", "5000"], "--trainingDataSize"),
        ([*TINY, "--dataset", "imdb", "--instruction", "Be nice."], "--instruction: only xsum"),
        ([*TINY, "--dataset", "imdb", "--scorer", "rouge"], "--scorer: 'rouge' does not fit imdb"),
        ([*TINY, "--dataset", "xsum", "--scorer", "toxicity"], "--scorer: 'toxicity' does not fit xsum"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            run_main(lambda argv=argv: generation.train([*argv, "--outputDir", str(tmp_path)]))
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_main(lambda: topic.train([*TINY, "--dataset", "color", "--outputDir", str(tmp_path)]))
    assert "--dataset: 'color' is not one of review_topic, ag_news" in capsys.readouterr().err
