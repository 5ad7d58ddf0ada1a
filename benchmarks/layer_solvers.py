"""bench_layer_solvers: every baseline on the real layers of SmolLM2 blocks 0, 15 and 29.

Per layer, each method's objective and seconds are reported as ratios to the reference method of
its kind, run in the same process on the same Gram: RTN (same bits) for quantizers, magnitude
(same pattern) for pruners. Ratios, not absolute seconds, are what carry across machines.

    python benchmarks/layer_solvers.py --model-dir models/smollm2-135m \
        --calib data/tokens/smollm2-135m/local-enwiki-gensim/train.contiguous_16x256_s0.pt --out benchmarks/results
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from reprise.llm.data import load_tokens  # noqa: E402
from reprise.llm.driver import DriverConfig, collect_layer_grams  # noqa: E402
from reprise.llm.methods import solve  # noqa: E402
from reprise.llm.models import load_local  # noqa: E402
from reprise.provenance import device_info, provenance  # noqa: E402
from reprise.io import atomic_path, write_json  # noqa: E402

# (label, method, config, reference label)
CASES = [
    ("rtn-w4", "rtn", {"bits": 4}, "rtn-w4"),
    ("gptq-w4", "gptq", {"bits": 4}, "rtn-w4"),
    ("rtn-w3", "rtn", {"bits": 3}, "rtn-w3"),
    ("gptq-w3", "gptq", {"bits": 3}, "rtn-w3"),
    ("magnitude-sp50", "magnitude", {"sparsity": 0.5}, "magnitude-sp50"),
    ("wanda-sp50", "wanda", {"sparsity": 0.5}, "magnitude-sp50"),
    ("sparsegpt-sp50", "sparsegpt", {"sparsity": 0.5}, "magnitude-sp50"),
    ("magnitude-2:4", "magnitude", {"nm": "2:4"}, "magnitude-2:4"),
    ("wanda-2:4", "wanda", {"nm": "2:4"}, "magnitude-2:4"),
    ("sparsegpt-2:4", "sparsegpt", {"nm": "2:4"}, "magnitude-2:4"),
]


def run(model_dir: str, calib: str, blocks: list[int], repeats: int = 3) -> pd.DataFrame:
    model, _ = load_local(model_dir)
    ids, _ = load_tokens(calib)
    layers = collect_layer_grams(model, ids, blocks, DriverConfig(device="auto"))
    rows = []
    for (b, name), lg in layers.items():
        W, G = lg["W"], lg["G"]
        for label, method, cfg, ref in CASES:
            times = []
            for _ in range(repeats):  # median of repeats: robust to a noisy neighbour
                t0 = time.perf_counter()
                res = solve(method, W, G, **cfg)
                times.append(time.perf_counter() - t0)
            rows.append({"block": b, "layer": name, "method": label, "reference": ref, "objective": res.objective,
                         "rel_err": res.rel_err, "seconds": statistics.median(times)})
    df = pd.DataFrame(rows)
    ref = df.set_index(["block", "layer", "method"])
    df["objective_ratio"] = [r.objective / ref.loc[(r.block, r.layer, r.reference), "objective"] for r in df.itertuples()]
    df["time_ratio"] = [r.seconds / ref.loc[(r.block, r.layer, r.reference), "seconds"] for r in df.itertuples()]
    return df


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    g = df.groupby(["method", "reference"], sort=False)
    return pd.DataFrame({
        "layers": g.size(),
        "objective_ratio_median": g["objective_ratio"].median(),
        "objective_ratio_max": g["objective_ratio"].max(),
        "time_ratio_median": g["time_ratio"].median(),
        "seconds_total": g["seconds"].sum(),
    }).reset_index()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-dir", required=True)
    p.add_argument("--calib", required=True)
    p.add_argument("--blocks", default="0,15,29")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    df = run(args.model_dir, args.calib, [int(b) for b in args.blocks.split(",")], args.repeats)
    summary = summarise(df)
    out = Path(args.out)
    for frame, stem in ((df, "bench_layer_solvers_layers"), (summary, "bench_layer_solvers")):
        with atomic_path(out / f"{stem}.csv", ".csv") as tmp:
            frame.to_csv(tmp, index=False)
    with atomic_path(out / "bench_layer_solvers.md", ".md") as tmp:
        tmp.write_text("# bench_layer_solvers (ratios to the reference method, same process, same Gram)\n\n"
                       + summary.to_markdown(index=False, floatfmt=".4g") + "\n")
    write_json(out / "bench_layer_solvers.provenance.json",
               provenance(stage="bench", model_dir=args.model_dir, calib=args.calib, blocks=args.blocks,
                          repeats=args.repeats, threads=args.threads, device=device_info("auto")))
    print(summary.to_markdown(index=False, floatfmt=".4g"))


if __name__ == "__main__":
    main()
