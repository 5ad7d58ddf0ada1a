"""Shared preamble of the workflow scripts: make `src/` importable and set up threads/logging."""
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from reprise import pipeline  # noqa: E402


def start(snakemake, torch=True):
    """Threads and logging for one job. ``torch=False`` for the jobs that only render (tables,
    figures, reports): they never load torch, which saves its import (~1 s) in each of them."""
    log = snakemake.log[0] if snakemake.log else None
    if not torch:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ.setdefault(var, str(snakemake.threads))
        pipeline.setup(threads=None, log_file=log)
        return pipeline
    pipeline.setup(threads=snakemake.threads, log_file=log)
    return pipeline
