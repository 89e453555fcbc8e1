"""NeuroDiff (Paulsen, Wang, Wang; ASE 2020) as a baseline: build it, run it, read its output.

NeuroDiff is built and run on the benchmark machine from its artifact
(``pauls658/NeuroDiff-ASE2020-Artifact``); it is never a dependency of exactcomp and none of
its code is in this repository. This module writes a two-line ``cblas.h`` of our own, compiles
the artifact's ``delta_network_test`` against the OpenBLAS of the ``scipy-openblas32`` wheel, runs
it, and parses what it prints.

The question NeuroDiff answers (read from the artifact's C source at commit ``d05fd146``)
----------------------------------------------------------------------------------------
``delta_network_test P NNET1 NNET2 EPS`` decides, for ACAS Xu property ``P = 1``::

    for all x in B':   | g_0(x) - f_0(x) |  <  eps          (strict, both sides)

* ``f`` is NNET1 (the original), ``g`` is NNET2 (the float16 copy); the difference network is
  ``W_g - W_f`` layer by layer, so the sign is ``g - f``; the test is symmetric.
* Only output 0 (``target = 0``, "clear of conflict") is compared, in **normalised output
  units**: the network's last affine layer, *before* ``y * range_out + mean_out``. (The
  NeuroDiff ACAS files read ``mean_out = 35.1111111``, ``range_out = 100.0`` as entry 5 of the
  means/ranges lines, so exactcomp's ``load_nnet``, which folds the de-normalisation in, returns
  ``100 * y' + 35.1111111``: compare ``(f_0 - g_0) / 100`` with eps, or strip the last affine.)
* ``eps`` is ``(float) atof(EPS)``: float32 (``0.05 -> 0.0500000007...``).
* ``B'`` is the property box in raw units, normalised per endpoint in float32 with NNET1's
  header (its first 5 entries; ``mins``/``maxes``/``means``/``ranges`` parsed ``(float) atof``)::

      raw lower = [55947.691, -3.141592, -3.141592, 1145.0,  0.0]   (float32 literals)
      raw upper = [60760.0,    3.141592,  3.141592, 1200.0, 60.0]
      x' = (clip(x, min, max) - mean) / range       every operation in float32

  With the files' ``min = [0, -3.141593, -3.141593, 100, 0]``, ``max = [60760, 3.141593,
  3.141593, 1200, 1200]`` nothing is clipped; ``mean = [19791.091, 0, 0, 650, 600]``,
  ``range = [60261, 6.28318530718, 6.28318530718, 1100, 1200]``. :func:`acas_question` computes
  ``B'`` exactly (numpy float32 follows the C expression). The network then runs on ``x'``; it
  is **not** clipped again inside the box.
* Weights are parsed ``(float) atof``: float32. The float16 copies are exact in float32; the
  originals are rounded to float32 (a ~1e-7 relative change).
* Arithmetic is float32 without directed rounding, so "proven" is up to float32 round-off.

Verdicts: ``No adv!`` = proven (every leaf of the input bisection had its interval for
``g_0 - f_0`` strictly inside ``(-eps, eps)``); ``adv found`` = failed (once a box is 35
bisections deep it evaluates its midpoint in float32 and found ``|g_0 - f_0| >= eps``); killed
at the time limit (SIGINT; it then prints its progress and split count) = timeout.

MNIST (properties 400-499, ``-x K``): the box is in pixel units ``/ 255`` (no normalisation: the
3x100 files have means 0, ranges 1): every pixel fixed at ``image / 255.0`` except ``K`` listed
pixels free in ``[0, 1]``; the compared output is the image's correct class. The shipped JSON
``models/real/neurodiff/mnist_400_x15.json`` holds the box and target of the run we make.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import gzip
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
NETWORKS = REPO_ROOT / "models" / "real" / "neurodiff"
RESULTS = REPO_ROOT / "benchmarks" / "results" / "neurodiff_acasxu.json"
ARTIFACT = "pauls658/NeuroDiff-ASE2020-Artifact"

#: ACAS Xu property 1 as NeuroDiff states it (``nnet.c``, ``load_inputs``): raw units.
PROPERTY_1_RAW = (
    (55947.691, -3.141592, -3.141592, 1145.0, 0.0),
    (60760.0, 3.141592, 3.141592, 1200.0, 60.0),
)
#: The pairs whose NeuroDiff times the issue quotes; also our eps 0.01 subset.
TABLE_PAIRS = ("1_1", "1_2", "2_1", "3_3", "4_2", "5_9")

_SHIM = """/* exactcomp's shim: NeuroDiff includes <cblas.h>; scipy-openblas32 prefixes its names. */
#include "{include}/cblas.h"
#define cblas_sgemm scipy_cblas_sgemm
#define openblas_set_num_threads scipy_openblas_set_num_threads
"""


class NeuroDiffError(RuntimeError):
    """NeuroDiff could not be built (missing source, compiler or OpenBLAS) or not started."""


@dataclasses.dataclass(frozen=True)
class NeuroDiffResult:
    """One run: ``verdict`` is ``proven``, ``failed``, ``timeout`` or ``error``; ``seconds`` is
    NeuroDiff's own clock (verification, without loading) or the wall time when it printed none;
    ``splits`` the input bisections; ``initial_delta`` its first interval for the target output.
    """

    verdict: str
    seconds: float
    wall_seconds: float
    splits: int | None = None
    initial_delta: tuple[float, float] | None = None
    message: str = ""


@dataclasses.dataclass(frozen=True)
class NeuroDiffQuestion:
    """NeuroDiff's box and compared output for one network file (see the module docstring)."""

    raw_lower: np.ndarray
    raw_upper: np.ndarray
    lower: np.ndarray  # normalised, float32 values held in float64
    upper: np.ndarray
    target: int


def acas_question(nnet: str | Path, prop: int = 1) -> NeuroDiffQuestion:
    """The normalised box ``B'`` NeuroDiff checks for ``prop`` on the ``.nnet`` file ``nnet``."""
    from exactcomp.api import load

    if prop != 1:
        raise ValueError(f"only ACAS Xu property 1 is transcribed here, not {prop}")
    meta = load(nnet).meta
    f32 = {
        k: np.asarray(meta[k], dtype=np.float64).astype(np.float32)
        for k in meta
        if k[:6] == "input_"
    }
    lo, hi = (np.asarray(v, dtype=np.float64).astype(np.float32) for v in PROPERTY_1_RAW)

    def norm(x: np.ndarray) -> np.ndarray:
        x = np.minimum(np.maximum(x, f32["input_min"]), f32["input_max"])
        return ((x - f32["input_mean"]) / f32["input_range"]).astype(np.float64)

    return NeuroDiffQuestion(lo.astype(np.float64), hi.astype(np.float64), norm(lo), norm(hi), 0)


def build(
    source_dir: str | Path,
    work_dir: str | Path,
    *,
    openblas_dir: str | Path | None = None,
    threads: int = 1,
) -> Path:
    """Compile full NeuroDiff (``make lineqall extravarssym``) in ``work_dir``; return the binary.

    ``source_dir`` is the artifact (or its ``DiffNN-Code``); it is copied, not modified.
    ``openblas_dir`` holds the wheel's ``include/`` and ``lib/`` (default: the installed
    ``scipy_openblas32`` package). ``threads > 1`` compiles with ``-DMAX_THREAD=threads``, as the
    authors do; ``threads == 1`` keeps their default (no worker threads). ``-fcommon`` is needed
    by GCC >= 10 (the artifact defines ``lock`` in a header).
    """
    src = Path(source_dir)
    src = src / "DiffNN-Code" if (src / "DiffNN-Code").is_dir() else src
    if not (src / "delta_network_test.c").is_file():
        raise NeuroDiffError(f"{src}: no delta_network_test.c; pass the NeuroDiff artifact folder")
    for tool in ("gcc", "make"):
        if shutil.which(tool) is None:
            raise NeuroDiffError(f"NeuroDiff needs {tool!r}, which is not on PATH")
    blas = Path(openblas_dir) if openblas_dir else _installed_openblas()
    if not (blas / "include" / "cblas.h").is_file() or not (blas / "lib").is_dir():
        raise NeuroDiffError(f"{blas}: not a scipy-openblas32 folder (include/cblas.h, lib/)")
    out = Path(work_dir) / f"neurodiff-t{threads}"
    shutil.rmtree(out, ignore_errors=True)
    (out / "shim").mkdir(parents=True)
    for f in [*src.glob("*.c"), *src.glob("*.h"), src / "makefile"]:
        shutil.copy2(f, out / f.name)
    (out / "shim" / "cblas.h").write_text(_SHIM.format(include=(blas / "include").resolve()))
    lib = (blas / "lib").resolve()
    cflags = f"-I{(out / 'shim').resolve()} -O3 -fcommon"
    if threads > 1:
        cflags += f" -DMAX_THREAD={threads}"
    ldflags = f"-L{lib} -lscipy_openblas -Wl,-rpath,{lib} -lpthread -lm"
    proc = subprocess.run(
        ["make", "lineqall", "extravarssym", "delta_network_test", f"LDFLAGS={ldflags}"],
        cwd=out,
        env={**os.environ, "CFLAGS": cflags},
        capture_output=True,
        text=True,
    )
    binary = out / "delta_network_test"
    if proc.returncode != 0 or not binary.is_file():
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
        raise NeuroDiffError("building NeuroDiff failed: " + " | ".join(tail))
    return binary


def _installed_openblas() -> Path:
    try:
        import scipy_openblas32  # type: ignore[import-not-found]
    except ImportError as exc:
        raise NeuroDiffError(
            "no OpenBLAS: `pip install scipy-openblas32` (any venv) and pass --openblas "
            "<site-packages>/scipy_openblas32"
        ) from exc
    return Path(scipy_openblas32.__file__).parent


def run(
    binary: str | Path,
    nnet_a: str | Path,
    nnet_b: str | Path,
    eps: float,
    *,
    property: int = 1,
    timeout_s: float = 120.0,
    threads: int = 1,
    extra: tuple[str, ...] = (),
    target: int = 0,
) -> NeuroDiffResult:
    """Run ``binary PROPERTY nnet_a nnet_b eps [extra]``; at ``timeout_s`` send SIGINT.

    ``threads`` must match the build (it is a compile-time setting of NeuroDiff); OpenBLAS is
    held to one thread, as NeuroDiff itself asks. ``target`` is the compared output (0 for ACAS
    Xu property 1, the image's class for MNIST); it only picks ``initial_delta``.
    """
    cmd = [str(binary), str(property), str(nnet_a), str(nnet_b), repr(float(eps)), *extra]
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    t0 = time.monotonic()
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    except OSError as exc:
        raise NeuroDiffError(f"cannot start NeuroDiff {binary}: {exc}") from exc
    timed_out = False
    try:
        raw, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        proc.send_signal(signal.SIGINT)  # its handler prints progress and numSplits, exits 0
        try:
            raw, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            raw, _ = proc.communicate()
    wall = time.monotonic() - t0
    return parse_output(raw.decode(errors="replace"), wall, timed_out, proc.returncode, target)


_FLOAT = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:inf|nan)"


def parse_output(
    text: str,
    wall_seconds: float,
    timed_out: bool = False,
    returncode: int | None = 0,
    target: int = 0,
) -> NeuroDiffResult:
    """Read a verdict from NeuroDiff's combined stdout/stderr (see the module docstring)."""
    text = text.replace("\r", "\n")
    splits = re.findall(r"numSplits: (\d+)", text)
    clock = re.findall(rf"^time: ({_FLOAT})", text, re.M)
    delta = None
    m = re.search(r"Initial output delta:\n\[([^\]]*)\]\n\[([^\]]*)\]", text)
    if m:
        lo, hi = (v.split() for v in m.groups())
        if target < min(len(lo), len(hi)):
            delta = (float(lo[target]), float(hi[target]))
    if timed_out:
        verdict, msg = "timeout", "killed at the time limit"
    elif "adv found" in text:
        verdict, msg = "failed", "a concrete input with |g0 - f0| >= eps"
    elif "No adv!" in text and clock:
        verdict, msg = "proven", ""
    else:
        verdict = "error"
        last = [ln for ln in text.splitlines() if ln.strip() and "progress" not in ln]
        msg = f"exit {returncode}: " + (last[-1].strip() if last else "no output")
    return NeuroDiffResult(
        verdict,
        float(clock[-1]) if clock and not timed_out else wall_seconds,
        wall_seconds,
        int(splits[-1]) if splits else None,
        delta,
        msg,
    )


def acas_pairs(folder: Path = NETWORKS) -> dict[str, tuple[Path, Path]]:
    """Shipped ACAS Xu pairs by name (``"1_1"``): ``(original, float16 copy)``, gzipped paths."""
    pairs = {}
    for a in sorted(folder.glob("nnet/ACASXU_run2a_*_batch_2000.nnet.gz")):
        name = a.name.split("_run2a_")[1].split("_batch")[0]
        pairs[name] = (a, folder / "compressed_nnets" / a.name.replace(".nnet", "_16bit.nnet"))
    return pairs


def unpack(path: Path, into: Path) -> Path:
    """``path`` gunzipped into the folder ``into`` (a plain path is returned as is)."""
    if path.suffix != ".gz":
        return path
    into.mkdir(parents=True, exist_ok=True)
    out = into / path.with_suffix("").name
    out.write_bytes(gzip.decompress(path.read_bytes()))
    return out


def _record(key: dict, res: NeuroDiffResult, threads: int, timeout_s: float) -> dict:
    row = {**key, **dataclasses.asdict(res), "threads": threads, "timeout_s": timeout_s}
    row["date"] = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    row["machine"] = "2-core shared, loaded"
    return row


def _save(rows: list[dict], path: Path) -> None:
    old = json.loads(path.read_text())["runs"] if path.is_file() else []
    keys = {(r["pair"], r["eps"], r["property"], r.get("options", "")) for r in rows}
    kept = [
        r for r in old if (r["pair"], r["eps"], r["property"], r.get("options", "")) not in keys
    ]
    doc = {
        "tool": f"NeuroDiff (github:{ARTIFACT} @ d05fd146), full build (lineqall extravarssym)",
        "command": "python -m benchmarks.neurodiff --source DIR --eps EPS ...",
        "runs": kept + rows,
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.neurodiff", description=__doc__.split("\n")[0]
    )
    p.add_argument("--source", type=Path, required=True, help="the NeuroDiff artifact folder")
    p.add_argument("--work", type=Path, default=Path("/tmp/neurodiff-build"))
    p.add_argument("--openblas", type=Path, default=None, help="scipy_openblas32 package folder")
    p.add_argument("--eps", type=float, required=True)
    p.add_argument("--pairs", default="all", help="'all', 'table' or names: 1_1,2_1")
    p.add_argument("--mnist", action="store_true", help="run the MNIST 3x100 pair instead")
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=RESULTS)
    a = p.parse_args(argv)
    try:
        binary = build(a.source, a.work, openblas_dir=a.openblas, threads=a.threads)
    except NeuroDiffError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    tmp = a.work / "nets"
    if a.mnist:
        spec = json.loads((NETWORKS / "mnist_400_x15.json").read_text())
        jobs = [("mnist_relu_3_100", *spec["files"], spec["property"], tuple(spec["options"]))]
        target = int(spec["target"])
    else:
        pairs = acas_pairs()
        names = {"all": list(pairs), "table": list(TABLE_PAIRS)}.get(a.pairs, a.pairs.split(","))
        jobs = [(n, *pairs[n], 1, ()) for n in names]
        target = 0
    rows = []
    for name, fa, fb, prop, extra in jobs:
        fa, fb = unpack(NETWORKS / fa, tmp), unpack(NETWORKS / fb, tmp)
        res = run(
            binary,
            fa,
            fb,
            a.eps,
            property=prop,
            timeout_s=a.timeout,
            threads=a.threads,
            extra=extra,
            target=target,
        )
        key = {"pair": name, "eps": a.eps, "property": prop, "options": " ".join(extra)}
        rows.append(_record(key, res, a.threads, a.timeout))
        print(
            f"{name:>16} eps={a.eps:<5} {res.verdict:>8} {res.seconds:9.2f} s  splits={res.splits}",
            flush=True,
        )
        _save(rows, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
