"""A user's ``nn.Sequential`` written the ways users save PyTorch models: ``state_dict``,
checkpoint dict, whole pickle, tagged as saved on a GPU, TorchScript (scripted, traced, traced
through a functional ``forward``, scripted inside a module whose ``forward`` branches on flags,
plain or frozen). Used by the soak's ``readers`` family and ``scripts/user_checkpoints.py``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

#: The final layers a model may end in (kept as its head).
HEAD_KINDS = ("Softmax", "LogSoftmax", "Sigmoid", "Tanh")


def write_torch(model: Any, path: Path, form: str, shape: tuple[int, ...]) -> None:
    """``model`` saved at ``path`` the way users save it: ``state_dict``, ``checkpoint`` (a
    dict with ``model_state_dict``), ``pickle`` (the module whole), ``cuda_state_dict`` /
    ``cuda_pickle`` (every storage tagged ``cuda:0``, as saved on a GPU), ``script``,
    ``trace`` (TorchScript), ``trace-functional`` (traced with a forward of functional calls:
    :func:`_functional`), ``script-frozen`` (scripted, then ``torch.jit.freeze`` as users call
    it: BatchNorm folded into the weights in their dtype), ``script-custom`` or
    ``script-custom-frozen`` (scripted inside a module whose ``forward`` branches on flags,
    :func:`_custom`; frozen with the stored weights kept, ``optimize_numerics=False``)."""
    import torch

    if form == "state_dict":
        torch.save(model.state_dict(), path)
    elif form == "checkpoint":
        state = {"epoch": 3, "model_state_dict": model.state_dict(), "optimizer_state_dict": {}}
        torch.save(state, path)
    elif form == "pickle":
        torch.save(model, path)
    elif form.startswith("cuda_"):
        import torch.serialization as ser

        tag, ser.location_tag = ser.location_tag, lambda storage: "cuda:0"
        try:
            torch.save(model if form == "cuda_pickle" else model.state_dict(), path)
        finally:
            ser.location_tag = tag
    elif form.startswith(("script", "trace")):
        with warnings.catch_warnings():  # torch.jit is deprecated; the tracer's own warnings
            warnings.simplefilter("ignore")
            if form in ("script", "script-frozen"):
                ts = torch.jit.script(model)
                ts = torch.jit.freeze(ts) if form == "script-frozen" else ts
            elif form.startswith("script-custom"):
                ts = torch.jit.script(_custom(model))
                if form.endswith("frozen"):  # the stored weights kept (no BatchNorm folds)
                    ts = torch.jit.freeze(ts, optimize_numerics=False)
            elif form in ("trace", "trace-functional"):
                dt = next(model.parameters()).dtype
                traced = _functional(model) if form == "trace-functional" else model
                ts = torch.jit.trace(traced, torch.zeros(2, *shape, dtype=dt))
            else:
                raise ValueError(f"unknown torch form {form!r}")
            torch.jit.save(ts, path)
    else:
        raise ValueError(f"unknown torch form {form!r}")


def _functional(model: Any) -> Any:
    """``model`` (an ``nn.Sequential``) behind a ``forward`` of functional calls, as users
    write them: ``F.linear``, ``F.relu``, ``x.reshape(x.shape[0], -1)`` for ``Flatten`` and
    ``x.view(x.size(0), C, H, W)`` for ``Unflatten`` (so the traced graph holds size ops and
    views, not the modules' ops); other layers are called as modules."""
    import torch
    import torch.nn.functional as F

    class Functional(torch.nn.Module):
        def __init__(self, seq: Any) -> None:
            super().__init__()
            self.seq = seq

        def forward(self, x: Any) -> Any:
            for m in self.seq:
                kind = type(m).__name__
                if kind == "ReLU":
                    x = F.relu(x)
                elif kind == "Linear":
                    x = F.linear(x, m.weight, m.bias)
                elif kind == "Flatten":
                    x = x.reshape(x.shape[0], -1)
                elif kind == "Unflatten":
                    x = x.view(x.size(0), *m.unflattened_size)
                else:
                    x = m(x)
            return x

    return Functional(model).eval()


def _custom(model: Any) -> Any:
    """``model`` (an ``nn.Sequential``, eval mode) inside a module as users write one: its
    ``forward`` checks the input's rank (raising otherwise), reshapes it by a bool flag, runs
    the layers but the head, applies ``F.dropout`` with its own ``training`` flag, and the
    head by a flag and an int count; scripted, every check is a ``prim::If`` on a known
    condition."""
    import torch
    import torch.nn.functional as F

    class Custom(torch.nn.Module):
        def __init__(self, seq: Any) -> None:
            super().__init__()
            self.use_head = type(seq[-1]).__name__ in HEAD_KINDS
            self.body = seq[:-1] if self.use_head else seq
            self.head = seq[-1] if self.use_head else torch.nn.Identity()
            self.flat, self.p, self.layers = True, 0.25, len(seq)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.dim() != 2:
                raise ValueError("expected a batch of feature vectors")
            if self.flat and x.dim() == 2:
                x = x.reshape(x.size(0), -1)
            h = self.body(x)
            if self.layers > 1:
                h = F.dropout(h, self.p, self.training)
            if self.use_head:
                h = self.head(h)
            return h

    return Custom(model).eval()
