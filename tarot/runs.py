"""Run directories: atomic writes, the saved configuration, the evaluation history and the angles.

A run directory holds ``config.json``, ``split.json``, ``history.jsonl`` (one line per evaluation),
``points.safetensors`` (every evaluated angle vector, for exact resume), ``optimizer_state.json`` and
``best_angles.safetensors``. Every file is written to a temporary name, flushed to disk and renamed, so a kill
or a power cut at any moment leaves the previous complete version. Temporary names are hidden and carry the
writer's process id and host (:func:`partial_prefix`); the next write into the same folder removes those left
by a process that is gone (:func:`remove_stale_partials`).

Processes share a run folder through ``flock`` locks on hidden files (:meth:`RunDir.locked`): a search holds
its folder alone; evaluations of a finished run may run side by side, each writing its own results file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from tarot.errors import UsageError, first_line

ROOT = Path(__file__).resolve().parent.parent
CROSS_RESULTS_PREFIX = "results_on_"  # results_on_<task>.json: a run's angles on another task's test set


_HOST = socket.gethostname()
# .<name>.partial-<pid>@<host>.<random>: what a writer is making (or was making when it was killed)
_PARTIAL = re.compile(r"^\.(?P<target>.+)\.partial-(?P<pid>\d+)@(?P<host>.+)\.[A-Za-z0-9_]+$")


def partial_prefix(path: Path) -> str:
    """Prefix of a temporary name for what will become ``path``: hidden, with this process's id and host."""
    return f".{path.name}.partial-{os.getpid()}@{_HOST}."


def _alive(pid: int, host: str) -> bool:
    """Whether a process may still be running (one on another host may: it cannot be checked from here)."""
    if host != _HOST:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_partials(folder: Path) -> list[Path]:
    """Remove the temporary files and folders in ``folder`` left by processes of this host that are gone
    (killed during a write); return them. A model export killed between moving the earlier export aside
    and renaming the new one into place gets the earlier one back."""
    removed = []
    entries = list(folder.iterdir()) if folder.is_dir() else []
    for entry in entries:
        match = _PARTIAL.match(entry.name)
        if not match or _alive(int(match["pid"]), match["host"]):
            continue
        target = match["target"].removesuffix(".old")
        with contextlib.suppress(FileNotFoundError):  # another process may be cleaning up the same entry
            if match["target"].endswith(".old") and (entry / target).exists() and not (folder / target).exists():
                os.replace(entry / target, folder / target)
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def fsync_path(path: Path) -> None:
    """Flush a file's data, or a folder's entries (the renames in it), to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as error:
        if not path.is_dir() or error.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise  # some file systems cannot sync a folder; a file that cannot be synced is an error
    finally:
        os.close(fd)


def atomic_write(path: Path, write) -> None:
    """Call ``write(temporary_path)``, flush the result to disk, rename it onto ``path``, then flush the folder.

    The temporary file sits next to ``path`` under :func:`partial_prefix`; partial files of killed writers
    in that folder are removed first.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(path.parent)
    handle, tmp = tempfile.mkstemp(prefix=partial_prefix(path), dir=path.parent)
    os.close(handle)
    try:
        write(Path(tmp))
        fsync_path(Path(tmp))  # else a power cut after the rename can leave an empty or partial file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_path(path.parent)


def write_json(path: Path, data) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n"))


def write_jsonl(path: Path, rows) -> None:
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    atomic_write(path, lambda tmp: tmp.write_text(text))


_DAMAGED = "restore it from a copy, or remove the folder {folder} and run again"


def read_json(path: Path, remedy: str = _DAMAGED):
    """A JSON file; a damaged one (cut short, edited) is a UsageError naming it and ``remedy``."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UsageError(f"{path} is damaged (not valid JSON: {error}); " + remedy.format(folder=path.parent)) from None


def read_jsonl(path: Path, remedy: str = _DAMAGED) -> list[dict]:
    """The lines of a JSONL file ([] if it does not exist); a damaged line is a UsageError naming it."""
    if not path.exists():
        return []
    rows = []
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError as error:
        raise UsageError(
            f"{path} is damaged (not UTF-8 text: {error}); " + remedy.format(folder=path.parent, line=1)
        ) from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise UsageError(
                f"{path}:{number} is damaged (not valid JSON: {error.msg}); "
                + remedy.format(folder=path.parent, line=number)
            ) from None
    return rows


def write_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    atomic_write(
        path, lambda tmp: save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    )


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (OSError, SafetensorError) as error:
        raise UsageError(
            f"{path} is damaged ({first_line(error)}); remove the folder {path.parent} and run again"
        ) from None


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


RUN_LOCK = ".run.lock"
_HISTORY_DAMAGED = (
    "delete line {line} and those after it to resume after the evaluations before it, or remove the folder "
    "{folder} and train again"
)


def _lock(path: Path, *, exclusive: bool) -> int | None:
    """Open ``path`` (created if missing) and flock it without waiting: the descriptor, or None when another
    process holds a lock that conflicts. The lock goes when the descriptor is closed or the process ends."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _note_holder(lock: Path, fd: int, role: str, *, shared: bool = False) -> None:
    """Write "<pid>@<host> <role>" into a lock file, for the message of a process that finds it locked. The
    holder of an exclusive lock replaces the content; those of a shared lock each append their line."""
    line = f"{os.getpid()}@{_HOST} {role}\n".encode()
    if shared:
        appender = os.open(lock, os.O_WRONLY | os.O_APPEND)  # one small appended write: never interleaved
        try:
            os.write(appender, line)
        finally:
            os.close(appender)
    else:
        os.ftruncate(fd, 0)
        os.pwrite(fd, line, 0)


def _holders(path: Path, role: str) -> str:
    """The process ids noted in a lock file for ``role`` that may still run: "PID 12" or "PIDs 12, 13"."""
    pids = []
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            match = re.fullmatch(r"(\d+)@(\S+) (\S+)", line.strip())
            if match and match[3] == role and _alive(int(match[1]), match[2]) and match[1] not in pids:
                pids.append(match[1] if match[2] == _HOST else f"{match[1]} on {match[2]}")
    if not pids:
        return "another process"
    return f"PID {pids[0]}" if len(pids) == 1 else f"PIDs {', '.join(pids)}"


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
        self.selection = path / "selection.json"  # --selectOn dev:K: the final point chosen on the dev prompts

    def cross_results(self, task_name: str) -> Path:
        """Results of this run's angles on another task's test set (evaluateRotation.py --evalDataset)."""
        return self.path / f"{CROSS_RESULTS_PREFIX}{task_name}.json"

    def check_identity(self, identity: dict) -> None:
        """Refuse to mix runs: the saved flags that define the search must equal the given ones."""
        if not self.config.exists():
            return
        config = read_json(self.config, "restore it, or remove the folder {folder} and train again")
        if not isinstance(config, dict) or not isinstance(config.get("identity"), dict):
            raise UsageError(f"{self.config} holds no 'identity'; remove the folder {self.path} and train again")
        saved = config["identity"]
        differing = sorted(k for k in set(saved) | set(identity) if saved.get(k) != identity.get(k))
        if differing:
            detail = "; ".join(f"{k}: saved {saved.get(k)!r}, now {identity.get(k)!r}" for k in differing)
            raise UsageError(
                f"--outputDir: {self.path} holds a run with other settings ({detail}); "
                f"use another --outputDir or remove that folder"
            )

    def require_same_split(self, record: dict) -> None:
        """The saved split.json must hold what these flags build now (ids, shots, exact prompts)."""
        saved = read_json(self.split, "remove the folder {folder} and train again")
        differing = sorted(key for key in record if key != "test" and saved.get(key) != record[key])
        if differing:
            raise UsageError(
                f"{self.split}: {', '.join(differing)} differ from what these flags build now "
                f"(the data file, tokenizer or chat template changed); use another --outputDir"
            )

    def require_search(self, script: str) -> None:
        """A search has run in this folder: checked before the model loads."""
        if not self.config.exists() or not self.history.exists():
            raise UsageError(f"no trained run for these flags at {self.path}: run {script} first")

    def require_trained(self, record: dict, script: str) -> None:
        """A search has run here on the prompts that these flags build now."""
        self.require_search(script)
        if not self.split.exists():  # results/ kept no split.json before report.py collected it
            raise UsageError(
                f"no split.json in {self.path}: run {script} with these flags and --outputDir first (without "
                f"searching again, it replays the points from history.jsonl and writes split.json)"
            )
        self.require_same_split(record)

    def read_history(self) -> list[dict]:
        """history.jsonl's rows; a damaged line is a UsageError that says how to resume before it."""
        return read_jsonl(self.history, _HISTORY_DAMAGED)

    def load_evaluations(self) -> tuple[list[dict], np.ndarray | None]:
        """History rows and the matching angle vectors (the points file may hold one extra, unlogged row)."""
        history = self.read_history()
        if not history:
            return [], None
        points = read_tensors(self.points)["points"].numpy()
        if len(points) < len(history):
            raise UsageError(
                f"{self.points} holds fewer points than {self.history} has lines; "
                f"the run directory is damaged: remove it and train again"
            )
        return history, points[: len(history)]

    @contextlib.contextmanager
    def locked(self, output: Path | None = None) -> Iterator[None]:
        """Hold the folder for a search (``output`` None), or for an evaluation that writes ``output``.

        A search holds the folder alone (it is created here). Evaluations only read the run, so several may
        run side by side, but never during its search, and only one at a time writes a given ``output``.
        A conflict is a UsageError naming the folder and the other process; flock locks go with the
        process, so a killed one leaves no stale lock.
        """
        run_lock = self.path / RUN_LOCK
        if output is None:
            self.path.mkdir(parents=True, exist_ok=True)
            fd = _lock(run_lock, exclusive=True)
            if fd is None:
                probe = _lock(run_lock, exclusive=False)  # granted: the holders are evaluations, not a search
                if probe is None:
                    detail = f"a search is running on it ({_holders(run_lock, 'search')})"
                else:
                    os.close(probe)
                    detail = f"an evaluation of it is running ({_holders(run_lock, 'evaluation')})"
                raise UsageError(f"--outputDir: {self.path} is in use: {detail}; wait for it to end, or stop it")
            _note_holder(run_lock, fd, "search")
            locks = [fd]
        else:
            fd = _lock(run_lock, exclusive=False)
            if fd is None:
                raise UsageError(
                    f"--outputDir: the search in {self.path} is still running ({_holders(run_lock, 'search')}); "
                    f"evaluate it when it has ended"
                )
            _note_holder(run_lock, fd, "evaluation", shared=True)
            output_lock = output.with_name(f".{output.name}.lock")
            out_fd = _lock(output_lock, exclusive=True)
            if out_fd is None:
                os.close(fd)
                raise UsageError(
                    f"--outputDir: another evaluation ({_holders(output_lock, 'evaluation')}) is writing "
                    f"{output}; wait for it to end"
                )
            _note_holder(output_lock, out_fd, "evaluation")
            locks = [out_fd, fd]
        try:
            yield
        finally:
            if output is None and [p.name for p in self.path.iterdir()] == [RUN_LOCK]:
                # a search that failed before its first write (a flag the model refuses): no empty folder left
                shutil.rmtree(self.path, ignore_errors=True)
            for lock in locks:
                os.close(lock)

    def save_evaluations(self, history: list[dict], points: np.ndarray) -> None:
        # Points first: a kill between the two writes leaves one extra point, which loading ignores.
        write_tensors(self.points, {"points": torch.from_numpy(np.ascontiguousarray(points))})
        write_jsonl(self.history, history)
