"""VNN-LIB properties: the input boxes (and a count of the output constraints).

VNN-LIB (the format of the VNN-COMP verification competition) is a subset of SMT-LIB 2: input
variables ``X_0 .. X_{n-1}`` and output variables ``Y_0 ..`` declared with ``declare-const``,
and ``assert`` forms. Compression needs only the input domain, so this reader keeps the bounds
on ``X_i`` and merely counts the constraints on ``Y`` (they describe the property being
verified, not the domain).

Understood input constraints, at top level or inside ``and``: ``(<= X_i c)``, ``(>= X_i c)``,
``(<= c X_i)``, ``(>= c X_i)``, strict ``<``/``>`` (read as their closure: compressing over a
closed superset is still exact on the set), and ``(= X_i c)``; ``c`` may be written
``(- c)``. A disjunction ``(assert (or (and ...) (and ...)))`` whose branches bound the inputs
gives one box per branch (intersected with the top-level bounds); output constraints inside a
branch are counted. Several such disjunctions give the product of their branches.

A constraint that relates two inputs, or an input and an output, cannot be a box: it is an
error rather than silently dropped, so that the user knows the domain is not what the file
says. The tokenizer is a single regular expression, so the 75 KB MNIST properties parse in a
few milliseconds.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..domain import Box
from ..errors import InputFileError, InvalidDomainError
from .atomic import read_text

#: The largest number of boxes a file may expand to (a product of disjunctions).
MAX_BOXES = 10_000

_TOKEN = re.compile(r"\(|\)|[^\s()]+")
_COMMENT = re.compile(r";[^\n]*")
_VAR = re.compile(r"([XY])_(\d+)\Z")
_IGNORED_COMMANDS = {"set-logic", "set-info", "set-option", "check-sat", "get-model", "exit"}
_COMPARISONS = {"<=", ">=", "<", ">", "="}

SExpr = str | list


@dataclass(frozen=True, eq=False)
class VnnlibSpec:
    """The input domain of a VNN-LIB property.

    Attributes
    ----------
    boxes:
        One box per disjunct of the input constraints (one box for most files).
    output_constraints:
        How many atomic constraints mention an output variable (reported, not used).
    n_inputs, n_outputs:
        Declared input and output variables.
    """

    boxes: tuple[Box, ...]
    output_constraints: int
    n_inputs: int
    n_outputs: int

    @property
    def box(self) -> Box:
        """The only box; raises if the file describes a union of several."""
        if len(self.boxes) != 1:
            raise InvalidDomainError(
                f"the property describes {len(self.boxes)} input boxes, not one; "
                "use .boxes (a neuron is stable on the union if it is on every box)"
            )
        return self.boxes[0]

    def hull(self) -> Box:
        """The smallest box containing every box of the property."""
        lo = np.min([b.lower for b in self.boxes], axis=0)
        hi = np.max([b.upper for b in self.boxes], axis=0)
        return Box(lo, hi)


# ----------------------------------------------------------------------------- parsing
def parse_sexprs(text: str, source: str = "<text>") -> list[SExpr]:
    """Parse SMT-LIB text into nested lists of atoms (comments removed).

    Raises
    ------
    InputFileError
        Unbalanced parentheses, or an atom outside any parenthesis.
    """
    stack: list[list] = [[]]
    for tok in _TOKEN.findall(_COMMENT.sub("", text)):
        if tok == "(":
            stack.append([])
        elif tok == ")":
            if len(stack) == 1:
                raise InputFileError(f"{source}: unbalanced ')' in the VNN-LIB file")
            done = stack.pop()
            stack[-1].append(done)
        else:
            if len(stack) == 1:
                raise InputFileError(f"{source}: stray token {tok!r} outside any '(...)'")
            stack[-1].append(tok)
    if len(stack) != 1:
        raise InputFileError(f"{source}: {len(stack) - 1} unclosed '(' at the end of the file")
    return stack[0]


def _number(e: SExpr) -> float | None:
    """The value of a numeric literal (``1.5``, ``-2``, ``(- 3)``), else None."""
    if isinstance(e, list):
        if len(e) == 2 and e[0] == "-":
            v = _number(e[1])
            return None if v is None else -v
        return None
    try:
        return float(e)
    except ValueError:
        return None


def _show(e: SExpr) -> str:
    return e if isinstance(e, str) else "(" + " ".join(_show(x) for x in e) + ")"


class _Bounds:
    """Per-input lower/upper bounds being collected (NaN = not given yet)."""

    def __init__(self) -> None:
        self.lo: dict[int, float] = {}
        self.hi: dict[int, float] = {}

    def copy(self) -> _Bounds:
        out = _Bounds()
        out.lo, out.hi = dict(self.lo), dict(self.hi)
        return out

    def add(self, i: int, lo: float | None, hi: float | None) -> None:
        if lo is not None:
            self.lo[i] = max(self.lo.get(i, -np.inf), lo)
        if hi is not None:
            self.hi[i] = min(self.hi.get(i, np.inf), hi)

    def merge(self, other: _Bounds) -> _Bounds:
        out = self.copy()
        for i, v in other.lo.items():
            out.add(i, v, None)
        for i, v in other.hi.items():
            out.add(i, None, v)
        return out

    def empty(self) -> bool:
        return not self.lo and not self.hi


class _Reader:
    """Walks the asserted formulas, collecting bounds and counting output constraints."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.inputs: set[int] = set()
        self.outputs: set[int] = set()
        self.outputs_seen = 0

    def var(self, e: SExpr) -> tuple[str, int] | None:
        if isinstance(e, str):
            m = _VAR.match(e)
            if m:
                return m.group(1), int(m.group(2))
        return None

    def atom(self, e: list, bounds: _Bounds) -> None:
        """One comparison: an input bound, or an output constraint (counted)."""
        if len(e) != 3:
            raise InputFileError(f"{self.source}: expected a comparison of two terms: {_show(e)}")
        op, left, right = e
        text = f"{_show(left)} {_show(right)}"
        if "Y_" in text and "X_" not in text:
            self.outputs_seen += 1
            return
        lv, rv = self.var(left), self.var(right)
        if lv is not None and lv[0] == "X" and _number(right) is not None:
            i, c, var_left = lv[1], _number(right), True
        elif rv is not None and rv[0] == "X" and _number(left) is not None:
            i, c, var_left = rv[1], _number(left), False
        else:
            raise InvalidDomainError(
                f"{self.source}: the constraint {_show(e)} is not a bound on one input variable "
                "by a number; only box constraints on the inputs are supported"
            )
        if c is not None and np.isnan(c):  # max/min would silently drop it
            raise InvalidDomainError(
                f"{self.source}: the bound in {_show(e)} is not a number (NaN); give a finite bound"
            )
        self.inputs.add(i)
        if op == "=":
            bounds.add(i, c, c)
        elif (op in ("<=", "<")) == var_left:
            bounds.add(i, None, c)  # X <= c  or  c >= X
        else:
            bounds.add(i, c, None)  # X >= c  or  c <= X

    def conj(self, e: SExpr, bounds: _Bounds) -> None:
        """A conjunction (or a single comparison) adding to ``bounds``."""
        if not isinstance(e, list) or not e:
            raise InputFileError(f"{self.source}: expected a constraint, got {_show(e)}")
        head = e[0]
        if head == "and":
            for sub in e[1:]:
                self.conj(sub, bounds)
        elif head in _COMPARISONS:
            self.atom(e, bounds)
        elif head == "or":
            if any(not b.empty() for b in self.disjunction(e)):
                raise InvalidDomainError(
                    f"{self.source}: a disjunction of input bounds nested inside a conjunction "
                    "is not supported; write it as a top-level (assert (or (and ...) ...))"
                )
        else:
            raise InputFileError(f"{self.source}: unknown operator {head!r} in {_show(e)[:80]}")

    def disjunction(self, e: list) -> list[_Bounds]:
        """The branches of an ``or``: input bounds per branch (possibly empty)."""
        branches = []
        for sub in e[1:]:
            b = _Bounds()
            self.conj(sub, b)
            branches.append(b)
        return branches


def _declare(reader: _Reader, form: list, declared: dict[str, set[int]]) -> None:
    if len(form) != 3:
        raise InputFileError(f"{reader.source}: malformed declaration {_show(form)}")
    v = reader.var(form[1])
    if v is None:
        raise InputFileError(
            f"{reader.source}: unexpected variable {_show(form[1])!r}; VNN-LIB names inputs "
            "X_0, X_1, ... and outputs Y_0, Y_1, ..."
        )
    declared[v[0]].add(v[1])


def read_vnnlib(path: str | Path, n_inputs: int | None = None) -> VnnlibSpec:
    """Read the input boxes of a VNN-LIB property.

    Parameters
    ----------
    path:
        The ``.vnnlib`` file.
    n_inputs:
        The network's input size, if known: the file must then declare exactly
        ``X_0 .. X_{n_inputs-1}``.

    Returns
    -------
    VnnlibSpec
        The boxes (one per disjunct) and the count of output constraints.

    Raises
    ------
    InputFileError
        Missing file, malformed s-expressions, or unknown commands or operators.
    InvalidDomainError
        No input bounds at all, an input without a lower or upper bound (named), an empty
        box, a non-box input constraint, or a variable count that does not match ``n_inputs``.
    """
    path = Path(path)
    source = str(path)
    text = read_text(path, "VNN-LIB file")
    return parse_vnnlib(text, n_inputs=n_inputs, source=source)


def parse_vnnlib(text: str, n_inputs: int | None = None, source: str = "<text>") -> VnnlibSpec:
    """:func:`read_vnnlib` on a string (``source`` names it in error messages)."""
    reader = _Reader(source)
    declared: dict[str, set[int]] = {"X": set(), "Y": set()}
    base = _Bounds()
    alternatives: list[list[_Bounds]] = []
    for form in parse_sexprs(text, source):
        if not isinstance(form, list) or not form or not isinstance(form[0], str):
            raise InputFileError(f"{source}: expected a command, got {_show(form)[:80]}")
        cmd = form[0]
        if cmd == "declare-const":
            _declare(reader, form, declared)
        elif cmd == "assert":
            if len(form) != 2:
                raise InputFileError(f"{source}: assert takes one formula: {_show(form)[:80]}")
            body = form[1]
            if isinstance(body, list) and body and body[0] == "or":
                branches = reader.disjunction(body)
                if any(not b.empty() for b in branches):
                    alternatives.append(branches)
            else:
                reader.conj(body, base)
        elif cmd not in _IGNORED_COMMANDS:
            raise InputFileError(f"{source}: unknown command {cmd!r}")
    n = _input_count(declared["X"] | reader.inputs, n_inputs, source)
    if base.empty() and not alternatives:
        raise InvalidDomainError(
            f"{source}: the property has no input bounds (no '(assert (<= X_i c))' / "
            "'(assert (>= X_i c))'); a domain is required"
        )
    combos = 1
    for alt in alternatives:
        combos *= len(alt)
    if combos > MAX_BOXES:
        raise InvalidDomainError(
            f"{source}: the disjunctions expand to {combos} boxes (max {MAX_BOXES})"
        )
    boxes = []
    for choice in itertools.product(*alternatives):
        merged = base
        for b in choice:
            merged = merged.merge(b)
        boxes.append(_to_box(merged, n, source))
    return VnnlibSpec(
        boxes=tuple(boxes),
        output_constraints=reader.outputs_seen,
        n_inputs=n,
        n_outputs=len(declared["Y"]),
    )


def _input_count(indices: set[int], n_inputs: int | None, source: str) -> int:
    if not indices:
        raise InvalidDomainError(f"{source}: the property declares no input variables X_i")
    n = max(indices) + 1
    if n_inputs is not None and n != n_inputs:
        raise InvalidDomainError(
            f"{source}: the property has {n} input variables (X_0..X_{n - 1}) but the network "
            f"has {n_inputs} inputs"
        )
    return n


def _to_box(b: _Bounds, n: int, source: str) -> Box:
    lo = np.array([b.lo.get(i, np.nan) for i in range(n)])
    hi = np.array([b.hi.get(i, np.nan) for i in range(n)])
    for arr, word, op in ((lo, "lower", ">="), (hi, "upper", "<=")):
        missing = np.flatnonzero(~np.isfinite(arr))
        if missing.size:
            names = ", ".join(f"X_{i}" for i in missing[:5]) + (" ..." if missing.size > 5 else "")
            raise InvalidDomainError(
                f"{source}: no finite {word} bound for {names}; add '(assert ({op} X_i c))'"
            )
    empty = np.flatnonzero(lo > hi)
    if empty.size:
        i = int(empty[0])
        raise InvalidDomainError(
            f"{source}: the bounds of X_{i} are contradictory ({lo[i]} > {hi[i]}): empty box"
        )
    return Box(lo, hi)
