"""Shared preamble of the workflow scripts: make `src/` importable and set up threads/logging."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from reprise import pipeline  # noqa: E402


def start(snakemake):
    log = snakemake.log[0] if snakemake.log else None
    pipeline.setup(threads=snakemake.threads, log_file=log)
    return pipeline
