"""Every code block of README.md runs as written.

The ``python`` blocks run in README order, in one temporary folder that holds a link to the
shipped ``models/`` (so their relative model paths work) and the files of the quick start
(``small.pt``, ``report.json``), which is run first through :func:`exactcomp.cli.main` from the
text of the README's ``bash`` block. A block that stops running, or a quick-start command that
stops working, fails here.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from exactcomp import cli

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks(language: str) -> list[str]:
    """The code blocks of README.md in ``language``, in order."""
    return [code for lang, code in BLOCK.findall(README) if lang == language]


def quick_start_commands() -> list[list[str]]:
    """The ``exactcomp`` commands of the README's bash blocks (after ``&& .venv/bin/python -m``)."""
    out = []
    for code in blocks("bash"):
        for line in code.splitlines():
            m = re.search(r"python3? -m exactcomp (.*)$", line)
            if m and not line.lstrip().startswith("exactcomp "):
                out.append(shlex.split(m.group(1)))
    return out


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A folder where the quick start has run: ``models`` linked, ``small.pt`` written."""
    d = tmp_path_factory.mktemp("readme")
    (d / "models").symlink_to(ROOT / "models", target_is_directory=True)
    return d


def test_the_readme_has_code_blocks() -> None:
    assert len(blocks("python")) >= 2
    assert quick_start_commands(), "no 'python -m exactcomp' command in a bash block"


def test_quick_start_command_runs(workdir, monkeypatch, capsys) -> None:
    monkeypatch.chdir(workdir)
    (argv,) = quick_start_commands()  # one exactcomp command in the quick start
    assert cli.main(argv) == 0, capsys.readouterr()
    doc = json.loads((workdir / "report.json").read_text())
    assert doc["verification"]["status"] == "EQUIVALENT"
    assert doc["neurons_after"] < doc["neurons_before"]
    assert (workdir / "small.pt").is_file()


def test_python_blocks_run_as_written(workdir, monkeypatch, capsys) -> None:
    monkeypatch.chdir(workdir)
    if not (workdir / "small.pt").is_file():  # run alone: the quick start first
        test_quick_start_command_runs(workdir, monkeypatch, capsys)
    for i, code in enumerate(blocks("python")):
        namespace: dict = {"__name__": "__readme__"}
        exec(compile(code, f"README.md python block {i + 1}", "exec"), namespace)
    assert "EQUIVALENT" in capsys.readouterr().out
    assert (workdir / "small.onnx").is_file()


def test_regions_example_prints_what_the_readme_shows(workdir, monkeypatch, capsys) -> None:
    """The ``exactcomp regions`` example and the table printed under it: its counts and bounds
    are still what the command prints (times aside). They were made before ``--stability``
    defaulted to ``bounds`` and no longer held (4 of 32 neurons fixed, not 8)."""
    (command,) = re.findall(r"^python -m exactcomp (regions .*)$", README, re.MULTILINE)
    table = README[README.index(command) :].split("```")[2]  # the block after the command's
    shown = dict(re.findall(r"│ ([a-z ]+?) +│ +([\d,]+(?: of \d+)?) │", table))
    monkeypatch.chdir(workdir)
    (workdir / "docs").mkdir(exist_ok=True)
    assert cli.main(shlex.split(command)) == 0, capsys.readouterr()
    doc = json.loads((workdir / "regions.json").read_text())
    assert shown["regions"] == f"{doc['regions']:,}"
    assert shown["upper bound"] == f"{doc['upper_bound']:,}"
    assert shown["upper bound original"] == f"{doc['upper_bound_original']:,}"
    assert shown["neurons fixed"] == f"{doc['fixed_neurons']} of {doc['neurons']}"
