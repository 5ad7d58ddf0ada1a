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
