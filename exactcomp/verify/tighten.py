r"""Tighter bounds of ``f``'s hidden layers for the differential bounds, once per run.

The differential bounds of :mod:`exactcomp.verify.symbolic` bound ``g - f`` through ``f``'s
own pre-activation bounds :math:`l_k \le z^f_k \le u_k` on the root box (``Pair.root``,
back-substitution by default). Those bounds decide which neurons of ``f`` (and of ``g``, whose
bounds are :math:`[l + \underline{d}, u + \overline{d}]`) are stable, shape the second route of
the ReLU difference (``g``'s own relaxation minus ``f``'s), and are the ranges the lossy
search (:mod:`exactcomp.rewrite.lossy`) charges a neuron replaced by a constant with.

Here they are tightened by the triangle-relaxation LP of :mod:`exactcomp.bounds.lp`, layer by
layer from the first hidden layer on, each layer's LP using the already tightened bounds of the
layers below (optimisation-based bound tightening). ``f`` is fixed for a whole lossy run, so
this is paid once per box and reused by every candidate ``g``.

Soundness: :func:`~exactcomp.bounds.lp.lp_layer_bounds` returns bounds from a padded weak-duality
certificate, never from the solver's objective; a neuron whose LP fails or runs out of time
keeps its back-substitution bound, and the result is intersected with the old bounds, so it is
never looser. The rounding pads of the batched back-substitution are recomputed from the new
bounds (:func:`~exactcomp.bounds.batched.static_pad`, valid for any sound root bounds).

Then, in the time left, the same LP with ideal cuts (Anderson et al.: the convex hull of one
ReLU of its inputs' box, separated at the LP's optimum; :mod:`exactcomp.bounds.ideal_cuts`,
the stability engine's), each neuron asked on both sides; a neuron not reached keeps its LP
bound.

What it buys on the digits 64-100-100-10 model (l1 = 0) on [0,1]^64: layer 1's mean width
40.2 -> 33.7 by LP, -> 25.2 with ideal cuts (sampled + gradient ascent: 19.3; RESULTS.md
"lossy5"); the 8-bit differential bound 6.38 -> 6.30 by LP. Little, because every hidden neuron
of that model is unstable on the box in truth (samples change its sign): the bounds' width is
not what makes the difference bound loose (see benchmarks/RESULTS.md, issue 15).
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from ..bounds.batched import static_pad
from ..bounds.ideal_cuts import ideal_cut_layer_result
from ..bounds.lp import lp_layer_bounds
from ..domain import Box
from .pairs import Pair


def tightened_pair(pair: Pair, box: Box, seconds: float, *, cuts: bool = True) -> Pair:
    """``pair`` with ``f``'s hidden-layer root bounds tightened by LP within ``seconds``, then
    (``cuts``) by the LP with ideal cuts (:func:`exactcomp.bounds.ideal_cuts.ideal_cut_layer_result`)
    in the time left.

    ``box`` must be the root box ``pair`` was prepared on. Layers not reached in time keep
    their bounds; the result is never looser than ``pair.root``."""
    f, root = pair.f, list(pair.root)
    deadline = time.monotonic() + max(float(seconds), 0.0)
    for k in range(1, len(f.layers) - 1):  # layer 0 is exact already; the output is not used
        left = deadline - time.monotonic()
        if left <= 0:
            break
        lo, hi = lp_layer_bounds(f, box, k, root[: k + 1], tol=pair.tol, time_limit=left)
        root[k] = (np.maximum(lo, root[k][0]), np.minimum(hi, root[k][1]))
        if cuts and time.monotonic() < deadline:
            every = np.arange(f.layers[k].out_features)
            got = ideal_cut_layer_result(
                f, box, k, root[: k + 1], every, np.zeros_like(every), pair.tol, deadline, False
            )
            root[k] = (np.maximum(got.lower, root[k][0]), np.minimum(got.upper, root[k][1]))
    pads = {k: static_pad(f, k, root, pair.mag, pair.tol) for k in pair.pads}
    return dataclasses.replace(pair, root=tuple(root), pads=pads)
