"""Pieces every layer benchmark shares: the real layers and their Grams, a timed solve, the outputs."""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from reprise.io import atomic_path, write_json  # noqa: E402
from reprise.llm.data import load_tokens  # noqa: E402
from reprise.llm.driver import DriverConfig, collect_layer_grams  # noqa: E402
from reprise.llm.methods import SolveResult, solve  # noqa: E402
from reprise.llm.models import load_local  # noqa: E402
from reprise.provenance import device_info, provenance  # noqa: E402


def layer_bench_args(doc: str, repeats: int = 3, extra=None):
    """The options every layer benchmark takes (model, calibration tokens, blocks, repeats, threads,
    output folder), plus ``extra(parser)``'s; sets torch's thread count."""
    import argparse

    import torch

    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-dir", required=True)
    p.add_argument("--calib", required=True)
    p.add_argument("--blocks", default="0,15,29")
    p.add_argument("--repeats", type=int, default=repeats)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="benchmarks/results")
    if extra:
        extra(p)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    args.block_list = [int(x) for x in args.blocks.split(",")]
    return args


def layer_grams(model_dir: str, calib: str, blocks: list[int]) -> dict:
    """``{(block, layer): {"W", "G", "n_tokens"}}`` of the dense model on the calibration tokens."""
    model, _ = load_local(model_dir)
    ids, _ = load_tokens(calib)
    return collect_layer_grams(model, ids, blocks, DriverConfig(device="auto"))


def timed_solve(method: str, W, G, repeats: int, **cfg) -> tuple[SolveResult, float]:
    """The solve's result and its median seconds over ``repeats`` runs (robust to a noisy neighbour)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = solve(method, W, G, **cfg)
        times.append(time.perf_counter() - t0)
    return res, statistics.median(times)


def write_outputs(out: Path, stem: str, layers: pd.DataFrame, summary: pd.DataFrame, markdown: str,
                  **record) -> None:
    """``<stem>_layers.csv``, ``<stem>.csv``, ``<stem>.md`` and ``<stem>.provenance.json`` in ``out``."""
    for frame, name in ((layers, f"{stem}_layers"), (summary, stem)):
        with atomic_path(out / f"{name}.csv", ".csv") as tmp:
            frame.to_csv(tmp, index=False)
    with atomic_path(out / f"{stem}.md", ".md") as tmp:
        tmp.write_text(markdown)
    write_json(out / f"{stem}.provenance.json", provenance(stage="bench", **record, device=device_info("auto")))
