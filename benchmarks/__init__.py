"""exactcomp's benchmark harness: ``python -m benchmarks {table,stability,real,scaling,soak}``.

Not part of the installed package: it measures the package (results table on the digits
grid, stability methods side by side, real networks, scaling, soundness soak) and writes
CSV/JSON/Markdown rows and PNG plots under ``benchmarks/results/``. See ``RESULTS.md``.
Nothing is imported here, so ``python -m benchmarks.isolate`` starts cleanly.
"""
