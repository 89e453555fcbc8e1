"""The soak's ``degenerate`` family: what compression produces, through every later step.

Each case (:func:`exactcomp.testing.degenerate.degenerate_case`: emptied and all-zero
layers, constant and affine networks, duplicates, widths of 1, point, wide and tiny boxes,
weights ``1e-8..1e4``) runs every check of :func:`~exactcomp.testing.soak_case.check_case`,
then, on the compressed network ``g`` (often with zero-width layers):

- ``bound``, ``stable``, ``unstable``: the interval, linear and LP bounds of ``g`` and
  ``stable_neurons(g)`` against the exact oracle of ``g``;
- ``equivalent``, ``counterexample``, ``equiv-bound``: ``verify_equivalence(g, f)`` (the
  pair the other way round) against the oracle's exact ``max |f - g|``;
- ``file-written``: ``g`` written to ``.onnx`` and ``.pt`` and read back, and written as a
  ``.nnet`` text (:func:`~exactcomp.testing.nnet_cases.write_nnet`, limits = the box) and
  read back, each against ``g`` on the probe points of the box; ``save`` to ``.nnet``
  must refuse (a read-only format);
- ``lossy-bound``: ``quantize`` (the public API, 8/4/2/16 bits; ``--tol 0.05`` on every
  third seed) and ``compress --tol`` on ``g`` (odd seeds) or ``f`` (even seeds): the exact
  ``max |input - result|`` (oracle) must not exceed the proven bound (as
  :mod:`benchmarks.lossy_soak`);
- ``cli``: on every :data:`CLI_EVERY`-th seed, ``exactcomp compress/verify/stability
  /quantize/regions`` end to end through :func:`exactcomp.cli.main` on the case written as
  ``.onnx``, ``.pt`` or ``.nnet`` (limits = the box), in turn: exit code 0 (or 3, UNKNOWN,
  for ``verify`` and ``compress --verify``), or 2 with one line on stderr (else an
  ``error``) and no output file; the input file never overwritten (``-o`` equal to the
  input must be refused, the bytes kept).

A clean :class:`~exactcomp.errors.ExactCompError` is a refusal (counted, not a finding);
any other exception is an ``error``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import tempfile
import traceback
from pathlib import Path

import numpy as np

from exactcomp import api
from exactcomp.errors import ExactCompError
from exactcomp.network import Network
from exactcomp.testing.degenerate import degenerate_case
from exactcomp.testing.nnet_cases import write_nnet
from exactcomp.testing.oracle import OracleError
from exactcomp.testing.oracle import max_output_difference as exact_max_difference
from exactcomp.testing.random_networks import Case
from exactcomp.testing.soak_case import check_case
from exactcomp.testing.soak_checks import Checker
from exactcomp.testing.soak_results import CaseResult, Finding, SoakOptions
from exactcomp.testing.written_checks import check_files

CLI_EVERY = 10
"""One case in ten also runs the command line end to end (11 commands, about 10-20 s)."""


@dataclasses.dataclass
class Extra:
    """What the checks of the compressed network add to the case's counts."""

    refused: int = 0
    lossy: int = 0
    equivalences: int = 0
    statuses: dict[str, int] = dataclasses.field(default_factory=dict)


def run_degenerate_case(seed: int, opts: SoakOptions, method: str) -> tuple[dict, CaseResult]:
    """Generate case ``seed``, check it (see the module docstring)."""
    dc = degenerate_case(seed, max_neurons=opts.max_neurons)
    extra = Extra()
    result = check_case(dc.case, opts, method, written=lambda c, g: _compressed(c, g, extra))
    found = list(result.findings)
    if seed % CLI_EVERY == 0:
        found += _guard("cli", lambda: cli_checks(dc.case))
    statuses = dict(result.statuses)
    for k, v in extra.statuses.items():
        statuses[k] = statuses.get(k, 0) + v
    result = dataclasses.replace(
        result,
        family="degenerate",
        findings=tuple(found),
        refused=result.refused + extra.refused,
        lossy=extra.lossy,
        equivalences=result.equivalences + extra.equivalences,
        statuses=statuses,
    )
    return dc.to_json(), result


def _guard(what: str, fn) -> list[Finding]:
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - every failure of a check is a finding
        tb = traceback.format_exc(limit=-3).strip().splitlines()
        return [Finding("error", f"{what}: {exc!r} [{' | '.join(tb[-3:])}]")]


def _compressed(c: Checker, g: Network, extra: Extra) -> None:
    """The checks of the compressed network ``g`` of ``c``'s case (module docstring)."""
    case = Case(g, c.box, c.seed)
    try:
        c2 = Checker(case, c.opts, c.method)
    except OracleError as exc:
        c.notes.append(f"compressed: oracle skipped: {exc}")
        c2 = None
    if c2 is not None:
        c2.all_bounds()
        report = c2.guard(
            "stable_neurons[compressed]",
            lambda: api.stable_neurons(g, c.box, method=c.method, jobs=1, seed=c.seed,
                                       time_limit=c.opts.time_limit),
        )  # fmt: skip
        if report is not None:
            c2.claims(report, "compressed")
        if c.opts.equivalence:
            c2.equivalence(c.f, "reverse")
        c.findings.extend(dataclasses.replace(f, detail=f"g: {f.detail}") for f in c2.findings)
        extra.equivalences += c2.equivalences
        for k, v in c2.statuses.items():
            extra.statuses[k] = extra.statuses.get(k, 0) + v
    nets = [g, c.f] if any(la.out_features == 0 for la in c.f.layers) else [g]  # f hollow
    for net in nets:
        c.findings.extend(_guard("files", lambda net=net: _files(c, net, extra)))
    c.findings.extend(_guard("lossy", lambda: lossy_checks(c, g, extra)))


def _files(c: Checker, net: Network, extra: Extra) -> list[Finding]:
    found, refused = check_files(c.box, net, c.seed)
    extra.refused += refused
    return found


def lossy_checks(c: Checker, g: Network, extra: Extra) -> list[Finding]:
    """``quantize`` and ``compress --tol`` on ``g`` (odd seeds) or ``f`` (even seeds): the
    exact ``max |input - result|`` within the proven bound (``lossy-bound``)."""
    src = g if c.seed % 2 else c.f
    bits = float((8, 4, 2, 16)[(c.seed // 2) % 4])
    out: list[Finding] = []
    runs = [
        ("quantize", lambda: api.quantize(src, c.box, bits=bits, split_seconds=1.0)),
        ("compress --tol", lambda: api.compress_lossy(src, c.box, 0.1, time_limit=5.0)),
    ]
    if c.seed % 3 == 0:
        runs.append(("quantize --tol", lambda: api.quantize(src, c.box, tol=0.05)))
    for what, fn in runs:
        try:
            res = fn()
        except ExactCompError:
            extra.refused += 1
            continue
        try:
            exact = exact_max_difference(
                src, res.network, c.box, max_regions=c.opts.max_regions
            ).value
        except OracleError as exc:
            c.notes.append(f"{what}: oracle skipped: {exc}")
            continue
        extra.lossy += 1
        scale = 1.0 + float(np.max(np.abs(c.exact.ranges[-1])))
        if exact > res.proven + 1e-9 * scale:
            out.append(Finding("lossy-bound", f"{what}: exact {exact!r} > proven {res.proven!r}"))
    return out


# ------------------------------------------------------------------------------- CLI
def _cli(argv: list[str]) -> tuple[int, str]:
    """``exactcomp.cli.main(argv)``: its exit code and stderr."""
    from exactcomp.cli import main

    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, err.getvalue()


def cli_checks(case: Case) -> list[Finding]:
    """The commands on ``case`` end to end (module docstring); ``cli`` findings."""
    out: list[Finding] = []
    with tempfile.TemporaryDirectory(prefix="soak-degen-cli-") as tmp:
        d = Path(tmp)
        suffix = (".onnx", ".pt", ".nnet")[(case.seed // CLI_EVERY) % 3]
        src = d / f"f{suffix}"
        try:
            if suffix == ".nnet":  # the box as the file's input limits
                n, (lo, hi) = case.network.input_size, (case.box.lower, case.box.upper)
                write_nnet(src, case.network, lo, hi, np.zeros(n + 1), np.ones(n + 1))
            else:
                api.save(case.network, src)
        except ExactCompError:
            return []
        box = d / "box.json"
        box.write_text(json.dumps(case.box.to_json()))
        dom = ["--box-file", str(box)]
        f, g = str(src), str(d / "g.onnx")
        t = ["--time-limit", "5"]
        o = {name: str(d / name) for name in ("r.json", "q.onnx", "h.onnx", "l.pt", "t.pt")}
        runs: list[tuple[list[str], str | None, tuple[int, ...]]] = [
            # 3: --verify left it UNKNOWN (nothing written; the later commands on g skipped)
            (["compress", f, *dom, "-o", g, *t, "--verify", "--report", o["r.json"]], g, (0, 3)),
            (["verify", f, g, *dom, *t], None, (0, 3)),
            (["verify", f, g, *dom, *t, "--mode", "top1"], None, (0, 3)),
            (["stability", g, *dom, *t, "--quiet"], None, (0,)),
            (["quantize", g, *dom, "--bits", "8", "-o", o["q.onnx"]], o["q.onnx"], (0,)),
            (["quantize", f, *dom, "--bits", "16", "-o", o["h.onnx"]], o["h.onnx"], (0,)),
            (["quantize", f, *dom, "--tol", "0.05", "-o", o["h.onnx"]], o["h.onnx"], (0,)),
            (["compress", g, *dom, "--tol", "0.1", "-o", o["l.pt"]], o["l.pt"], (0,)),
            (["compress", f, *dom, "--tol-mode", "top1", "-o", o["t.pt"]], o["t.pt"], (0,)),
            (["regions", g, *dom, "--limit", "2000"], None, (0,)),
        ]
        before = src.read_bytes()
        for argv, target, ok in runs:
            if argv[1] == g and not Path(g).exists():
                continue
            if target is not None and Path(target).exists():
                Path(target).unlink()  # written by an earlier command: "no output" must show
            out += _one_cli(argv, target, ok)
        out += _one_cli(["compress", f, *dom, "-o", f], None, (2,))
        if src.read_bytes() != before:
            out.append(Finding("cli", "compress -o INPUT overwrote its input"))
    return out


def _one_cli(argv: list[str], target: str | None, ok: tuple[int, ...]) -> list[Finding]:
    """One command: a traceback, an exit code not in ``ok`` (nor 2) or an exit 2 with more
    than one line on stderr is an ``error``; an output file left after an exit 2 is ``cli``
    (a partial output: unsound, as a file that reads back different)."""
    try:
        rc, err = _cli(argv)
    except BaseException as exc:  # noqa: BLE001 - a traceback out of main is the finding
        tb = traceback.format_exc(limit=-3).strip().splitlines()
        return [Finding("error", f"cli {argv[0]}: {exc!r} [{' | '.join(tb[-3:])}]")]
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if rc in ok and rc != 2:
        return []
    if rc != 2:
        return [Finding("error", f"cli {argv[0]}: exit code {rc}: {err.strip()[:300]}")]
    if target is not None and Path(target).exists():
        return [Finding("cli", f"{argv[0]}: exit 2 but {target} was written")]
    if len(lines) != 1:
        return [Finding("error", f"cli {argv[0]}: exit 2 with {err.strip()[:300]!r}")]
    return []
