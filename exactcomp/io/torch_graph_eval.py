"""The scalar values of a TorchScript graph, evaluated exactly: what decides its ``prim::If``.

A scripted module's inlined graph holds control flow whose conditions are known once the
module is fixed (saved in eval mode): ``BatchNorm``'s ``if self.training:``, its
``_check_input_dim`` (``if input.dim() != 4: raise ...``), ``F.relu``'s ``if inplace:``,
``F.dropout``'s range check on ``p``, a user's ``if self.flag:`` or ``if self.depth > 1:``.
Their conditions are computed from constants, attributes and the activation's rank by the
scalar ops below, evaluated here in Python with TorchScript's own meaning (a TorchScript
``float`` is a double and ``bool`` is Python's; its ``int`` is a 64-bit integer, which
Python's equals while no result leaves ``[-2**63, 2**63)``: one that does is unknown):

===========================================  ================================================
``aten::eq/ne/lt/le/gt/ge``                  two numbers (``bool``, ``int``, ``float``), or
                                             two strings (``eq``/``ne``)
``aten::__not__/__and__/__or__/__xor__``     booleans
``aten::add/sub/mul``, ``aten::neg``         integers and floats (``add``: strings too)
``aten::len``                                a list (``x.size()``: the rank) or string
``aten::__contains__``                       a number or string in a list of them
``aten::Bool/Int/Float``                     a number (``Int`` truncates, as TorchScript)
``aten::format``                             the message of a ``prim::RaiseException``
``aten::__is__/__isnot__``                   one side ``None``: the other is known to be
                                             ``None`` or not (an activation is not)
``prim::isinstance``                         a value whose TorchScript type is known
===========================================  ================================================

Anything else, or an argument that is not a known scalar (a tensor, the activation, the
batch size, which a traced graph alone fixes), is :data:`UNKNOWN`: the reader then refuses
the op by name, and an ``if`` on it is never guessed.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

__all__ = [
    "SCALAR_OPS",
    "TENSOR",
    "UNINITIALIZED",
    "UNKNOWN",
    "evaluate",
    "is_type",
    "raise_message",
]


class _Marker:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: An op's value that is not a known scalar (the caller refuses the op).
UNKNOWN = _Marker("UNKNOWN")
#: ``prim::Uninitialized``: the value a raising branch returns; any use of it is refused.
UNINITIALIZED = _Marker("UNINITIALIZED")
#: A tensor whose values are not known (the activation): only its type and ``is None``.
TENSOR = _Marker("TENSOR")

_NUMBER = (bool, int, float)


def _numbers(f: Callable[..., Any]) -> Callable[..., Any]:
    """``f`` on numbers only (a list times an int, a tensor...: unknown)."""
    return lambda *a: f(*a) if all(type(v) in _NUMBER for v in a) else UNKNOWN


def _compare(f: Callable[[Any, Any], bool], strings: bool) -> Callable[..., Any]:
    def compare(a: Any, b: Any) -> Any:
        if type(a) in _NUMBER and type(b) in _NUMBER:
            return f(a, b)
        if strings and type(a) is str and type(b) is str:
            return f(a, b)
        return UNKNOWN

    return compare


def _bools(f: Callable[..., Any]) -> Callable[..., Any]:
    return lambda *a: f(*a) if all(type(v) is bool for v in a) else UNKNOWN


def _add(a: Any, b: Any) -> Any:
    if type(a) is str and type(b) is str:
        return a + b
    return _numbers(operator.add)(a, b)


def _len(a: Any) -> Any:
    """A list's length whatever it holds (``len(x.size())`` is the rank; the batch entry is
    a symbol); a string's."""
    return len(a) if type(a) in (list, str) else UNKNOWN


def _contains(items: Any, item: Any) -> Any:
    """``item in items`` for a list of numbers or strings (``dim not in (3, 4)``)."""
    if type(items) is not list or type(item) not in (*_NUMBER, str):
        return UNKNOWN
    if not all(type(v) in (*_NUMBER, str) for v in items):
        return UNKNOWN
    return item in items


def _format(template: Any, *args: Any) -> Any:
    if type(template) is not str:
        return UNKNOWN
    try:
        return template.format(*args)
    except (IndexError, KeyError, ValueError):  # an odd template: keep it as it is
        return template


#: The scalar ops evaluated (see the module docstring), by TorchScript kind.
SCALAR_OPS: dict[str, Callable[..., Any]] = {
    "aten::eq": _compare(operator.eq, strings=True),
    "aten::ne": _compare(operator.ne, strings=True),
    "aten::lt": _compare(operator.lt, strings=False),
    "aten::le": _compare(operator.le, strings=False),
    "aten::gt": _compare(operator.gt, strings=False),
    "aten::ge": _compare(operator.ge, strings=False),
    "aten::__not__": _bools(operator.not_),
    "aten::__and__": _bools(operator.and_),
    "aten::__or__": _bools(operator.or_),
    "aten::__xor__": _bools(operator.xor),
    "aten::add": _add,
    "aten::sub": _numbers(operator.sub),
    "aten::mul": _numbers(operator.mul),
    "aten::neg": _numbers(operator.neg),
    "aten::len": _len,
    "aten::__contains__": _contains,
    "aten::Bool": _numbers(bool),
    "aten::Int": _numbers(int),
    "aten::Float": _numbers(float),
    "aten::format": _format,
}


def evaluate(kind: str, args: list[Any], types: list[str] | None = None) -> Any:
    """The value of the scalar op ``kind`` on ``args`` (:data:`TENSOR` for a tensor whose
    values are unknown), or :data:`UNKNOWN`; ``types`` are ``prim::isinstance``'s."""
    if kind in ("aten::__is__", "aten::__isnot__"):
        if len(args) != 2 or None not in args:
            return UNKNOWN
        both = args[0] is None and args[1] is None  # a tensor, a number... is not None
        return both if kind == "aten::__is__" else not both
    if kind == "prim::isinstance":
        if len(args) != 1:
            return UNKNOWN
        return is_type(
            "Tensor" if args[0] is TENSOR else _TYPE_NAMES.get(type(args[0])), types or []
        )
    op = SCALAR_OPS.get(kind)
    if op is None:
        return UNKNOWN
    try:
        value = op(*args)
    except (TypeError, ArithmeticError):  # wrong arity, an overflow: not evaluated
        return UNKNOWN
    if type(value) is int and not -(2**63) <= value < 2**63:  # TorchScript's int overflows
        return UNKNOWN
    return value


_PLAIN = ("Tensor", "NoneType", "bool", "int", "float", "str")
_TYPE_NAMES = {type(None): "NoneType", bool: "bool", int: "int", float: "float", str: "str"}


def is_type(type_name: str | None, types: list[str]) -> Any:
    """``isinstance`` of a value of TorchScript type ``type_name`` against ``types`` (their
    names): True or False where every name is one of the plain types compared here, else
    :data:`UNKNOWN` (a subclass or container relation is not decided here)."""
    if type_name is None:
        return UNKNOWN
    if type_name in types:
        return True
    return False if all(t in _PLAIN for t in types) else UNKNOWN


def raise_message(args: list[Any]) -> str:
    """The text of a ``prim::RaiseException(message, exception class)``."""
    words = [a for a in args if type(a) is str]
    if len(words) >= 2:
        return f"{words[1].removeprefix('builtins.')}: {words[0]}"
    return words[0] if words else "an exception"
