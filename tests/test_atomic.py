"""Atomic writes leave either the complete new file or the old state, never debris;
output paths that would overwrite an input or cannot be written are refused up front."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from exactcomp.errors import OutputPathError
from exactcomp.io import atomic
from exactcomp.io.atomic import atomic_open, atomic_path, atomic_write, check_output_path


def _listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# --------------------------------------------------------------------------- atomic writes
def test_atomic_write_writes_the_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    atomic_write(target, lambda f: f.write(b"hello"))
    assert target.read_bytes() == b"hello"
    assert _listing(tmp_path) == ["out.bin"]


def test_new_file_gets_the_usual_mode_not_a_private_one(tmp_path: Path) -> None:
    mask = os.umask(0o022)
    os.umask(mask)
    target = tmp_path / "out.bin"
    atomic_write(target, lambda f: f.write(b"x"))
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask


def test_existing_file_keeps_its_mode(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    target.chmod(0o640)
    atomic_write(target, lambda f: f.write(b"new"))
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


@pytest.mark.parametrize("error", [RuntimeError("disk on fire"), KeyboardInterrupt()])
def test_failure_mid_write_leaves_nothing(tmp_path: Path, error: BaseException) -> None:
    target = tmp_path / "out.bin"

    def half_then_fail(handle) -> None:
        handle.write(b"half of the")
        handle.flush()
        raise error

    with pytest.raises(type(error)):
        atomic_write(target, half_then_fail)
    assert _listing(tmp_path) == []


@pytest.mark.parametrize("error", [ValueError("bad"), KeyboardInterrupt()])
def test_failure_keeps_the_previous_file_intact(tmp_path: Path, error: BaseException) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"previous content")
    with pytest.raises(type(error)), atomic_open(target) as handle:
        handle.write(b"new and incomplete")
        raise error
    assert target.read_bytes() == b"previous content"
    assert _listing(tmp_path) == ["out.bin"]


def test_failure_in_the_rename_cleans_up(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "out.bin"

    def broken_replace(src, dst) -> None:
        raise OSError("simulated rename failure")

    monkeypatch.setattr(atomic.os, "replace", broken_replace)
    with pytest.raises(OSError, match="simulated"):
        atomic_write(target, lambda f: f.write(b"data"))
    assert _listing(tmp_path) == []


def test_atomic_path_keeps_the_suffix_and_replaces_on_success(tmp_path: Path) -> None:
    target = tmp_path / "small.onnx"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".onnx" and tmp != target
        tmp.write_bytes(b"model")
    assert target.read_bytes() == b"model"
    assert _listing(tmp_path) == ["small.onnx"]


def test_atomic_path_removes_the_temporary_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "small.onnx"
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_bytes(b"partial")
        raise KeyboardInterrupt
    assert _listing(tmp_path) == []


def test_writing_into_a_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(OutputPathError, match="directory"):
        atomic_write(tmp_path / "no" / "out.bin", lambda f: f.write(b"x"))


# --------------------------------------------------------------------------- output paths
@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "model.pt"
    path.write_bytes(b"weights")
    return path


def test_output_equal_to_input_is_refused(model_file: Path) -> None:
    with pytest.raises(OutputPathError, match="input") as info:
        check_output_path(model_file, [model_file])
    assert "\n" not in str(info.value)


def test_output_equal_to_input_by_another_spelling(model_file: Path) -> None:
    other = model_file.parent / "sub" / ".." / model_file.name
    (model_file.parent / "sub").mkdir()
    with pytest.raises(OutputPathError, match="input"):
        check_output_path(other, [str(model_file)])


def test_output_symlink_to_input_is_refused(model_file: Path) -> None:
    link = model_file.parent / "link.pt"
    link.symlink_to(model_file)
    with pytest.raises(OutputPathError, match="input"):
        check_output_path(link, [model_file])
    with pytest.raises(OutputPathError, match="input"):
        check_output_path(model_file, [link])


def test_output_hard_link_to_input_is_refused(model_file: Path) -> None:
    link = model_file.parent / "hard.pt"
    os.link(model_file, link)
    with pytest.raises(OutputPathError, match="input"):
        check_output_path(link, [model_file])


def test_a_fresh_output_path_is_accepted(model_file: Path) -> None:
    out = model_file.parent / "small.pt"
    assert check_output_path(out, [model_file, None]) == out
    assert not out.exists()
    assert _listing(model_file.parent) == ["model.pt"]


def test_output_directory_missing(tmp_path: Path) -> None:
    with pytest.raises(OutputPathError, match="does not exist"):
        check_output_path(tmp_path / "nope" / "o.pt", [])


def test_output_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(OutputPathError, match="directory"):
        check_output_path(tmp_path, [])


def test_output_directory_not_writable() -> None:
    # /proc refuses new files even for root, which os.access alone does not see.
    with pytest.raises(OutputPathError, match="not writable"):
        check_output_path("/proc/exactcomp-never-written.pt", [])


def test_output_directory_without_permission(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(atomic.os, "access", lambda path, mode: False)
    with pytest.raises(OutputPathError, match="not writable"):
        check_output_path(tmp_path / "o.pt", [])
