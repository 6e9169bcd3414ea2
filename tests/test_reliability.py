"""Reliability: the scripts check their flags before torch loads, and ten defects a new user met, each with
a test that failed before its fix (the defect's number from the task that fixed them is in each name's
docstring)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from conftest import ROOT, fails_with, make_tiny_model, tiny_flags

from tarot import choices, cli
from tarot.classification import evaluate, train
from tarot.data import TASKS, XSUM_INSTRUCTION, load_task, make_split
from tarot.errors import UsageError
from tarot.runs import RunDir, atomic_write, partial_prefix, write_json
from tarot.scoring import PromptSet, build_prompts

TINY = tiny_flags(iterations=0, testing=4)
SCRIPTS = (
    "trainRotation_NN_kernel.py",
    "evaluateRotation.py",
    "train_topic.py",
    "test_topic.py",
    "train_summarization.py",
    "test_summarization.py",
)


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _dead_pid() -> int:
    """The id of a process that has ended."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


# ---- A. --help and flag errors answer before torch is imported -------------------------------------


def _script(*argv: str) -> tuple[subprocess.CompletedProcess, set[str], list[str]]:
    """Run a script with -X importtime: its result, the modules it imported, its other stderr lines."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", *argv], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    lines = result.stderr.splitlines()
    imported = {line.rsplit("|", 1)[1].strip() for line in lines if line.startswith("import time:")}
    return result, imported, [line for line in lines if not line.startswith("import time:")]


def _heavy(imported: set[str]) -> set[str]:
    return {name for name in imported if name.split(".")[0] in ("torch", "transformers", "rotation")}


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_answers_without_importing_torch(script):
    result, imported, stderr = _script(script, "--help")
    assert result.returncode == 0 and "--dataset" in result.stdout and stderr == []
    assert "tarot.cli" in imported and not _heavy(imported)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["trainRotation_NN_kernel.py", "--dataset", "navigate", "--layer", "5", "2"],
            "trainRotation_NN_kernel.py: error: --layer: need 0 <= START < END, got 5 2",
        ),
        (
            ["evaluateRotation.py", "--dataset", "navigate", "--layer", "5"],
            "evaluateRotation.py: error: argument --layer: expected 2 arguments",
        ),
        (
            ["train_topic.py", "--dataset", "color"],
            "train_topic.py: error: --dataset: 'color' is not one of review_topic, ag_news",
        ),
        (
            ["test_summarization.py", "--dataset", "imdb", "--instruction", "Be nice."],
            "test_summarization.py: error: --instruction: only xsum prompts have an instruction; imdb and "
            "toxicity continue raw text",
        ),
        (
            ["train_summarization.py", "--dataset", "imdb", "--scorer", "bogus"],
            "train_summarization.py: error: --scorer: unknown 'bogus'; choose one of sentiment, sentiment:spacy, "
            "sentiment:textblob, sentiment:vader, toxicity, toxicity:profanity, rouge, hf:<model id>[:<label>]",
        ),
        (
            ["test_summarization.py", "--dataset", "imdb", "--scorer", "rouge"],
            "test_summarization.py: error: --scorer: 'rouge' does not fit imdb: it needs reference texts, which "
            "only xsum has; use a classifier such as sentiment or toxicity",
        ),
        (
            ["evaluateRotation.py", "--dataset", "navigate", "--evalDataset", "nope"],
            "evaluateRotation.py: error: --evalDataset: unknown 'nope'; choose one of color, navigate, "
            "entailed_polarity, winowhy, review_topic, ag_news or give a path to a .jsonl file",
        ),
    ],
)
def test_flag_errors_answer_without_importing_torch(argv, message):
    result, imported, stderr = _script(*argv)
    assert result.returncode == 2 and stderr == [message]
    assert "tarot.cli" in imported and not _heavy(imported)


def test_report_help_answers_without_importing_torch():
    result, imported, stderr = _script("report.py", "--help")
    assert result.returncode == 0 and "--collect" in result.stdout and stderr == []
    assert not _heavy(imported)


def test_flag_choices_agree_with_the_modules_that_implement_them():
    import rotation
    from tarot import generation, models, scoring

    assert (rotation.METHODS, rotation.MODULES) == (choices.METHODS, choices.MODULES)
    assert all(rotation.num_angles(method, 4) > 0 for method in choices.METHODS)
    prompts = PromptSet([""], [[1]], [1], [0], [[0, 2]], ["a"])
    values = scoring.objective_values(torch.zeros(1, 5), prompts, torch.zeros(1, 5))
    assert set(values) == set(choices.CLASSIFICATION_METRICS)
    assert tuple(models.DTYPES) == choices.DTYPE_NAMES
    assert all(isinstance(dtype, torch.dtype) for dtype in models.DTYPES.values())
    assert generation.DEFAULT_SCORERS == choices.DEFAULT_SCORERS
    assert set(choices.DEFAULT_SCORERS) == set(generation.DATA_FILES)
    assert models.DEFAULT_MODEL == choices.DEFAULT_MODEL


def test_8_ctrl_c_during_the_imports_exits_130_without_a_traceback(tmp_path):
    """Defect 8: SIGINT while torch was being imported printed a traceback."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-X",
            "importtime",
            "trainRotation_NN_kernel.py",
            "--dataset",
            "navigate",
            "--outputDir",
            str(tmp_path),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # the script as a terminal starts it: SIGINT at its default, whatever an earlier test (or the runner)
        # left in this process (an ignored SIGINT is inherited, and Python then installs no handler)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert process.stderr is not None
        seen = []
        for line in process.stderr:  # wait until the heavy imports have begun
            seen.append(line)
            if re.search(r"\|\s+torch\b", line):
                break
        process.send_signal(signal.SIGINT)
        _, rest = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    stderr = [line for line in "".join(seen).splitlines() + rest.splitlines() if not line.startswith("import time:")]
    assert process.returncode == 130, stderr
    assert not any("Traceback" in line for line in stderr)
    assert stderr and stderr[-1].startswith("trainRotation_NN_kernel.py: interrupted")


# ---- B. the defects --------------------------------------------------------------------------------


def test_1_answers_without_choices_that_share_a_first_token_are_an_error(tmp_path, capsys, smollm2):
    """Defect 1: without choices, "apple pie" and "apple tart" both read as right from the token "apple"."""
    desserts = ("apple pie", "apple tart", "cherry cake")
    data = _write_jsonl(
        tmp_path / "dessert.jsonl", [{"input": f"Dessert {i}?", "target": desserts[i % 3]} for i in range(20)]
    )
    fails_with(
        capsys,
        train,
        [*TINY, "--dataset", str(data), "--outputDir", str(tmp_path / "runs")],
        "--dataset: answers ['apple pie', 'apple tart'] of dessert start with the same token",
    )
    assert not list((tmp_path / "runs").rglob("config.json"))
    # answers with different first tokens are fine
    fine = load_task(str(_write_jsonl(tmp_path / "fine.jsonl", [{"input": "q", "target": t} for t in desserts[1:]])))
    prompts = build_prompts(smollm2[1], fine, [], fine.examples, [0, 0])
    assert prompts.answer_ids[0] != prompts.answer_ids[1]


def test_2_output_dir_that_is_a_file_is_a_flag_error(tmp_path, capsys):
    """Defect 2: --outputDir naming an existing file gave a NotADirectoryError traceback."""
    file = tmp_path / "runs.txt"
    file.write_text("notes\n")
    fails_with(
        capsys, train, [*TINY, "--dataset", "navigate", "--outputDir", str(file)], f"--outputDir: {file} is a file"
    )
    fails_with(
        capsys,
        evaluate,
        [*TINY, "--dataset", "navigate", "--outputDir", str(file / "inside")],
        f"--outputDir: {file} is a file, not a folder (it would be inside {file})",
    )
    assert file.read_text() == "notes\n"


def test_3_partial_file_of_a_killed_writer_is_removed_by_the_next_write(tmp_path):
    """Defect 3: a writer killed with SIGKILL left its temporary file for ever."""
    code = (
        "import sys, time\nfrom pathlib import Path\nfrom tarot.runs import atomic_write\n"
        "def write(tmp):\n    tmp.write_text('half a line')\n    print(tmp, flush=True)\n    time.sleep(600)\n"
        f"atomic_write(Path({str(tmp_path / 'history.jsonl')!r}), write)\n"
    )
    writer = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout is not None
        partial = Path(writer.stdout.readline().strip())
    finally:
        writer.kill()
        writer.wait()
    assert partial.parent == tmp_path and partial.read_text() == "half a line"
    assert partial.name.startswith(f".history.jsonl.partial-{writer.pid}@")
    # a partial of a process that is still running (this one) is left alone
    handle, live = tempfile.mkstemp(prefix=partial_prefix(tmp_path / "config.json"), dir=tmp_path)
    os.close(handle)
    write_json(tmp_path / "history.jsonl", {"done": True})
    assert not partial.exists() and Path(live).exists()
    assert json.loads((tmp_path / "history.jsonl").read_text()) == {"done": True}


def test_3_stale_export_folders_are_removed_and_an_interrupted_replacement_restored(tmp_path, smollm2):
    """Defect 3: a model export (or the model cache) killed midway left a hidden folder of the model's size."""
    from tarot.models import save_model

    dead, host = _dead_pid(), socket.gethostname()
    stale = tmp_path / f".exp1.partial-{dead}@{host}.abc123"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"\0" * 1000)
    # killed between moving the earlier export of exp2 aside and renaming its new version into place
    aside = tmp_path / f".exp2.old.partial-{dead}@{host}.def456"
    (aside / "exp2").mkdir(parents=True)
    (aside / "exp2" / "tarot_edit.json").write_text("{}")
    live = tmp_path / f".exp3.partial-{os.getpid()}@{host}.ghi789"  # this process: still writing
    live.mkdir()
    save_model(make_tiny_model("llama"), smollm2[1], tmp_path / "exp1", {"note": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["exp1", "exp2", live.name])
    assert (tmp_path / "exp2" / "tarot_edit.json").read_text() == "{}"
    assert json.loads((tmp_path / "exp1" / "tarot_edit.json").read_text()) == {"note": 1}


def test_4_run_folder_locks(tmp_path):
    """Defect 4: two processes could run on one folder. A search holds it alone; evaluations share it, one per
    output file. (flock locks of two open files conflict within one process too.)"""
    run = RunDir(tmp_path / "run")
    folder, pid = re.escape(str(run.path)), os.getpid()
    with run.locked():  # a search that fails before writing anything leaves no folder behind
        pass
    assert not run.path.exists()
    with run.locked():
        run.config.write_text("{}")
        search = rf"^--outputDir: {folder} is in use: a search is running on it \(PID {pid}\)"
        with pytest.raises(UsageError, match=search), run.locked():
            pass
        running = rf"^--outputDir: the search in {folder} is still running \(PID {pid}\)"
        with pytest.raises(UsageError, match=running), run.locked(run.results):
            pass
    with run.locked(run.results), run.locked(run.cross_results("navigate")):  # evaluations side by side
        writing = rf"another evaluation \(PID {pid}\) is writing {re.escape(str(run.results))}"
        with pytest.raises(UsageError, match=writing), run.locked(run.results):
            pass
        evaluating = rf"{folder} is in use: an evaluation of it is running \(PID {pid}\)"
        with pytest.raises(UsageError, match=evaluating), run.locked():
            pass
    with run.locked():  # everything was released
        pass
    assert all(path.name.startswith(".") for path in run.path.iterdir() if path != run.config)  # hidden locks


def test_4_a_second_process_on_a_run_folder_stops_at_once(tmp_path, capsys):
    """Defect 4: the error names the folder and the other process; a killed holder leaves no stale lock."""
    flags = [*TINY, "--dataset", "navigate", "--outputDir", str(tmp_path)]
    path = cli.run_path(cli.train_flags(flags), "navigate", "NN_kernel")
    code = (
        "import sys\nfrom pathlib import Path\nfrom tarot.runs import RunDir\n"
        f"with RunDir(Path({str(path)!r})).locked():\n    print('held', flush=True)\n    sys.stdin.read()\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        fails_with(capsys, train, flags, f"--outputDir: {path} is in use: a search is running on it (PID {holder.pid})")
    finally:
        holder.kill()
        holder.wait()
    assert not (path / "config.json").exists()
    with RunDir(path).locked():
        pass


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished tiny search of navigate, trained once; tests work on copies."""
    out = tmp_path_factory.mktemp("trained")
    run = train([*TINY, "--dataset", "navigate", "--outputDir", str(out)])
    return out, run.path.relative_to(out)


def _copy(trained, tmp_path) -> tuple[list[str], RunDir]:
    out, relative = trained
    shutil.copytree(out, tmp_path / "runs")
    return [*TINY, "--dataset", "navigate", "--outputDir", str(tmp_path / "runs")], RunDir(tmp_path / "runs" / relative)


def test_5_damaged_run_files_are_one_line_errors(trained, tmp_path, capsys):
    """Defect 5: a config.json or history.jsonl cut short gave a traceback."""
    flags, run = _copy(trained, tmp_path)
    config = run.config.read_text()
    run.config.write_text(config[: len(config) // 2])
    for main in (train, evaluate):
        err = fails_with(capsys, main, flags, f"{run.config} is damaged (not valid JSON")
        assert f"remove the folder {run.path} and train again" in err
    run.config.write_text(config)
    history = run.history.read_text().splitlines()
    run.history.write_text(history[0] + "\n" + history[1][:20])
    for main in (train, evaluate):
        err = fails_with(capsys, main, flags, f"{run.history}:2 is damaged (not valid JSON")
        assert "delete line 2 and those after it to resume" in err
    run.history.write_bytes(b"\xff\n")  # not UTF-8 at all
    for main in (train, evaluate):
        fails_with(capsys, main, flags, f"{run.history} is damaged (not UTF-8 text")
    run.history.write_text(history[0] + "\n")  # doing what the message says resumes the search
    train(flags)
    assert [json.loads(line)["value"] for line in run.history.read_text().splitlines()] == [
        json.loads(line)["value"] for line in history
    ]


def test_6_dataset_files(tmp_path, capsys):
    """Defect 6: a missing .jsonl file was an "unknown dataset"; .JSONL was not recognised."""
    with pytest.raises(UsageError, match=r"^--dataset: the file 'missing\.jsonl' does not exist$"):
        load_task("missing.jsonl")
    with pytest.raises(UsageError, match=r"^--evalDataset: the file '.*gone\.JSONL' does not exist$"):
        load_task(str(tmp_path / "gone.JSONL"), flag="--evalDataset")
    upper = _write_jsonl(tmp_path / "Parity.JSONL", [{"input": f"{i}?", "target": "ab"[i % 2]} for i in range(9)])
    task = load_task(str(upper))
    assert task.name == "Parity" and len(task.examples) == 9 and task.show_choices
    fails_with(
        capsys, train, [*TINY, "--dataset", "missing.jsonl"], "--dataset: the file 'missing.jsonl' does not exist"
    )


def test_7_typing_out_the_default_instruction_resumes_the_same_run(trained, tmp_path, capsys):
    """Defect 7: a resume with the task's own instruction typed out was refused as "other settings"."""
    flags, run = _copy(trained, tmp_path)
    history = run.history.read_text()
    train([*flags, "--instruction", TASKS["navigate"][1]])
    assert run.history.read_text() == history
    assert json.loads(run.config.read_text())["identity"]["instruction"] is None  # as in the committed runs
    capsys.readouterr()
    fails_with(capsys, train, [*flags, "--instruction", "Say True."], "holds a run with other settings")
    xsum = cli.generation_train_flags(["--dataset", "xsum", "--instruction", XSUM_INSTRUCTION])
    assert xsum.instruction is None


def test_9_prompts_longer_than_the_context_are_an_error(tmp_path, capsys, smollm2):
    """Defect 9: prompts longer than the model's context were scored anyway."""
    from tarot.models import context_length

    model = make_tiny_model("llama")  # max_position_embeddings 64: shorter than any chat prompt
    assert context_length(model) == 64 and context_length(make_tiny_model("gpt2")) == 64
    folder = tmp_path / "tiny"
    model.save_pretrained(folder)
    smollm2[1].save_pretrained(folder)
    data = _write_jsonl(
        tmp_path / "parity.jsonl",
        [
            {"input": f"Is {i} even? " + "Look closely. " * 20, "target": "ny"[i % 2 == 0], "choices": ["n", "y"]}
            for i in range(16)
        ],
    )
    first = make_split(load_task(str(data)), train_size=4, test_size=4, seed=0, few_shot="mix").train[0]
    flags = [*TINY, "--model", str(folder), "--dataset", str(data), "--outputDir", str(tmp_path / "runs")]
    err = fails_with(capsys, train, flags, f"--dataset: the prompt for parity example {first.id} (")
    assert re.search(r"is \d+ tokens, longer than the model's context of 64;", err)


def test_10_atomic_write_syncs_the_file_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    """Defect 10: atomic_write never called fsync, so a power cut after the rename could leave an empty file."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.fstat(fd).st_ino))
        real_fsync(fd)

    def replace(source, target):
        events.append(("replace", os.stat(source).st_ino))
        real_replace(source, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    atomic_write(tmp_path / "a.json", lambda tmp: tmp.write_text("{}"))
    file, folder = (tmp_path / "a.json").stat().st_ino, tmp_path.stat().st_ino
    assert events == [("fsync", file), ("replace", file), ("fsync", folder)]
