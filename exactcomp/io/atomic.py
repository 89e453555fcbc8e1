"""Atomic file writes and output-path checks: never a half-written or overwritten file.

(Also :func:`read_text`, the readers' one way to read a text input with a one-line error.)

A compressed network is only worth writing if it is complete. Writers therefore produce the
file under a temporary name in the destination's own directory (so the final rename stays on
one file system and is atomic), flush and ``fsync`` it, and only then ``os.replace`` it onto the
destination. If anything goes wrong on the way, including ``KeyboardInterrupt``, the temporary
file is deleted and the destination is left exactly as it was.

:func:`check_output_path` is the check to run *before* long work starts: it refuses an output
path that is one of the inputs (also through a symlink or a different spelling) and an output
directory that is missing or not writable, so that a user learns about it in a second rather
than after an hour of solving.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from ..errors import InputFileError, OutputPathError

PathLike = str | os.PathLike[str]


@contextlib.contextmanager
def atomic_open(path: PathLike) -> Iterator[BinaryIO]:
    """Open a temporary binary file that replaces ``path`` only when the block ends cleanly.

    Parameters
    ----------
    path:
        The destination. Its directory must exist; the temporary file is created there, with a
        name starting with ``.`` and ending in ``.tmp``, so that the final rename is atomic.

    Yields
    ------
    BinaryIO
        The open temporary file. Write to it; do not close it yourself.

    Notes
    -----
    On a clean exit the file is flushed, ``fsync``-ed and renamed onto ``path`` with
    :func:`os.replace` (atomic on POSIX and Windows). On any exception, ``BaseException``
    included (Ctrl-C), the temporary file is removed and the exception propagates; ``path`` is
    untouched.
    """
    dest = Path(path)
    with _replacing(dest, ".tmp") as (fd, _tmp), os.fdopen(fd, "wb") as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """A temporary path next to ``path`` that replaces it only when the block ends cleanly.

    For writers that insist on a file *name* (``onnx.save``, third-party savers) rather than an
    open handle. The temporary name keeps ``path``'s suffix (``.x.onnx.abc123.tmp.onnx``) in
    case the writer checks it. On any exception, ``KeyboardInterrupt`` included, the temporary
    file is removed and ``path`` is untouched.
    """
    dest = Path(path)
    with _replacing(dest, f".tmp{dest.suffix}") as (fd, tmp):
        os.close(fd)
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())


@contextlib.contextmanager
def _replacing(dest: Path, suffix: str) -> Iterator[tuple[int, Path]]:
    """A new temporary file next to ``dest`` (its descriptor and path) that replaces ``dest``
    when the block ends cleanly and is removed when it raises (``BaseException`` included)."""
    directory = _directory(dest)
    fd, tmp = _make_temp(dest, suffix)
    try:
        yield fd, tmp
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_directory(directory)


def atomic_write(path: PathLike, write_fn: Callable[[BinaryIO], object]) -> None:
    """Write ``path`` atomically: ``write_fn(handle)`` fills a temporary file that then replaces it.

    Parameters
    ----------
    path:
        Destination file.
    write_fn:
        Called once with an open binary file handle; it writes the whole content. If it raises
        (or the process is interrupted), nothing is left behind and ``path`` is unchanged.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> atomic_write(d / "a.bin", lambda f: f.write(b"abc"))
    >>> (d / "a.bin").read_bytes()
    b'abc'
    """
    with atomic_open(path) as handle:
        write_fn(handle)


def _directory(dest: Path) -> Path:
    return dest.parent if str(dest.parent) else Path(".")


def _make_temp(dest: Path, suffix: str) -> tuple[int, Path]:
    """Create a hidden temporary file beside ``dest`` (same file system, so renames are atomic)."""
    directory = _directory(dest)
    try:
        fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix, dir=directory)
    except OSError as exc:
        raise OutputPathError(
            f"cannot create a file in {str(directory)!r} ({exc.strerror}); "
            "choose an existing, writable directory"
        ) from exc
    # mkstemp makes the file private (0600); give it the mode a plain open() would have.
    with contextlib.suppress(OSError):
        os.chmod(fd, _target_mode(dest))
    return fd, Path(name)


def _target_mode(dest: Path) -> int:
    """The existing file's permissions, or the default for new files (0666 minus umask)."""
    try:
        return dest.stat().st_mode & 0o7777
    except OSError:
        pass
    mask = os.umask(0o022)  # the only portable way to read the umask is to set it back
    os.umask(mask)
    return 0o666 & ~mask


def _fsync_directory(directory: Path) -> None:
    """Persist the rename itself (best effort: not every platform can open a directory)."""
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(dfd)
    finally:
        os.close(dfd)


def _same_file(a: Path, b: Path) -> bool:
    """True when ``a`` and ``b`` name the same file (resolved symlinks, or same inode)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_output_path(
    out: PathLike, inputs: Iterable[PathLike | None] = (), outputs: Iterable[PathLike | None] = ()
) -> Path:
    """Refuse an output path that would overwrite an input or cannot be written.

    Parameters
    ----------
    out:
        The intended output file.
    inputs:
        Paths of the files the run reads (``None`` entries, e.g. an in-memory model, are
        skipped).
    outputs:
        Paths of the run's other outputs (``None`` skipped): one would overwrite the other.

    Returns
    -------
    Path
        ``out`` as a :class:`~pathlib.Path`, for convenience.

    Raises
    ------
    OutputPathError
        If ``out`` is the same file as one of ``inputs`` or ``outputs`` (compared after
        resolving symlinks and by inode), is an existing directory, or its directory does not
        exist or is not writable. The message says what to do instead.
    """
    dest = Path(out)
    for item in inputs:
        if item is None:
            continue
        if _same_file(dest, Path(item)):
            raise OutputPathError(
                f"the output path {str(dest)!r} is the input file {str(item)!r}; "
                "choose a different output path (the input is never overwritten)"
            )
    for item in outputs:
        if item is not None and _same_file(dest, Path(item)):
            raise OutputPathError(
                f"the output path {str(dest)!r} is also another output's path; give each "
                "output its own path"
            )
    if dest.is_dir():
        raise OutputPathError(
            f"the output path {str(dest)!r} is a directory; give a file name inside it"
        )
    directory = _directory(dest)
    if not directory.is_dir():
        raise OutputPathError(
            f"the output directory {str(directory)!r} does not exist; create it first "
            "or choose another output path"
        )
    if not os.access(directory, os.W_OK | os.X_OK) or not _can_create_in(directory):
        raise OutputPathError(
            f"the output directory {str(directory)!r} is not writable; "
            "choose a directory you can write to"
        )
    return dest


def _can_create_in(directory: Path) -> bool:
    """Probe by creating (and removing) a file: ``os.access`` says yes to root on ``/proc``,
    read-only mounts and ACLs it cannot see; an actual create cannot be fooled."""
    try:
        fd, name = tempfile.mkstemp(prefix=".exactcomp-probe-", dir=directory)
    except OSError:
        return False
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(name)
    return True


def read_text(path: Path, what: str) -> str:
    """The text of input file ``path`` (a ``what``, e.g. ``".nnet file"``), or a one-line
    :class:`~exactcomp.errors.InputFileError` saying why it cannot be read."""
    try:
        return path.read_text()
    except FileNotFoundError:
        raise InputFileError(f"{what} {str(path)!r} does not exist; check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(f"cannot read {what} {str(path)!r}: {exc}") from None
