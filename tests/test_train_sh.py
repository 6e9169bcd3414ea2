"""train.sh's orchestration: the line filter, two lines at a time, the barrier and failure reporting.

The experiments themselves are the scripts' business (tested elsewhere); here a stand-in interpreter logs
each call, so the whole file runs in seconds.
"""

from __future__ import annotations

import shutil
import subprocess

from conftest import ROOT

# Stands in for .venv/bin/python: logs "start"/"end" around each call; fails on winowhy's random line.
FAKE_PYTHON = """#!/usr/bin/env bash
echo "start $*" >> calls.log
sleep 0.2
echo "end $*" >> calls.log
[[ "$*" == *"--dataset winowhy --optimizer random"* ]] && exit 3
exit 0
"""


def _run(tmp_path, *args, jobs="1"):
    shutil.copy(ROOT / "train.sh", tmp_path / "train.sh")
    fake = tmp_path / "fake_python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    result = subprocess.run(
        ["bash", "train.sh", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "PY": str(fake), "JOBS": jobs},
    )
    calls = (tmp_path / "calls.log").read_text().splitlines() if (tmp_path / "calls.log").exists() else []
    return result, calls


def test_filter_runs_only_matching_lines_in_order(tmp_path):
    result, calls = _run(tmp_path, "dataset navigate --optimizer random")
    assert result.returncode == 0, result.stderr
    starts = [c.split()[1] for c in calls if c.startswith("start")]
    # train, evaluate, collect; then the final rebuild of the report
    assert starts == ["trainRotation_NN_kernel.py", "evaluateRotation.py", "report.py", "report.py"]
    assert all("--dataset navigate --optimizer random" in c for c in calls if "report.py" not in c)


def test_two_jobs_run_every_line_report_failures_and_wait_at_the_barrier(tmp_path):
    result, calls = _run(tmp_path, jobs="2")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        line for line in result.stderr.strip().splitlines() if line.startswith("failed: ")
    ]
    assert "--dataset winowhy --optimizer random" in result.stderr and result.stderr.count("failed: ") == 1
    # lines overlapped: some call started before the previous one ended
    running, most = 0, 0
    for call in calls:
        running += 1 if call.startswith("start") else -1
        most = max(most, running)
    assert most == 2
    # the collateral evaluations start only after every line above the barrier has ended
    first_cross = next(i for i, c in enumerate(calls) if c.startswith("start") and "--evalDataset" in c)
    xsum_end = max(i for i, c in enumerate(calls) if c.startswith("end") and "--dataset xsum" in c)
    assert xsum_end < first_cross
    assert sum(c.startswith("start trainRotation") for c in calls) == 8 + 1 + 3  # table, givens, sizes


def test_bad_jobs_is_a_one_line_error(tmp_path):
    result, calls = _run(tmp_path, jobs="two")
    assert result.returncode == 2 and calls == []
    assert result.stderr.strip() == "train.sh: error: JOBS must be a positive integer, got 'two'"
