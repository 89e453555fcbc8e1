"""``scripts/setup.sh``: installs into ``.venv`` in the checkout, never into the caller's Python.

The script is run on a copy of itself and ``pyproject.toml`` with a fake interpreter that logs
each call (and makes a fake venv on ``-m venv``), so nothing is installed and nothing is
downloaded: the test reads which interpreter was asked to install what.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FAKE_PYTHON = r"""#!/usr/bin/env bash
# a stand-in interpreter: log the call; '-m venv DIR' makes DIR/bin/python (this script again)
echo "$0 $*" >> "$LOG"
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then
    mkdir -p "$3/bin" && cp "$0" "$3/bin/python" && chmod +x "$3/bin/python"
fi
if [ "$1" = "-c" ]; then exit 1; fi   # 'import torch' fails: nothing installed yet
exit 0
"""


def _checkout(tmp_path: Path) -> tuple[Path, Path, Path]:
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "setup.sh", repo / "scripts" / "setup.sh")
    shutil.copy(ROOT / "pyproject.toml", repo / "pyproject.toml")
    fake = tmp_path / "python3"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    return repo, fake, tmp_path / "calls.log"


def _setup(repo: Path, fake: Path, log: Path) -> list[str]:
    log.write_text("")
    env = {"PATH": "/usr/bin:/bin", "PYTHON": str(fake), "LOG": str(log)}
    subprocess.run(["bash", "scripts/setup.sh"], cwd=repo, env=env, check=True)
    return log.read_text().splitlines()


def test_installs_into_a_venv_in_the_checkout(tmp_path):
    repo, fake, log = _checkout(tmp_path)
    calls = _setup(repo, fake, log)
    venv_python = str(repo / ".venv" / "bin" / "python")
    # the caller's interpreter only creates the venv
    assert [c for c in calls if c.startswith(str(fake))] == [f"{fake} -m venv .venv"]
    installs = [c for c in calls if " install " in c]
    assert installs and all(
        c.startswith(".venv/bin/python") or c.startswith(venv_python) for c in installs
    )
    assert any("torch==2.13.0" in c for c in installs)
    assert any("-e .[test,cluster]" in c for c in installs)


def test_a_second_run_installs_nothing(tmp_path):
    repo, fake, log = _checkout(tmp_path)
    _setup(repo, fake, log)
    assert _setup(repo, fake, log) == []


def test_a_changed_pyproject_installs_again(tmp_path):
    repo, fake, log = _checkout(tmp_path)
    _setup(repo, fake, log)
    with (repo / "pyproject.toml").open("a") as f:
        f.write("\n# changed\n")
    assert any(" install " in c for c in _setup(repo, fake, log))


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    command = "bash scripts/setup.sh && .venv/bin/python -m pytest"
    assert command in readme
    assert ci.strip().splitlines()[-1] == command
