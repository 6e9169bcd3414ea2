"""docs/python.md runs as written: its ```python blocks, in order, in one namespace, in a fresh folder."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON_GUIDE = ROOT / "docs" / "python.md"


def python_blocks(markdown: str) -> list[str]:
    """The bodies of the fenced blocks opened by ```python, in order (other languages are not run)."""
    return re.findall(r"^```python\n(.*?)^```[ \t]*$", markdown, flags=re.MULTILINE | re.DOTALL)


def test_python_blocks_are_found():
    text = "x\n```python\na = 1\n```\n```bash\nexit 1\n```\n```python\nb = a + 1\n```\n"
    assert python_blocks(text) == ["a = 1\n", "b = a + 1\n"]


def test_python_guide_runs(tmp_path, monkeypatch):
    blocks = python_blocks(PYTHON_GUIDE.read_text(encoding="utf-8"))
    assert len(blocks) >= 8, "docs/python.md lost its examples"
    monkeypatch.chdir(tmp_path)  # the guide writes edited-model/ into the working directory
    namespace: dict = {"__name__": "docs_python_guide"}
    for number, block in enumerate(blocks, 1):
        exec(compile(block, f"{PYTHON_GUIDE.name}, python block {number}", "exec"), namespace)
    assert (tmp_path / "edited-model" / "tarot_edit.json").is_file()
