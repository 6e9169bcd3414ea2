"""Run directories: atomic writes, the saved configuration, the evaluation history and the angles.

A run directory holds ``config.json``, ``split.json``, ``history.jsonl`` (one line per evaluation),
``points.safetensors`` (every evaluated angle vector, for exact resume), ``optimizer_state.json`` and
``best_angles.safetensors``. Every file is written to a temporary name and renamed, so a kill at any moment
leaves the previous complete version.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from tarot.errors import UsageError

ROOT = Path(__file__).resolve().parent.parent
CROSS_RESULTS_PREFIX = "results_on_"  # results_on_<task>.json: a run's angles on another task's test set


def atomic_write(path: Path, write) -> None:
    """Call ``write(temporary_path)``, then rename the result onto ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(handle)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n"))


def write_jsonl(path: Path, rows) -> None:
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    atomic_write(path, lambda tmp: tmp.write_text(text))


def read_json(path: Path):
    return json.loads(path.read_text())


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]


def write_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    atomic_write(
        path, lambda tmp: save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    )


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def versions() -> dict:
    """Package versions that can change a run's numbers."""
    import bayes_opt
    import transformers

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "bayes_opt": bayes_opt.__version__,
    }


def git_commit() -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


class RunDir:
    """One search: its files, and the identity that a resumed or evaluated run must match."""

    def __init__(self, path: Path):
        self.path = path
        self.config = path / "config.json"
        self.split = path / "split.json"
        self.history = path / "history.jsonl"
        self.points = path / "points.safetensors"
        self.state = path / "optimizer_state.json"
        self.best = path / "best_angles.safetensors"
        self.results = path / "results.json"

    def cross_results(self, task_name: str) -> Path:
        """Results of this run's angles on another task's test set (evaluateRotation.py --evalDataset)."""
        return self.path / f"{CROSS_RESULTS_PREFIX}{task_name}.json"

    def check_identity(self, identity: dict) -> None:
        """Refuse to mix runs: the saved flags that define the search must equal the given ones."""
        if not self.config.exists():
            return
        saved = read_json(self.config)["identity"]
        differing = sorted(k for k in set(saved) | set(identity) if saved.get(k) != identity.get(k))
        if differing:
            detail = "; ".join(f"{k}: saved {saved.get(k)!r}, now {identity.get(k)!r}" for k in differing)
            raise UsageError(
                f"--outputDir: {self.path} holds a run with other settings ({detail}); "
                f"use another --outputDir or remove that folder"
            )

    def require_same_split(self, record: dict) -> None:
        """The saved split.json must hold what these flags build now (ids, shots, exact prompts)."""
        saved = read_json(self.split)
        differing = sorted(key for key in record if key != "test" and saved.get(key) != record[key])
        if differing:
            raise UsageError(
                f"{self.split}: {', '.join(differing)} differ from what these flags build now "
                f"(the data file, tokenizer or chat template changed); use another --outputDir"
            )

    def require_trained(self, record: dict, script: str) -> None:
        if not self.config.exists() or not self.history.exists():
            raise UsageError(f"no trained run for these flags at {self.path}: run {script} first")
        self.require_same_split(record)

    def load_evaluations(self) -> tuple[list[dict], np.ndarray | None]:
        """History rows and the matching angle vectors (the points file may hold one extra, unlogged row)."""
        history = read_jsonl(self.history)
        if not history:
            return [], None
        points = read_tensors(self.points)["points"].numpy()
        if len(points) < len(history):
            raise UsageError(
                f"{self.points} holds fewer points than {self.history} has lines; "
                f"the run directory is damaged: remove it and train again"
            )
        return history, points[: len(history)]

    def save_evaluations(self, history: list[dict], points: np.ndarray) -> None:
        # Points first: a kill between the two writes leaves one extra point, which loading ignores.
        write_tensors(self.points, {"points": torch.from_numpy(np.ascontiguousarray(points))})
        write_jsonl(self.history, history)
