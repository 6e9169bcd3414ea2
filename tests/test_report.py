"""report.py: results/ rebuilt byte for byte (the committed one, and one from tiny runs), the one-answer
baseline, and a held-out evaluation redone from the files that --collect keeps, without the search."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, tiny_flags

from tarot import baselines
from tarot.classification import PAIRED_METRICS, evaluate, train
from tarot.errors import UsageError
from tarot.report_baselines import METRICS, Scored, compare, table, variants_table, verdicts
from tarot.report_select import KEPT_FILES, TRAIN_SH, Recipe, collect
from tarot.report_summary import _targets as by_id
from tarot.report_summary import one_answer
from tarot.runs import RunDir, read_jsonl, read_tensors, write_tensors
from tarot.search import best_angles
from tarot.stats import paired_metric_interval

TINY = tiny_flags(iterations=2, testing=12)
# train.sh's recipe at TINY's settings and budget
TINY_RECIPE = Recipe(
    settings={"layer": [0, 2], "trainingDataSize": 4},
    by_kind=TRAIN_SH.by_kind,
    evaluations=4,
    studied=TRAIN_SH.studied,
)
# a second recipe for the second model's block: TINY's with a smaller layer range (on the same model)
TINY_SECOND = Recipe(
    settings=TINY_RECIPE.settings | {"layer": [0, 1]},
    by_kind=TRAIN_SH.by_kind,
    evaluations=4,
    studied=(),
)
BUILT = ("summary.json", "README.md", "search_curves.png", "baselines.png")
COMMITTED_RUN = "results/smollm2/entailed_polarity/" + "_".join(
    ["NN_kernel_layer_0_15_angle_-0.7854_0.7854_reasoning_prob_mix", "rotary_n20_bo_init4_seed0"]
)
_spec = importlib.util.spec_from_file_location("report", ROOT / "report.py")  # a script, not in the package
assert _spec is not None and _spec.loader is not None
report = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(report)


def _key_paths(data: dict, prefix: str = "") -> list[str]:
    paths = []
    for key, value in data.items():
        paths.append(prefix + key)
        if isinstance(value, dict):
            paths += _key_paths(value, f"{prefix}{key}.")
    return paths


def test_committed_results_rebuild_byte_for_byte(tmp_path):
    """The committed summary.json, README.md and figure are what report.py builds from the committed runs."""
    copy = tmp_path / "results"
    shutil.copytree(ROOT / "results", copy)
    shutil.copy(ROOT / "report.py", tmp_path)  # its results/ is the copy
    # spoilt, so that the build must rewrite them (the README's prose is hand-written: only a table is spoilt)
    for name in ("summary.json", "search_curves.png"):
        (copy / name).write_bytes((copy / name).read_bytes()[:100])
    readme = (copy / "README.md").read_text()
    assert readme.count("<!-- table -->\n") == 1
    (copy / "README.md").write_text(readme.replace("<!-- table -->\n", "<!-- table -->\n| stale | row |\n"))
    result = subprocess.run([sys.executable, "report.py"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("| task | n_test | setting |")
    for name in BUILT:
        assert (copy / name).read_bytes() == (ROOT / "results" / name).read_bytes(), name
    assert not [p.name for p in copy.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_report_rebuilds_summary_byte_for_byte(tmp_path):
    flags = [*TINY, "--dataset", "entailed_polarity", "--outputDir", str(tmp_path / "runs")]
    for optimizer in ("bo", "random"):
        train([*flags, "--optimizer", optimizer])
        evaluate([*flags, "--optimizer", optimizer])
    evaluate([*flags, "--optimizer", "bo", "--evalDataset", "navigate"])  # collateral damage
    for method in ("batch", "lora"):  # baselines on the same questions
        baselines.run([*flags, "--method", method, "--maxSteps", "1"])
    shared = [*flags, "--optimizer", "bo", "--angleSharing", "all"]  # a variant (issue 12's knobs)
    train(shared)
    evaluate(shared)
    evaluate([*shared, "--evalDataset", "navigate"])  # the variant's collateral damage
    smaller = [*flags, "--optimizer", "bo", "--trainingDataSize", "3"]  # a study: one setting changed
    train(smaller)
    evaluate(smaller)
    second = [*flags, "--optimizer", "bo", "--layer", "0", "1"]  # TINY_SECOND's line (the second model's block)
    train(second)
    evaluate(second)
    second_variant = [*second, "--metric", "choice_ce"]  # a variant in the second model's block
    train(second_variant)
    evaluate(second_variant)
    results = tmp_path / "results"
    assert collect(tmp_path / "runs", results) == 8
    report.build(results, TINY_RECIPE, TINY_SECOND)
    first = {name: (results / name).read_bytes() for name in BUILT}
    report.build(results, TINY_RECIPE, TINY_SECOND)
    assert {name: (results / name).read_bytes() for name in BUILT} == first
    summary = json.loads(first["summary.json"])
    row = summary["classification"]["entailed_polarity"]
    assert row["n_test"] == 12 and set(row["zero_shot"]) >= {"base", "tarot", "random"}
    assert summary["average_improvement"]["few_shot"]["tasks"] == 1
    readme = (results / "README.md").read_text()
    assert "| entailed_polarity | 12 | few-shot |" in readme
    assert list(summary["collateral"]) == ["entailed_polarity"]
    assert summary["collateral"]["entailed_polarity"]["navigate"]["n_test"] == 12
    assert "| entailed_polarity | navigate | 12 |" in readme
    study = summary["studies"]["trainingDataSize"]["entailed_polarity"]
    assert [row["trainingDataSize"] for row in study] == [3, 4]
    assert sorted(run["path"].rsplit("_", 1)[1] for run in summary["other_runs"]) == ["seed0", "seed0", "share-all"]
    assert "<!-- study:trainingDataSize -->" in readme
    assert len(first["search_curves.png"]) > 1000 and len(first["baselines.png"]) > 1000
    comparison = summary["baselines"]["entailed_polarity"]
    assert set(comparison) == {"unedited", "one_answer", "batch", "lora", "tarot", "random", "tarot[all]"}
    assert set(comparison["batch"]["few_shot"]) == {
        "seeds", "restricted_accuracy", "restricted_f1", "paired_ci95", "top_answer_share",
    }  # fmt: skip
    bo_run = next((results / "smollm2" / "entailed_polarity").glob("*layer_0_2_*_n4_bo_init2_seed0"))
    answers = json.loads((bo_run / "results.json").read_text())["few_shot"]["tarot"]["restricted_predictions"]
    most = max(answers.count(a) for a in set(answers))  # the share of the most common answer, by hand
    assert comparison["tarot"]["few_shot"]["top_answer_share"]["per_seed"] == [round(most / len(answers), 4)]
    assert comparison["one_answer"]["few_shot"]["top_answer_share"] == comparison["one_answer"]["few_shot"]["accuracy"]
    lora = comparison["lora"]["few_shot"]
    assert set(METRICS) < set(lora) and lora["seeds"] == [0] and lora["f1"]["sd"] is None
    assert lora["paired_ci95"] == [
        json.loads(
            (results / "smollm2" / "entailed_polarity" / "Baseline_lora_mix_n4_seed0" / "results.json").read_text()
        )["few_shot"]["lora"]["paired_ci95"]["restricted_f1"]
    ]
    assert summary["baseline_verdicts"]["entailed_polarity"]["best_free_baseline"] == "batch"
    # TaRot against its random-search control: the paired interval of the two runs' own six-shot answers
    random_run = next((results / "smollm2" / "entailed_polarity").glob("*layer_0_2_*_n4_random_init2_seed0"))
    controls = json.loads((random_run / "results.json").read_text())["few_shot"]["tarot"]["restricted_predictions"]
    test_ids = json.loads((bo_run / "results.json").read_text())["test_ids"]
    targets = [by_id("entailed_polarity")[i] for i in test_ids]
    versus_control = summary["baseline_verdicts"]["entailed_polarity"]
    assert versus_control["random_control_seeds"] == [0]
    assert versus_control["minus_random_control"] == [paired_metric_interval("f1", answers, controls, targets)]
    assert sum(versus_control["beats_random_control"].values()) == 1
    assert summary["variant_verdicts"]["tarot[all]"]["entailed_polarity"]["random_control_seeds"] == []  # none ran
    assert comparison["tarot[all]"]["few_shot"]["seeds"] == [0]
    assert set(summary["variant_verdicts"]["tarot[all]"]["entailed_polarity"]["beats_best_free"]) == {
        "better", "worse", "unclear",
    }  # fmt: skip
    assert "<!-- variants -->" in readme and "| tarot[all] | " in readme and "| random search | " in readme
    collateral = summary["variant_collateral"]["tarot[all]"]["entailed_polarity"]
    assert set(collateral) == {"own", "navigate"} and collateral["navigate"]["n_test"] == 12
    assert collateral["own"]["few_shot"]["base"] == row["few_shot"]["base"]  # the same questions, unedited
    assert "| entailed_polarity, tarot[all] | navigate | 12 |" in readme
    assert "<!-- baselines -->" in readme and "| entailed_polarity | few-shot | 1 |" in readme
    # the second model's block: its own TaRot run, and the calibration (which has no layer range)
    block = summary["second_model"]
    assert block["layer"] == [0, 1] and set(block["baselines"]["entailed_polarity"]) == {
        "unedited", "one_answer", "batch", "tarot", "tarot[choice_ce]",
    }  # fmt: skip
    assert block["baselines"]["entailed_polarity"]["tarot"]["few_shot"]["seeds"] == [0]
    assert block["baseline_costs"]["tarot"]["seconds_per_evaluation"] > 0
    assert "<!-- second_model -->" in readme
    second_section = readme.split("<!-- second_model -->")[1].split("<!-- /second_model -->")[0]
    assert "| tarot[choice_ce] | " in second_section  # its variants table
    assert row["seconds_per_evaluation"]["tarot"] == pytest.approx(row["search_seconds"]["tarot"] / 4, abs=0.01)
    assert "<!-- costs -->" in readme
    # with train.sh's own recipe none of these tiny runs is in the main table
    report.build(results)
    assert json.loads((results / "summary.json").read_text())["classification"] == {}


def test_one_answer_baseline(tmp_path):
    path = tmp_path / "task.jsonl"
    path.write_text("".join(json.dumps({"id": i, "input": f"q{i}", "target": t}) + "\n" for i, t in enumerate("aaabb")))
    one = one_answer(str(path), [0, 1, 2, 3])  # the test set: three a, one b
    assert one is not None and one["answer"] == "a" and one["accuracy"] == 0.75
    assert one["f1"] == pytest.approx((6 / 7 + 0) / 2)  # F1 of a: 2*3 / (2*3 + 1 false positive); of b: 0
    assert one_answer("ag_news_is_not_here", [0]) is None


def test_evaluation_from_the_collected_files_alone(tmp_path):
    """results/ keeps the best angles and the split: the evaluation needs neither runs/ nor a new search."""
    flags = [*TINY, "--dataset", "entailed_polarity", "--iterations", "4", "--testingDataSize", "8"]
    original = train([*flags, "--outputDir", str(tmp_path / "runs")])
    expected = evaluate([*flags, "--outputDir", str(tmp_path / "runs")])
    assert collect(tmp_path / "runs", tmp_path / "results") == 1
    kept = RunDir(tmp_path / "results" / original.path.relative_to(tmp_path / "runs"))
    assert sorted(p.name for p in kept.path.iterdir() if not p.name.startswith(".")) == sorted(
        ["config.json", "split.json", "history.jsonl", "best_angles.safetensors", "results.json"]
    )
    assert "points.safetensors" not in KEPT_FILES and not kept.points.exists()
    best = max(read_jsonl(kept.history), key=lambda row: row["value"])
    assert best["iteration"] > 0  # edited angles, not the unedited model's zeros
    kept.results.unlink()
    again = evaluate([*flags, "--outputDir", str(tmp_path / "results")])
    assert again == expected and json.loads(kept.results.read_text()) == expected
    assert again["best_iteration"] == best["iteration"] and again["evaluations"] == 2 + 4
    # the keys of the committed files, in their order, then the ones added since (tarot/results.py): the
    # report reads both alike
    committed = _key_paths(json.loads((ROOT / COMMITTED_RUN / "results_on_navigate.json").read_text()))
    written = _key_paths(json.loads(kept.results.read_text()))
    assert [key for key in written if key in committed] == committed
    added = {key.rsplit(".", 1)[-1] for key in set(written) - set(committed)}
    assert added == {"restricted_f1", "predictions", "restricted_predictions", "paired_ci95"} | set(PAIRED_METRICS)

    # angles that are not those of the history's best row, or none at all: a one-line error
    shape = tuple(json.loads(kept.config.read_text())["angle_shape"])
    angles, row = best_angles(kept, shape)
    assert torch.equal(angles, best_angles(original, shape)[0]) and row == best
    other = (best["iteration"] + 1) % 6
    write_tensors(kept.best, {"angles": angles}, {"iteration": str(other), "value": repr(best["value"])})
    with pytest.raises(UsageError, match=f"holds evaluation {other} .* not the best row of .*history.jsonl"):
        best_angles(kept, shape)
    kept.best.unlink()
    with pytest.raises(UsageError, match=r"holds neither points\.safetensors nor best_angles\.safetensors"):
        best_angles(kept, shape)
    kept.split.unlink()  # as in the runs collected before split.json was kept
    with pytest.raises(
        UsageError,
        match=r"no split\.json in .*: run trainRotation_NN_kernel\.py with these flags and --output",
    ):
        kept.require_trained({}, "trainRotation_NN_kernel.py")


def test_a_kept_run_without_its_points_gets_them_back_by_replaying_the_search(tmp_path):
    """The runs committed before results/ kept split.json and best_angles.safetensors: training again into
    their folder replays the optimiser over the logged values (the same points, bit for bit; one evaluation
    checks the best), so they can be evaluated again without searching."""
    flags = [*TINY, "--dataset", "entailed_polarity", "--iterations", "4"]
    original = train([*flags, "--outputDir", str(tmp_path / "runs")])
    kept = RunDir(tmp_path / "kept" / original.path.relative_to(tmp_path / "runs"))
    kept.path.mkdir(parents=True)
    for name in ("config.json", "history.jsonl"):
        shutil.copy(original.path / name, kept.path / name)
    train([*flags, "--outputDir", str(tmp_path / "kept")])
    assert torch.equal(read_tensors(kept.points)["points"], read_tensors(original.points)["points"])
    assert torch.equal(read_tensors(kept.best)["angles"], read_tensors(original.best)["angles"])
    assert json.loads(kept.split.read_text()) == json.loads(original.split.read_text())
    assert read_jsonl(kept.history) == read_jsonl(original.history)

    # a history whose best value the replayed point does not score again: the code or data changed
    history = read_jsonl(kept.history)
    best = max(range(len(history)), key=lambda i: history[i]["value"])
    history[best]["value"] += 0.1
    kept.history.write_text("".join(json.dumps(row) + "\n" for row in history))
    kept.points.unlink()
    with pytest.raises(UsageError, match=r"points\.safetensors is missing, and the point replayed .* scores"):
        train([*flags, "--outputDir", str(tmp_path / "kept")])


def _scored(method: str, seed: int, f1: float, ids: list[int], interval=None, task: str = "navigate") -> Scored:
    metrics = {"restricted_f1": f1, "restricted_accuracy": f1 + 0.1}
    method_metrics = metrics | ({"paired_ci95": {"restricted_f1": interval}} if interval else {})
    setting = {"base": {"restricted_f1": 0.3, "restricted_accuracy": 0.4}, "method": method_metrics}
    return Scored(method, task, seed, f"{method}{seed}", ids, {"zero_shot": setting, "few_shot": setting}, 1.0)


def test_the_comparison_is_over_seeds_and_only_on_the_same_questions():
    scored = [
        _scored("batch", 0, 0.5, [1, 2], [0.1, 0.3]),
        _scored("batch", 1, 0.7, [3, 4], [-0.1, 0.2]),
        _scored("tarot", 0, 0.2, [1, 2], [-0.2, -0.05]),
        _scored("tarot", 1, 0.4, [3, 4], [-0.1, 0.1]),
    ]
    comparison = compare(scored)
    rows = table({"baselines": comparison})
    # batch: one seed's interval above 0 (better), tarot: one below (worse); the other seeds' contain 0
    cells = "0.300 ± 0.000 (0.40) | - | 0.600 ± 0.141 (0.70) ▲1 | - | - | 0.300 ± 0.141 (0.40) ▼1 | - |"
    assert f"| navigate | few-shot | 2 | {cells}" in rows
    table_ = comparison["navigate"]
    assert list(table_) == ["unedited", "one_answer", "batch", "tarot"]
    f1 = table_["batch"]["few_shot"]["restricted_f1"]
    assert f1["per_seed"] == [0.5, 0.7] and f1["mean"] == 0.6 and f1["sd"] == pytest.approx(0.1414, abs=1e-4)
    assert table_["batch"]["few_shot"]["paired_ci95"] == [[0.1, 0.3], [-0.1, 0.2]]
    assert table_["unedited"]["zero_shot"]["restricted_f1"]["per_seed"] == [0.3, 0.3]
    assert "paired_ci95" not in table_["unedited"]["zero_shot"]
    with pytest.raises(UsageError, match=r"navigate seed 1: .* asked different test questions"):
        compare([*scored[:3], _scored("tarot", 1, 0.4, [3, 5])])
    with pytest.raises(UsageError, match="two tarot runs for navigate seed 1"):
        compare([*scored, _scored("tarot", 1, 0.4, [3, 4])])


def test_the_held_out_check_compares_the_chosen_points_with_their_random_controls():
    """--selectOn dev:K runs: the chosen point's held-out value minus its random-search control's, per seed,
    and the sentence that counts the seeds where it is lower and where the test questions say the opposite."""
    ids = list(range(40))
    targets = [by_id("navigate")[i] for i in ids]
    wrong = {answer: next(other for other in set(targets) if other != answer) for answer in set(targets)}

    def answering(method: str, seed: int, right: int, held_out: float | None) -> Scored:
        predictions = targets[:right] + [wrong[t] for t in targets[right:]]  # the first `right` answers right
        item = _scored(method, seed, 0.5, ids)
        few_shot = item.settings["few_shot"] | {"method": {"restricted_f1": 0.5, "restricted_predictions": predictions}}
        return dataclasses.replace(item, settings=item.settings | {"few_shot": few_shot}, held_out=held_out)

    scored = [
        answering("tarot[dev:5]", 0, 40, -0.9),  # lower held-out value than its control's, better on test
        answering("random[dev:5]", 0, 0, -0.5),
        answering("tarot[dev:5]", 1, 20, -0.2),  # higher, and the same answers
        answering("random[dev:5]", 1, 20, -0.4),
        answering("batch", 0, 20, None),
        answering("batch", 1, 20, None),
    ]
    found = verdicts(scored, compare(scored), "tarot[dev:5]")["navigate"]
    assert found["held_out_minus_random_control"] == [pytest.approx(-0.4), pytest.approx(0.2)]
    assert found["beats_random_control"] == {"better": 1, "worse": 0, "unclear": 1}
    rows = variants_table({"baselines": compare(scored), "variant_verdicts": {"tarot[dev:5]": {"navigate": found}}})
    assert rows.endswith(
        "tarot[dev:5]: the chosen point's held-out value is below its random-search control's in 1 of 2 runs; "
        "in 1 of those, its edit is the better one on the test questions (paired interval above 0)"
    )
    without = [dataclasses.replace(item, held_out=None) for item in scored]  # no --selectOn: no check
    assert "held_out_minus_random_control" not in verdicts(without, compare(without), "tarot[dev:5]")["navigate"]


def test_the_variants_mean_change_is_over_the_tasks_run_at_every_seed():
    """The variants table's last numeric column: the mean over tasks of (method - unedited on the same seed),
    over the tasks with the most seeds only; - for a method missing one of them."""
    scored = [
        _scored("tarot", 0, 0.2, [1, 2]),
        _scored("tarot", 1, 0.4, [3, 4]),  # navigate: -0.1, +0.1 against the unedited 0.3
        _scored("tarot", 0, 0.5, [1, 2], task="winowhy"),
        _scored("tarot", 1, 0.9, [3, 4], task="winowhy"),  # winowhy: +0.2, +0.6
        _scored("tarot", 0, 0.9, [1, 2], task="color"),  # one seed only: not in the mean
        _scored("batch", 0, 0.5, [1, 2]),
        _scored("batch", 1, 0.7, [3, 4]),  # navigate only: no mean
    ]
    rows = variants_table({"baselines": compare(scored)}).splitlines()
    assert "Mean change: over navigate, winowhy (the tasks run at every seed)" in rows[0]
    assert rows[2] == "| method | color | navigate | winowhy | mean change | search s per line (per evaluation) |"
    tarot = next(row for row in rows if row.startswith("| TaRot (BO) | "))
    assert tarot.split(" | ")[-2:] == ["+0.200", "- |"]  # (0.0 + 0.4) / 2
    batch = next(row for row in rows if row.startswith("| batch calibration | "))
    assert batch.split(" | ")[-2] == "-"
