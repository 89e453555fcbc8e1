"""``python -m benchmarks lossy --soak N``: the soundness soak of the lossy proofs (issue 15).

Random tiny networks, one random lossy edit each, the exact ``max |f - g|`` by the oracle
against the proven bound (:func:`soak`)."""

from __future__ import annotations

import numpy as np

from exactcomp import api
from exactcomp.domain import Box
from exactcomp.network import Network

__all__ = ["soak"]

#: The box of a family's case where it has its own (set by its generator).
boxes: dict[str, Box] = {}


def soak(n: int, seed: int = 0) -> dict:
    """Random tiny networks (2-3 inputs, two hidden layers of 3-7), each with one random lossy
    edit (quantisation to 8/4/3/2/ternary bits, plain or corrected, proven with or without LP-tightened bounds of
    ``f``, by the symbolic bound and the joint LP, branch and bound in it, the exact joint MILP
    asked at 0.99 or 1.01 x the exact value, or input splitting;
    or ``compress --tol``, whose search spends the LP's slack and whose claim is the tighter of
    the two, every other one with neurons removed with refit and centred weights; it runs the
    exact passes first, so each of its networks gets a stably inactive and a stably active
    neuron in the first hidden layer; half of them float32 models, whose results are
    rounded to float32 and proven again); every fourth case also a low-rank case
    (:func:`_lowrank_case`) and every fourth (others) a merge case (:func:`_merge_case`) and
    a near-dependent ``compress --tol`` case (:func:`_near_dependent_case`): the exact ``max |f - g|`` against the original
    (:func:`exactcomp.testing.max_output_difference`) must never exceed the proven bound, and
    where ``compress --tol`` has a started-from network, ``f`` is also quantised to 8 bits from
    an ONNX file and saved as ``.onnx``, ``.pt`` then ``.nnet``, each file read back against
    the claim its report gives (``saved``, :func:`_saved_files`); every other case also
    ``compress --tol`` whose first exact pass is cut short, so that the second exact pass
    runs (:func:`_second_pass_case`; ``second_passes``: how many later passes ran);
    the lower bound :func:`~exactcomp.verify.charge.sampled_max_difference` (sampling, ascent,
    the coordinate local search over the case's box) never exceed the exact one
    (``lower_violations``; ``min_sampled_over_exact``: how close it gets)."""
    from exactcomp.testing import max_output_difference
    from exactcomp.testing.rational import exact_difference

    rng = np.random.default_rng(seed)
    worst_ratio, violations, cases, noise, stored32 = 0.0, [], 0, 0.0, 0
    lower_violations, closest, later = [], np.inf, 0
    families: dict[str, int] = {}
    for case in range(n):
        d = int(rng.integers(2, 4))
        widths = [d, int(rng.integers(3, 8)), int(rng.integers(3, 8)), int(rng.integers(1, 4))]
        ws = [rng.normal(size=(b, a)) for a, b in zip(widths[:-1], widths[1:], strict=True)]
        bs = [rng.normal(size=b) * 0.5 for b in widths[1:]]
        f = Network.from_arrays(ws, bs, dtype="float64")
        box = Box(-rng.random(d) - 0.1, rng.random(d) + 0.1)
        if case % 3 == 2:
            reach = np.abs(ws[0]) @ np.maximum(-box.lower, box.upper)  # >= |W x| on the box
            bs[0][0], bs[0][1] = -reach[0] - 0.1, reach[1] + 0.1  # inactive, active
            dtype = "float32" if (case // 6) % 2 else "float64"  # float32: rounded, proven again
            ws, bs = ([a.astype(dtype).astype(np.float64) for a in arr] for arr in (ws, bs))
            f = Network.from_arrays(ws, bs, dtype=dtype)
            tol = float(rng.choice([0.01, 0.1, 0.5]))
            fitted = bool((case // 3) % 2)  # every other one with refits and centred weights
            res = api.compress_lossy(f, box, tol, time_limit=2.0, centre=fitted, refit=fitted)
            g, proven = res.network, res.proven
            stored32 += res.report["stored_dtype"] == "float32" and dtype == "float32"
        else:
            bits = [float(rng.choice([8, 4, 3, 2, 1.5])) for _ in f.layers]
            comp = None  # every other one corrected (bias correction and scale search)
            if (case // 2) % 2:
                comp = api.domain_compensation(f, [box])
            g = api.quantize_network(f, bits, comp).network
            tighten = 1.0 if case % 2 else 0.0  # LP-tightened bounds of f on every other case
            charger = api.Charger(f, [box], tighten_seconds=tighten)
            if case % 8 == 1:  # branch and bound on f's phases in the joint LP
                proven = charger.proven(g, bab_seconds=2.0)
            elif case % 8 == 5:  # the exact joint MILP asked at a target near the exact value
                target = max_output_difference(f, g, box).value * float(rng.choice([0.99, 1.01]))
                proven = charger.proven(g, target=target, lp_seconds=2.0, milp_seconds=5.0)
            elif case % 4 < 2:  # the joint LP alone (no splitting to hide it behind)
                proven = charger.proven(g, lp_seconds=5.0)
            else:
                proven = charger.proven(g, split_seconds=1.0)
        checks = [(f, g, proven, "")]
        if case % 3 == 2 and res.alternative is not None:  # the float network started from
            checks.append((f, res.alternative.network, res.alternative.proven, "started-from"))
            checks += _saved_files(f, box)
        if case % 4 == 3:  # and a low-rank case (its own generator: the others' draws stay)
            checks.append(_lowrank_case(np.random.default_rng([seed, case]), d, box))
        if case % 4 == 1:  # and a merge case (its own generator too)
            checks.append(_merge_case(np.random.default_rng([seed, case, 1]), d, box))
        if case % 4 == 2:  # and compress --tol on folds of large terms (its own seed)
            checks.append(_near_dependent_case(seed * 10_000 + case))
        if case % 2 == 0:  # and compress --tol whose first exact pass is cut short
            second, passes = _second_pass_case(seed * 10_000 + case)
            checks += second
            later += passes
        for f, g, proven, family, *own in checks:
            box = own[0] if own else boxes.get(family, box)
            worst = max_output_difference(f, g, box)
            exact = worst.value  # float64 at the maximiser; with terms of 1e9, settled there:
            if family == "near-dependent" or family.startswith("second-pass"):
                exact = exact_difference(f, g, worst.x)  # rationals: no slack below
            slack = 0.0 if family.startswith("second-pass") else 1e-9
            cases += 1
            families[family or "edit"] = families.get(family or "edit", 0) + 1
            sampled = api.sampled_max_difference(f, g, [box])
            if sampled > exact + 1e-9:
                lower_violations.append({"case": case, "exact": exact, "sampled": sampled})
            if exact > 1e-9:  # below: the exact passes' float64 folds, rounding only
                closest = min(closest, sampled / exact)
            if exact > proven + slack:
                violations.append({"case": case, "exact": exact, "proven": proven})
                violations[-1].update({"family": family} if family else {})
            if exact > 0 and proven > 0:
                worst_ratio = max(worst_ratio, exact / proven)
            elif proven == 0:  # the exact pass's float64 folds: f_exact = f to rounding only
                noise = max(noise, exact)
    return {"cases": cases, "violations": violations, "max_exact_over_proven": worst_ratio,
            "max_exact_where_proven_0": noise, "float32_written": stored32,
            "families": families, "lower_violations": lower_violations,
            "min_sampled_over_exact": closest, "second_passes": later}  # fmt: skip


def _saved_files(f: Network, box: Box) -> list:
    """``quantize --bits 8`` of ``f`` read from an ONNX file (the input itself a candidate,
    claim 0: a tiny network's int8 graph is larger), the result saved as ``.onnx``, ``.pt``
    then ``.nnet``, each file read back with the claim its report gives after that save (a
    second save once kept the first's claim 0 for the 8-bit network: red27)."""
    import tempfile
    from pathlib import Path

    out = []
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "f.onnx"
        api.save(f, src)
        res = api.quantize(str(src), box, bits=8, time_limit=2.0)
        for name in ("a.onnx", "b.pt", "c.nnet"):
            path = Path(tmp) / name
            res.save(path)
            claim = res.report["proven_max_abs_diff"]
            out.append((api.load(str(src)), api.load(str(path)), claim, "saved"))
    return out


def _cut_exact(cuts: int):
    """The exact compression (``exactcomp.api.compress``) as ``compress_lossy``'s ``exact``
    option, its first ``cuts`` calls given a deadline already past: only what interval bounds
    and structure settle is decided, the rest kept (still exact)."""
    import time

    calls = []

    def exact(f, domain, *, deadline, analysis_end):
        calls.append(f.num_neurons)
        if len(calls) <= cuts:
            deadline = analysis_end = time.perf_counter() - 1.0
        return api.compress(f, domain, deadline=deadline, analysis_end=analysis_end)

    return exact


def _second_pass_case(seed: int) -> tuple[list, int]:
    r"""``compress --tol`` of a network its first exact pass leaves a tenth undecided (its
    deadline past: :func:`_cut_exact`), so that :mod:`exactcomp.second_pass` runs before the
    search (and after it, where the search proves no edit). ``d`` inputs in ``[-r, r]``,
    layer 1: ``a_i = relu(x_i)``, ``b_i = relu(-x_i)``, random rows and a copy ``c z`` of one
    (``c`` in {2, 1/3, 1 + 2^-52}); layer 2: gates ``relu(a_i + b_i - 1.5 r)`` (0 on the box,
    which linear bounds prove and intervals do not), random rows; float32 or float64; the
    domain one box or a union of two (VNN-LIB disjunctions); ``tol_mode`` linf or top1;
    the first pass or the first two cut. Returns the checks (each box its own) and how many
    later passes ran; float32 results also saved as ``.onnx``, ``.pt``, ``.nnet``, each file
    against its report's claim."""
    import tempfile
    from pathlib import Path

    from exactcomp.errors import InvalidOptionError, OutputPathError

    rng = np.random.default_rng(seed)
    d, r = int(rng.integers(1, 3)), float(rng.choice([0.5, 1.0, 2.0]))
    n1, n2 = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    w1 = np.vstack([np.eye(d), -np.eye(d), rng.normal(size=(n1, d))])
    b1 = np.concatenate([np.zeros(2 * d), rng.normal(size=n1) * 0.3])
    c = float(rng.choice([2.0, 1 / 3, 1 + 2.0**-52]))
    w1, b1 = np.vstack([w1, c * w1[-1]]), np.append(b1, c * b1[-1])
    h = w1.shape[0]
    gates = np.hstack([np.eye(d), np.eye(d), np.zeros((d, h - 2 * d))])
    w2 = np.vstack([gates, rng.normal(size=(n2, h))])
    b2 = np.concatenate([np.full(d, -1.5 * r), rng.normal(size=n2) * 0.3])
    m = int(rng.integers(1, 4))
    ws, bs = [w1, w2, rng.normal(size=(m, w2.shape[0]))], [b1, b2, rng.normal(size=m) * 0.3]
    dtype = str(rng.choice(["float32", "float64"]))
    ws, bs = ([a.astype(dtype).astype(np.float64) for a in arr] for arr in (ws, bs))
    f = Network.from_arrays(ws, bs, dtype=dtype)
    doms = [Box(np.full(d, -r), np.full(d, r))]
    if rng.random() < 0.5:  # a union: the box and a part of it, or the box's left half
        doms.append(Box(np.full(d, -r), np.full(d, float(rng.choice([-r / 2, 0.0])))))
    tol, mode = float(rng.choice([1e-9, 0.01, 0.1, 0.5])), str(rng.choice(["linf", "top1"]))
    cuts = int(rng.integers(1, 3))
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "f.onnx"  # read from a file: the input itself a candidate too
        api.save(f, src)
        opts = {"time_limit": 4.0, "tighten_seconds": 0.0,
                "split_seconds": float(rng.choice([0.0, 1.0])), "exact": _cut_exact(cuts)}  # fmt: skip
        try:
            res = api.compress_lossy(str(src), doms, tol, tol_mode=mode, **opts)
        except InvalidOptionError:  # top1: the class of f not proven constant on a box
            res = api.compress_lossy(str(src), doms, tol, **opts | {"exact": _cut_exact(cuts)})
        passes = len(res.report.get("exact_pass", {}).get("later_passes", []))
        out = [(f, res.network, res.proven, "second-pass", b) for b in doms]
        if res.alternative is not None:
            alt = res.alternative
            out += [(f, alt.network, alt.proven, "second-pass", b) for b in doms]
        for name in ("a.onnx", "b.pt", "c.nnet"):
            path = Path(tmp) / name
            try:
                res.save(path)
            except OutputPathError:  # .nnet of a network with an affine layer: none written
                continue
            claim = res.report["proven_max_abs_diff"]
            out += [(f, api.load(str(path)), claim, "second-pass-saved", b) for b in doms]
    return out, passes


def _near_dependent_case(seed: int):
    """``compress --tol`` on a near-dependent network (:func:`~exactcomp.testing.adversarial.
    near_dependent_case`: stably active rows, one a combination of the others to 1e-13..1e-9,
    read with weights 1e6..1e9): its exact pass folds them, and the float64 rounding of those
    folds is what the claim must cover (:mod:`exactcomp.exact_reference`; soak seed 25400 of
    the main soak had claimed 0 for an exact 0.09). Returns ``(f, g, proven,
    "near-dependent")``; its box is in ``boxes``."""
    from exactcomp.testing.adversarial import near_dependent_case

    case = near_dependent_case(seed)
    boxes["near-dependent"] = case.box
    rng = np.random.default_rng(seed)
    tol = float(rng.choice([1e-6, 1e-3, 0.1, 10.0]))
    res = api.compress_lossy(case.network, case.box, tol, time_limit=2.0)
    return case.network, res.network, res.proven, "near-dependent"


def _merge_case(rng: np.random.Generator, d: int, box: Box):
    """A merge case (:mod:`exactcomp.rewrite.merging`): ``d-n-n-m`` float32 whose hidden
    layers hold near-parallel pairs (row ``j`` = a positive multiple of row ``i`` plus noise
    none, small or large) and an anti-parallel one; one random merge candidate proven by the
    symbolic bound or the joint LP, folded, its pad added; every third case instead the
    greedy search (merges on) at a random tolerance, folded as written. Returns ``(f,
    written g, proven, "merge")``."""
    lossy, merging = api.lossy, api.merging
    n, m = int(rng.integers(4, 8)), int(rng.integers(1, 4))
    noise = float(rng.choice([0.0, 0.02, 0.3]))
    ws = [rng.normal(size=(n, d)), rng.normal(size=(n, n)), rng.normal(size=(m, n))]
    bs = [rng.normal(size=n) * 0.5, rng.normal(size=n) * 0.5, rng.normal(size=m) * 0.5]
    for w, b in zip(ws[:2], bs[:2], strict=True):
        scale = float(rng.choice([0.5, 2.0, rng.uniform(0.3, 3.0)]))
        w[1], b[1] = scale * w[0] + noise * rng.normal(size=w.shape[1]), scale * b[0]
        w[2], b[2] = -w[0], -b[0]  # anti-parallel: never merged (relu(-z) != -relu(z))
    ws = [w.astype(np.float32).astype(np.float64) for w in ws]
    bs = [b.astype(np.float32).astype(np.float64) for b in bs]
    f = Network.from_arrays(ws, bs, dtype="float32")
    charger = api.Charger(f, [box])
    if rng.random() < 1 / 3:
        out = lossy.search(f, [box], float(rng.choice([0.05, 0.5, 2.0])), charger, time_limit=2.0)
        return f, merging.fold(out.network, out.merges), out.proven, "merge"
    ranges = lossy.relu_ranges(f, charger)
    merges = merging.merge_candidates(f, ranges, [box], [p.root for p in charger._pairs])
    assert all(v[1] > 0 for v in merges.values()), "a scale <= 0 proposed"
    (k, j), (i, alpha, shift, local) = list(merges.items())[int(rng.integers(len(merges)))]
    p = lossy.apply(f, [lossy.Candidate("merge", (k, j, i), local, 1, shift, alpha)], ranges)
    folds = merging.foldable(p, [(k, j, i, alpha)])
    proven = charger.proven(p, lp_seconds=float(rng.choice([0.0, 2.0])))
    return f, merging.fold(p, folds), proven + merging.fold_pad(p, folds, [box]), "merge"


def _lowrank_case(rng: np.random.Generator, d: int, box: Box):
    """A low-rank case (:mod:`exactcomp.rewrite.lowrank`): ``d-n-n-m`` whose middle layer is
    a float32 rank-``p`` product plus noise (none, small or large), one layer factored at a
    random rank (the weighted SVD), proven by the symbolic bound or the joint LP plus the
    rounding pad; every other case instead ``compress --tol``'s low-rank strategy (ranks by
    bisection, then the greedy search on the frozen product). Returns ``(f, written g,
    proven, "lowrank")``: the written network has the factor pairs (one layer deeper)."""
    lowrank = api.lowrank
    n, m, p = int(rng.integers(4, 8)), int(rng.integers(1, 4)), int(rng.integers(1, 3))
    noise = float(rng.choice([0.0, 0.01, 0.3]))
    mid = rng.normal(size=(n, p)).astype(np.float32) @ rng.normal(size=(p, n)).astype(np.float32)
    ws = [rng.normal(size=(n, d)), mid + noise * rng.normal(size=(n, n)), rng.normal(size=(m, n))]
    bs = [rng.normal(size=n) * 0.5, rng.normal(size=n) * 0.5, rng.normal(size=m) * 0.5]
    ws = [w.astype(np.float32).astype(np.float64) for w in ws]
    bs = [b.astype(np.float32).astype(np.float64) for b in bs]
    f = Network.from_arrays(ws, bs)
    charger = api.Charger(f, [box])
    if rng.random() < 0.5:
        out = lowrank.search_lowrank(f, [box], float(rng.choice([0.05, 0.5, 2.0])), charger,
                                     time_limit=2.0, lp_seconds=float(rng.choice([0.0, 1.0])))  # fmt: skip
        if out is not None and out.factors:
            return f, lowrank.expand(out.network, out.factors), out.proven, "lowrank"
    k = int(rng.integers(0, 3))
    la = f.layers[k]
    top = max(lowrank.max_rank(la.out_features, la.in_features), 1)
    lo, hi = lowrank.input_range([box], lowrank.relu_ranges(f, charger), k)
    fa = lowrank.factorize(f, k, int(rng.integers(1, top + 1)), lo, hi, np.float32)
    g = lowrank.with_factors(f, [fa])
    lp = float(rng.choice([0.0, 2.0]))
    proven = lowrank.proven(charger, g, lowrank.frozen_of([fa]), [box], lp_seconds=lp)
    return f, lowrank.expand(g, [fa]), proven, "lowrank"
