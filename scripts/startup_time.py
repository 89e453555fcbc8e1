"""Start-up time of the command line in one or more checkouts, measured interleaved.

``python scripts/startup_time.py [--runs N] ROOT [ROOT ...]``: the median wall time of
``python -m exactcomp --help`` and ``python -m exactcomp stability MODEL --help`` in each
checkout (runs interleaved, so that a changing machine load hits every checkout alike).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "--help": ["--help"],
    "stability --help": ["stability", "models/moons_2-16-16-1.pt", "--help"],
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("roots", nargs="+", help="checkouts (repository roots)")
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args(argv)
    times: dict[tuple[str, str], list[float]] = {(r, c): [] for r in args.roots for c in COMMANDS}
    for _ in range(args.runs):
        for command, extra in COMMANDS.items():
            for root in args.roots:
                start = time.perf_counter()
                subprocess.run(
                    [sys.executable, "-m", "exactcomp", *extra],
                    cwd=root,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    check=True,
                )
                times[(root, command)].append(time.perf_counter() - start)
    for (root, command), values in times.items():
        runs = " ".join(f"{v:.3f}" for v in values)
        print(f"{command:18s} {root}: median {statistics.median(values):.3f} s ({runs})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
