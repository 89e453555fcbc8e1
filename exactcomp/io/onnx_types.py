"""Element types in an ONNX graph, and the rule that decides which nodes the reader may read.

The convention (what "the network's function" is)
------------------------------------------------
The reader returns the graph's function in *real arithmetic*: every stored number is taken at
its exact value (FLOAT16, FLOAT and DOUBLE all embed exactly in float64), and every operator is
the real operator it names (``Div`` by a constant ``c`` is multiplication by the real ``1/c``;
``BatchNormalization`` is ``(x - mean) * scale / sqrt(var + eps) + B``). The IR holds it in
float64. onnxruntime runs the same file in the graph's *compute dtype*: FLOAT for a FLOAT (or
FLOAT16) input, DOUBLE for a DOUBLE input. The two then differ by that dtype's rounding at each
operation, which is proportionate to the partial sums and far below any structural mistake; the
onnxruntime cross-check of :mod:`exactcomp.io.onnx_check` bounds it on the box's corners, faces
and random points.

Anything whose ONNX meaning goes *beyond* that rounding is refused by name, because the real
function would then be a different function, not a rounded one:

* **Arithmetic that rounds in a narrower type.** ``Add``, ``Sub``, ``Mul``, ``Div``,
  ``MatMul``, ``Gemm``, ``Conv`` and ``BatchNormalization`` are read only in FLOAT or DOUBLE.
  In FLOAT16, BFLOAT16 or a FLOAT8 type they round to 11 (8, 4) bits and overflow to ``inf``
  at 65504 (and less), so they are refused, on input-dependent tensors and on constants alike
  (a constant folded by numpy need not round as onnxruntime does). Their operands must share
  one type, as the ONNX spec requires. Integer arithmetic is accepted on constants only
  (shape computations), exactly, with ONNX's truncating integer ``Div``.
* **Casts of input-dependent tensors.** Exact, hence accepted: the identity (``to`` is the
  tensor's own type) and every widening among FLOAT16, BFLOAT16, FLOAT and DOUBLE (to DOUBLE
  from any of them, to FLOAT from FLOAT16 or BFLOAT16). ``Cast`` DOUBLE -> FLOAT rounds; it is
  accepted only in a graph that computes in FLOAT, where it is one more FLOAT rounding of the
  kind every operation there makes, and refused in a DOUBLE graph. Refused always: casts to
  FLOAT16, BFLOAT16 and the FLOAT8/FLOAT4 types (rounding, overflow to ``inf`` or saturation),
  to any integer or BOOL type (rounding, truncation, wrap-around or saturation), and to
  STRING or complex types.
* **Casts of constants** are computed by numpy with the IEEE rules onnxruntime also follows
  (round to nearest even), and accepted between float types (FLOAT16, FLOAT, DOUBLE), from
  integer or BOOL types, and from a float type to an integer or BOOL type when every value is
  finite and in range (then numpy and onnxruntime both truncate toward zero). A constant cast
  that overflows to ``inf``, and casts to BFLOAT16, FLOAT8 or STRING, are refused.
* **Layout operators** (``Reshape``, ``Transpose``, ``Concat``...), ``Neg`` and ``Relu`` are
  exact in every float type and are accepted on any of them.

:func:`audit_node` applies these rules before a node's handler runs; :func:`output_types`
propagates the element types. Both know only the ONNX element-type codes and which inputs
depend on the network input.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NoReturn

import numpy as np
import onnx

from ..errors import UnsupportedModelError

T = onnx.TensorProto
#: Types the IR reads exactly and computes in (real arithmetic, held in float64).
COMPUTE_TYPES = frozenset({T.FLOAT, T.DOUBLE})
#: Float types whose values embed exactly in float64 (inputs, weights, widening casts).
EXACT_FLOAT_TYPES = frozenset({T.FLOAT16, T.BFLOAT16, T.FLOAT, T.DOUBLE})
#: Float types numpy casts to with onnxruntime's rounding (round to nearest even).
NUMPY_FLOAT_TYPES = frozenset({T.FLOAT16, T.FLOAT, T.DOUBLE})
INTEGER_TYPES = frozenset(
    {T.INT8, T.INT16, T.INT32, T.INT64, T.UINT8, T.UINT16, T.UINT32, T.UINT64, T.BOOL}
)
#: Operators whose result is rounded to their type (and can overflow in it).
ROUNDING_OPS = frozenset(
    {
        "Add",
        "Sub",
        "Mul",
        "Div",
        "MatMul",
        "Gemm",
        "Conv",
        "BatchNormalization",
        "AveragePool",
        "GlobalAveragePool",
    }  # fmt: skip
)
#: Which inputs of each rounding operator (and of ``Concat``) must share one type.
_SAME_TYPE = {"BatchNormalization": 1}  # only X; the statistics may have their own types


def type_name(code: int) -> str:
    """The ONNX name of an element-type code (``"FLOAT16"``), or ``"type <code>"``."""
    try:
        return onnx.TensorProto.DataType.Name(int(code))
    except ValueError:
        return f"type {int(code)}"


def compute_type(input_type: int) -> int:
    """The dtype a graph with this input type computes in: DOUBLE for DOUBLE, else FLOAT."""
    return T.DOUBLE if input_type == T.DOUBLE else T.FLOAT


def constant_type(value: object) -> int:
    """The ONNX element type of a ``Constant`` node's attribute value."""
    if isinstance(value, onnx.TensorProto):
        return int(value.data_type)
    arr = np.asarray(value)
    if arr.dtype.kind == "f":
        return T.FLOAT  # value_float(s) are FLOAT
    if arr.dtype.kind in "iu":
        return T.INT64  # value_int(s) are INT64
    return T.STRING


def output_types(op: str, at: dict, in_types: Sequence[int | None]) -> list[int | None]:
    """Element types of a node's outputs (``None`` where unknown)."""
    if op == "Cast":
        return [int(at.get("to", 0))]
    if op == "Shape":
        return [T.INT64]
    if op == "Constant":
        if "sparse_value" in at:
            return [int(at["sparse_value"].values.data_type)]
        for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
            if key in at:
                return [constant_type(at[key])]
        return [None]
    if op == "Dropout":
        return [in_types[0] if in_types else None, T.BOOL]
    if op == "DequantizeLinear":  # the scale's type
        return [in_types[1] if len(in_types) > 1 else None]
    return [in_types[0] if in_types else None]


def _refuse(reason: str) -> NoReturn:
    raise UnsupportedModelError(reason)


def _check_cast(source: int | None, to: int, dependent: bool, compute: int) -> None:
    name = type_name(to)
    if not dependent:
        if to not in NUMPY_FLOAT_TYPES and to not in INTEGER_TYPES:
            _refuse(f"Cast of a constant to {name} is not supported")
        if source is not None and source not in NUMPY_FLOAT_TYPES | INTEGER_TYPES:
            _refuse(f"Cast of a {type_name(source)} constant is not supported")
        return
    if to in INTEGER_TYPES:
        _refuse(
            f"Cast to {name} rounds an input-dependent tensor to integers (and wraps or "
            "saturates); not supported"
        )
    if to not in COMPUTE_TYPES:
        if name.startswith(("FLOAT", "BFLOAT")):  # FLOAT16, BFLOAT16, FLOAT8*, FLOAT4*
            _refuse(f"Cast to {name} rounds and can overflow or saturate; not supported")
        _refuse(f"Cast to {name} is not a cast between real numbers; not supported")
    if source == to or (to == T.DOUBLE and source in EXACT_FLOAT_TYPES):
        return  # the identity, or widening to DOUBLE: exact
    if to == T.FLOAT and source in (T.FLOAT16, T.BFLOAT16):
        return  # widening to FLOAT: exact
    if source == T.DOUBLE and to == T.FLOAT and compute == T.FLOAT:
        return  # rounds to the graph's own compute dtype, like every FLOAT operation
    _refuse(
        f"Cast from {type_name(source) if source is not None else 'an unknown type'} to {name} rounds, and {name} is narrower than the "
        f"graph's compute type {type_name(compute)}; not supported"
    )


def audit_node(
    op: str,
    at: dict,
    in_types: Sequence[int | None],
    dependent: Sequence[bool],
    compute: int,
) -> None:
    """Refuse the node unless the reader reads it exactly (the rules of the module docstring).

    Parameters
    ----------
    op, at:
        The operator and its attributes.
    in_types:
        The element type of each input (``None`` for a missing optional input or an unknown
        type).
    dependent:
        For each input, whether it depends on the network input.
    compute:
        The graph's compute type (:func:`compute_type`).

    Raises
    ------
    UnsupportedModelError
        With the reason only; the caller adds the node's name.
    """
    if op == "Cast":
        _check_cast(in_types[0], int(at.get("to", 0)), bool(dependent[0]), compute)
        return
    if op not in ROUNDING_OPS and op != "Concat":
        return
    count = _SAME_TYPE.get(op, len(in_types))
    known = [t for t in in_types[:count] if t is not None]
    if len(set(known)) > 1:
        names = " and ".join(sorted({type_name(t) for t in known}))
        _refuse(f"mixes {names} operands (ONNX requires one type); not supported")
    if op == "Concat" or not known:
        return
    kind = known[0]
    if kind in COMPUTE_TYPES:
        return
    if kind in INTEGER_TYPES and not any(dependent):
        if op in ("Add", "Sub", "Mul", "Div"):
            return  # integer constant arithmetic (shape computations), done exactly
        _refuse(f"folds {type_name(kind)} constants with {op}; not supported")
    _refuse(f"computes in {type_name(kind)}, which rounds and can overflow; not supported")
