"""One exception hierarchy, with messages a user can act on.

Every error the user can cause (a bad file, a bad box, an unsupported layer) is an
:class:`ExactCompError`; the CLI prints its message on one line and exits with code 2.
Anything else escaping the package is a bug.
"""

from __future__ import annotations


class ExactCompError(Exception):
    """Base class of every error caused by the user's input or environment."""


class InputFileError(ExactCompError):
    """A file is missing, unreadable, or not in a format we understand."""


class UnsupportedModelError(ExactCompError):
    """The model contains a layer or operator we cannot represent exactly."""


class InvalidNetworkError(ExactCompError):
    """The weights are malformed: NaN/inf values, or layer sizes that do not chain."""


class InvalidDomainError(ExactCompError):
    """The input domain (box) is empty, inverted, non-finite or of the wrong size."""


class OutputPathError(ExactCompError):
    """The output path is unusable (equal to the input, or not writable)."""


class InvalidOptionError(ExactCompError):
    """An option has a value outside its allowed range (e.g. a time limit <= 0)."""


class VerificationError(ExactCompError):
    """A compressed network failed its own re-check; nothing was written."""


class ResourceLimitError(ExactCompError):
    """The network is too large for this machine with the chosen method (estimated up front)."""


class Terminated(BaseException):  # noqa: N818 - a signal, like KeyboardInterrupt
    """The process was asked to stop (SIGTERM, e.g. ``timeout``): raised by the CLI's handler.

    A :class:`BaseException`, like ``KeyboardInterrupt``, so that no ``except Exception`` of
    the engine takes it for a failure and carries on; but not a ``KeyboardInterrupt`` either,
    so that nothing treats it as a Ctrl-C that keeps what was proven (``--partial``, a
    partial region count). The stack unwinds: worker pools are stopped and temporary files
    removed, and the CLI writes nothing.
    """
