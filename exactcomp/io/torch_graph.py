"""TorchScript read from its graph: traced modules (``torch.jit.trace``) and scripted ones
that are not a plain ``nn.Sequential`` (their ``if``s on known flags evaluated).

A traced module keeps its weights but not its layers' hyper-parameters (a traced ``Conv2d``
has no ``stride`` attribute): what it computes is its graph, recorded when it was traced.
That graph (``module.inlined_graph``: every submodule's ``forward`` inlined) is read here node
by node, exactly as the network computes:

* ``prim::Constant``, ``prim::ListConstruct`` and ``prim::GetAttr`` (a submodule, a weight,
  a flag) are evaluated to Python values; ``aten::size(x, 0)`` is the batch size, a symbol
  that may only stand first in a ``view``/``reshape`` size (``prim::NumToTensor``,
  ``aten::Int`` pass it on; ``aten::size(x)`` is ``(batch, *features)``, indexed by
  ``aten::__getitem__``);
* every other node must take the current activation (the graph's one input, then each op's
  output: a chain) and is one of the layers the module reader knows, with its constants:

  ==============================================  =====================================
  ``aten::linear(x, W, b)``                        ``Linear``
  ``aten::relu``, ``aten::relu_``                  ``ReLU``
  ``aten::_convolution`` (not transposed),         ``Conv2d``
  ``aten::conv2d``, ``aten::_convolution_mode``
  ``aten::batch_norm(training=False)``             ``BatchNorm2d`` on an image, else
                                                   ``BatchNorm1d``
  ``aten::max_pool2d``, ``aten::avg_pool2d``,      the pools
  ``aten::adaptive_avg_pool2d``
  ``aten::constant_pad_nd``, ``aten::pad``         ``ConstantPad2d``
  (constant, 4 pads)
  ``aten::flatten(x, 1, -1)``, ``view``/           ``Flatten``
  ``reshape`` to ``(batch, n)``
  ``aten::unflatten(x, 1, (C, H, W))``,            ``Unflatten``
  ``view``/``reshape`` to ``(batch, C, H, W)``
  ``aten::dropout(train=False)`` (feature, alpha,  the identity
  in place), ``contiguous``, ``clone``, ``detach``
  ``softmax``/``log_softmax`` (no dtype),          the head (last op only)
  ``sigmoid``, ``tanh``
  ==============================================  =====================================

  and is handed to :class:`~exactcomp.io.torch_spatial.SpatialSteps` as the layer of that
  kind with those constants (the same checks and folds as a module's layer).

* ``prim::If`` whose condition is known (a scripted module's flags and checks, evaluated by
  :mod:`~exactcomp.io.torch_graph_eval` from constants, attributes and ``aten::dim`` of the
  current activation) is read by its taken branch alone, the ``if``'s outputs bound to that
  branch's returns; the untaken branch is never read. The rank of the activation is the
  chain's: 4 on an image, else 2, the graph's input included: an input is read as a batch of
  flat vectors ``(batch, n)``, as the box's points are (a note says so when ``forward`` tests
  its input's rank). A taken branch that raises (``prim::RaiseException``) is refused with its
  message; so is any read of ``self.training`` that is True (a module saved in training mode
  computes batch statistics or random dropout).

Anything else is refused by name: another op, an op on weights (a weight computed in
``forward``), an ``if`` on a value computed from the input (its values or its batch size),
``prim::Loop``, an op that combines or reuses activations (a residual), a tuple output, a
graph whose input is an image (a traced graph does not keep its input's shape: start the
model with ``nn.Unflatten(1, (C, H, W))``).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from ..errors import UnsupportedModelError
from ..network import Network
from .heads import HEAD_CLASSES
from .torch_chain import ChainBuilder
from .torch_graph_eval import TENSOR, UNINITIALIZED, UNKNOWN, evaluate, raise_message
from .torch_spatial import SpatialSteps

__all__ = ["graph_to_network"]


class _Batch:
    """The batch size of the input (``aten::size(x, 0)``): only a ``view`` size's first entry."""


_BATCH = _Batch()
#: Ops that pass a scalar on unchanged (the batch size traced through a tensor and back).
_PASS = ("prim::NumToTensor", "aten::Int", "aten::ScalarImplicit")
#: Dropout's ops (``nn.Dropout``, ``Dropout2d``, ``AlphaDropout``..., ``inplace`` or not).
_DROPOUTS = tuple(
    f"aten::{k}{s}" for k in ("dropout", "feature_dropout", "alpha_dropout", "feature_alpha_dropout")
    for s in ("", "_")
)  # fmt: skip
_IN_PLACE_READ = ("aten::relu_", *_DROPOUTS)  # the in-place ops read (``__not__`` is none)
_IDENTITY = (
    "aten::contiguous",
    "aten::clone",
    "aten::detach",
    "aten::alias",
    "prim::unchecked_cast",
)
#: The head ops (``aten::softmax``...: the heads' own names) and their torch.nn classes.
_HEADS = {f"aten::{kind}": cls for kind, cls in HEAD_CLASSES.items()}


class _Act:
    """The current activation (the value a chain op must take)."""


_STALE = object()  # an activation a chain op has consumed: no later op may use it
_MISSING = object()  # a value no node read so far has produced
#: The note of a ``forward`` that tests its input's rank.
RANK_NOTE = (
    "its forward tests its input's rank (x.dim()): read as called on a batch of flat vectors, "
    "shape (batch, n)"
)


def graph_to_network(module: Any, source: str) -> Network:
    """Read the inlined graph of the TorchScript ``module`` (see the module docstring)."""
    graph = module.inlined_graph
    inputs = list(graph.inputs())
    if len(inputs) != 2:
        raise UnsupportedModelError(
            f"{source}: its forward takes {len(inputs) - 1} inputs; only one is supported"
        )
    reader = _Reader(source)
    reader.values[inputs[0].unique()] = module
    reader.paths[inputs[0].unique()] = ""
    reader.current = reader.input = inputs[1].unique()
    reader.values[reader.current] = _Act()
    reader.block(graph)
    outputs = list(graph.outputs())
    if len(outputs) != 1 or outputs[0].unique() != reader.current:
        raise UnsupportedModelError(
            f"{source}: the graph's output is not the end of its chain of layers (a tuple "
            "output, or a value computed beside the chain)"
        )
    reader.steps.finish()
    return reader.chain.network()


class _Reader:
    """The values of one graph walk and the layers it feeds."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.values: dict[int, Any] = {}
        self.paths: dict[int, str] = {}  # a submodule's path, for layer names
        self.current = self.input = -1
        self.index = 0  # nodes read so far, for layer names
        self.chain = ChainBuilder("TorchScript")
        self.steps = SpatialSteps(self.chain)

    def refuse(self, node: Any, why: str = "") -> UnsupportedModelError:
        return UnsupportedModelError(
            f"{self.source}: TorchScript op {node.kind()} is not supported{why}; a traced "
            "graph is read when it is a chain of Linear, Conv2d, ReLU, BatchNorm, pools, "
            "pads, flatten/unflatten, eval-mode dropout and a final softmax/sigmoid/tanh"
        )

    def block(self, block: Any) -> None:
        """Read the nodes of a graph or of an ``if``'s taken branch, in order."""
        for node in block.nodes():
            self.index += 1
            self.node(node, self.index - 1)

    def node(self, node: Any, index: int) -> None:
        kind = node.kind()
        outs = [o.unique() for o in node.outputs()]
        if kind == "prim::If":
            return self._if(node)
        if list(node.blocks()):
            raise self.refuse(
                node,
                " (a loop: trace the model with torch.jit.trace, whose graph is straight-line)",
            )
        if kind == "prim::Constant":
            self.values[outs[0]] = node.output().toIValue()
            return
        if kind == "prim::Uninitialized":
            self.values[outs[0]] = UNINITIALIZED
            return
        args = [self.values.get(i.unique(), _MISSING) for i in node.inputs()]
        if any(a is _MISSING or a is UNINITIALIZED for a in args):
            raise self.refuse(node, " (on a value this reader did not compute)")
        if kind == "prim::RaiseException":
            raise UnsupportedModelError(
                f"{self.source}: its forward raises {raise_message(args)} (prim::RaiseException "
                "on the branch taken for an input of shape (batch, n), in eval mode)"
            )
        if kind == "prim::GetAttr":
            name = node.s("name")
            if not hasattr(args[0], name):  # an activation's, a missing attribute
                raise self.refuse(node, f" of {name!r} on a value that has none")
            self.values[outs[0]] = getattr(args[0], name)
            parent = self.paths.get(node.input().unique(), "")
            self.paths[outs[0]] = f"{parent}.{name}" if parent else name
            if name == "training" and self.values[outs[0]] is True:
                raise UnsupportedModelError(
                    f"{self.source}: module {parent or '<root>'!r} is in training mode (its "
                    "forward reads self.training, which is True: batch statistics, random "
                    "dropout); call model.eval() before torch.jit.script and save"
                )
            return
        if kind == "prim::ListConstruct":
            if any(isinstance(a, _Act) or a is _STALE for a in args):
                raise self.refuse(node, " of activations (a concatenation? not a chain)")
            self.values[outs[0]] = list(args)
            return
        acts = [a for a in args if isinstance(a, _Act)]
        if kind in _PASS and not acts and (args[0] is _BATCH or kind == "prim::NumToTensor"):
            self.values[outs[0]] = args[0]
            return
        if self._scalar(node, kind, args, outs):
            return
        if kind == "aten::size" and acts:  # size(x, 0), or size(x) = (batch, *features)
            self.values[outs[0]] = self._size(node, args[1] if len(args) > 1 else None)
            return
        if kind == "aten::__getitem__" and not acts and isinstance(args[0], list):
            self.values[outs[0]] = args[0][args[1]]
            return
        if kind == "aten::warn":  # a warning (F.dropout2d's on the rank): computes nothing
            return
        if kind.endswith("_") and not kind.endswith("__") and kind not in _IN_PLACE_READ:
            raise self.refuse(
                node,
                " (an in-place update: a BatchNorm traced in training mode? trace the "
                "model after model.eval())",
            )
        if any(a is _STALE for a in args):
            raise self.refuse(node, " on an earlier activation (a residual? not a chain)")
        if not acts:
            raise self.refuse(node, " (an op on weights or constants)")
        first = next(iter(node.inputs())).unique()
        if len(acts) != 1 or len(outs) != 1 or first != self.current:
            raise self.refuse(node, " (it combines activations: not a chain)")
        self._layer(node, kind, self._name(node, index), args[1:])
        self.values[outs[0]], self.values[self.current] = self.values[self.current], _STALE
        self.current = outs[0]

    def _if(self, node: Any) -> None:
        """Read the branch an ``if`` on a known condition takes; bind its outputs."""
        cond = self.values.get(node.input().unique(), _MISSING)
        if type(cond) is not bool:
            raise self.refuse(
                node,
                " on a condition computed from the input (its values or batch size): only an "
                "if on the module's constants and the activation's rank is read",
            )
        taken = list(node.blocks())[0 if cond else 1]
        self.block(taken)
        for out, ret in zip(node.outputs(), taken.outputs(), strict=True):
            value = self.values.get(ret.unique(), _MISSING)
            self.values[out.unique()] = value
            if ret.unique() in self.paths:
                self.paths[out.unique()] = self.paths[ret.unique()]
            if ret.unique() == self.current:  # the activation, under the if's name now
                self.values[ret.unique()], self.current = _STALE, out.unique()

    def _scalar(self, node: Any, kind: str, args: list, outs: list[int]) -> bool:
        """Evaluate ``aten::dim`` of the current activation or a scalar op of known values
        (:func:`~exactcomp.io.torch_graph_eval.evaluate`); False where it is neither."""
        if kind == "aten::dim":
            if next(iter(node.inputs())).unique() != self.current:
                raise self.refuse(node, " (the rank of a value other than the activation)")
            if self.current == self.input and RANK_NOTE not in self.chain.notes:
                self.chain.notes.append(RANK_NOTE)
            value: Any = 4 if self.steps.shape is not None else 2
        elif kind == "prim::unchecked_cast" and not isinstance(args[0], _Act):
            value = args[0]
        else:
            if any(a is _STALE for a in args):
                return False
            types = [str(t) for t in node.tys("types")] if kind == "prim::isinstance" else []
            value = evaluate(kind, [TENSOR if isinstance(a, _Act) else a for a in args], types)
            if value is UNKNOWN:
                if any(a is _BATCH for a in args):
                    raise self.refuse(node, " on the batch size (only a view's first entry)")
                return False
        self.values[outs[0]] = value
        return True

    def _size(self, node: Any, dim: int | None) -> Any:
        """The batch symbol (``dim`` 0), or the list (batch, *features) (``dim`` None)."""
        if dim == 0:
            return _BATCH
        features = self.steps.shape or (self.chain.width,)
        if dim is not None or None in features:
            raise self.refuse(node, f" of dimension {dim} (only the batch size is read)")
        return [_BATCH, *features]

    def _name(self, node: Any, index: int) -> str:
        """The submodule a node's weights come from, else ``op #index``."""
        for i in node.inputs():
            producer = i.node()
            if producer.kind() == "prim::GetAttr":
                path = self.paths.get(producer.input().unique(), "")
                if path:
                    return path
        return f"{node.kind().split('::')[-1]} #{index}"

    def _layer(self, node: Any, kind: str, name: str, a: list) -> None:
        feed = self.steps.feed
        ns = SimpleNamespace
        if kind == "aten::linear":
            feed(name, "Linear", ns(weight=a[0], bias=a[1]))
        elif kind in ("aten::relu", "aten::relu_"):
            feed(name, "ReLU", ns())
        elif kind in ("aten::_convolution", "aten::conv2d", "aten::_convolution_mode"):
            if kind == "aten::_convolution":  # (w, b, stride, pad, dil, transposed, _, groups)
                if a[5]:
                    raise self.refuse(node, " (a transposed convolution)")
                stride, padding, dilation, groups = a[2], a[3], a[4], a[7]
            else:  # (w, b, stride, padding, dilation, groups)
                stride, padding, dilation, groups = a[2:6]
            if a[0].dim() != 4:
                raise self.refuse(node, " (a convolution that is not 2-D)")
            layer = ns(
                weight=a[0],
                bias=a[1],
                stride=stride,
                padding=padding,
                dilation=dilation,
                groups=int(groups),
                in_channels=int(a[0].shape[1]) * int(groups),
                padding_mode="zeros",
            )
            feed(name, "Conv2d", layer)
        elif kind == "aten::batch_norm":
            if a[4]:
                raise self.refuse(node, " in training mode (trace the model after model.eval())")
            bn = ns(weight=a[0], bias=a[1], running_mean=a[2], running_var=a[3], eps=a[6])
            feed(name, "BatchNorm2d" if self.steps.shape is not None else "BatchNorm1d", bn)
        elif kind == "aten::max_pool2d":
            pool = ns(
                kernel_size=a[0],
                stride=a[1] or a[0],
                padding=a[2],
                dilation=a[3],
                ceil_mode=a[4],
                return_indices=False,
            )
            feed(name, "MaxPool2d", pool)
        elif kind == "aten::avg_pool2d":
            pool = ns(
                kernel_size=a[0],
                stride=a[1] or a[0],
                padding=a[2],
                ceil_mode=a[3],
                count_include_pad=a[4],
                divisor_override=a[5],
            )
            feed(name, "AvgPool2d", pool)
        elif kind == "aten::adaptive_avg_pool2d":
            feed(name, "AdaptiveAvgPool2d", ns(output_size=tuple(a[0])))
        elif kind in ("aten::constant_pad_nd", "aten::pad"):  # (pads, value), (pads, mode, value)
            value = a[1] if kind == "aten::constant_pad_nd" else a[2]
            if kind == "aten::pad" and a[1] != "constant":
                raise self.refuse(node, f" in mode {a[1]!r} (only 'constant')")
            if len(a[0]) != 4:
                raise self.refuse(node, f" with {len(a[0])} pads (only 4, an image's)")
            feed(name, "ConstantPad2d", ns(padding=tuple(a[0]), value=float(value or 0.0)))
        elif kind == "aten::flatten":
            feed(name, "Flatten", ns(start_dim=a[0], end_dim=a[1]))
        elif kind == "aten::unflatten":
            feed(name, "Unflatten", ns(dim=a[0], unflattened_size=tuple(a[1])))
        elif kind in ("aten::view", "aten::reshape"):
            self._view(node, name, a[0])
        elif kind in _DROPOUTS:  # (x, p, train): the identity in eval mode, in place or not
            if a[1]:
                raise self.refuse(node, " in training mode (trace the model after model.eval())")
        elif kind in _IDENTITY:
            pass
        elif kind in _HEADS:  # softmax(x, dim, dtype); sigmoid(x), tanh(x)
            if len(a) > 1 and a[1] is not None:
                raise self.refuse(node, " (with a dtype conversion)")
            feed(name, _HEADS[kind], ns(dim=a[0] if a else None))
        else:
            raise self.refuse(node)

    def _view(self, node: Any, name: str, size: Any) -> None:
        """``view``/``reshape`` to ``(batch, n)`` (a flatten) or, from a flat tensor, to
        ``(batch, C, H, W)`` (an unflatten); the batch entry is the traced size or -1."""
        if not isinstance(size, list) or not size or not (size[0] is _BATCH or size[0] == -1):
            raise self.refuse(node, f" to size {size} (the batch must come first)")
        rest = size[1:]
        if any(not isinstance(v, int) for v in rest):
            raise self.refuse(node, f" to size {size} (a size computed from the input)")
        if len(rest) == 1:
            features = self.steps.shape or (self.chain.width,)
            n = 1
            for v in features:
                n = n * v if v is not None else -2
            if rest[0] != -1 and n != -2 and rest[0] != n:
                raise self.refuse(node, f" to size {size} (the input has {n} features)")
            self.steps.feed(name, "Flatten", SimpleNamespace(start_dim=1, end_dim=-1))
        elif len(rest) == 3 and min(rest) > 0:
            self.steps.feed(name, "Unflatten", SimpleNamespace(dim=1, unflattened_size=rest))
        else:
            raise self.refuse(node, f" to size {size} (only to (batch, n) or (batch, C, H, W))")
