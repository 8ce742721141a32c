"""The README's Python examples run, in order, so the documentation never rots."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README shows how to use the library"
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    assert os.path.isdir(tmp_path / "my-trace")


def test_readme_names_the_ci_command() -> None:
    ci = (README.parent / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci in README.read_text()


def test_the_event_kinds_table_lists_every_registered_kind() -> None:
    from eventsrc import REGISTRY

    section = README.read_text().split("## Event kinds", 1)[1].split("\n## ", 1)[0]
    table = [line for line in section.splitlines() if line.startswith("| `")]
    listed = {name for line in table for name in re.findall(r"`([a-z_]+)`", line.split("|")[1])}
    assert listed == {info.name for info in REGISTRY.kinds()}


def test_the_readme_shell_commands_run(tmp_path: Path) -> None:
    """Every line of every ``sh`` block runs (``make`` lines are the Makefile's own targets:
    ``make demo`` is run by tests/test_demo.py, ``make test`` is CI)."""
    eventsrc = Path(sys.executable).with_name("eventsrc")
    made = subprocess.run(
        [str(eventsrc), "demo", "--seconds", "900"], cwd=tmp_path, capture_output=True, text=True
    )
    assert made.returncode == 0, made.stderr
    targets = set(re.findall(r"^([a-z]+):", (README.parent / "Makefile").read_text(), re.M))
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(), flags=re.S)
    ran = 0
    for block in blocks:
        for line in block.splitlines():
            command = line.split("#", 1)[0].strip()
            if not command:
                continue
            words = shlex.split(command)
            if words[0] == "make":
                assert words[1] in targets, line
                continue
            assert words[0] == "eventsrc", line
            done = subprocess.run(
                [str(eventsrc), *words[1:]], cwd=tmp_path, capture_output=True, text=True
            )
            assert done.returncode == 0, (line, done.stderr)
            assert done.stdout.strip(), line
            ran += 1
    assert ran >= 5
