"""bench_quantease: QuantEase against GPTQ on the real layers of SmolLM2 blocks 0, 15 and 29.

Per layer and bit width (3 and 4 in one run), each setting's objective is reported as a ratio to
GPTQ and to act-order GPTQ, and its seconds as a ratio to GPTQ, all run in the same process on
the same Gram. Settings: QuantEase at the paper defaults (continuous start, 30 sweeps, the
relaxation schedule), QuantEase started from RTN, from GPTQ and from act-order GPTQ (30 sweeps
each), and the separately named fast setting ``quantease-fast`` (``FAST_CONFIG`` in
``reprise.llm.methods.quantease``), whose objective is also given as a ratio to the default's.
AWQ is listed for orientation. The issue's goals are checked at the end of the report.

    python benchmarks/quantease.py --model-dir models/smollm2-135m \
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

from reprise.io import atomic_path, write_json  # noqa: E402
from reprise.llm.data import load_tokens  # noqa: E402
from reprise.llm.driver import DriverConfig, collect_layer_grams  # noqa: E402
from reprise.llm.methods import solve  # noqa: E402
from reprise.llm.methods.quantease import FAST_CONFIG  # noqa: E402
from reprise.llm.models import load_local  # noqa: E402
from reprise.provenance import device_info, provenance  # noqa: E402

# (label, method, config); the bit width is added per run
CASES = [
    ("gptq", "gptq", {}),
    ("gptq-act-order", "gptq", {"act_order": True}),
    ("quantease", "quantease", {}),
    ("quantease-from-rtn", "quantease", {"init": "rtn"}),
    ("quantease-from-gptq", "quantease", {"init": "gptq"}),
    ("quantease-from-gptq-act-order", "quantease", {"init": "gptq-act-order"}),
    ("quantease-fast", "quantease", dict(FAST_CONFIG)),
    ("awq", "awq", {}),
]
DEFAULT = "quantease"


def run(model_dir: str, calib: str, blocks: list[int], bits: list[int], repeats: int = 1) -> pd.DataFrame:
    model, _ = load_local(model_dir)
    ids, _ = load_tokens(calib)
    layers = collect_layer_grams(model, ids, blocks, DriverConfig(device="auto"))
    rows = []
    for (b, name), lg in layers.items():
        W, G = lg["W"], lg["G"]
        for nbits in bits:
            for label, method, cfg in CASES:
                times = []
                for _ in range(repeats):  # median of repeats: robust to a noisy neighbour
                    t0 = time.perf_counter()
                    res = solve(method, W, G, bits=nbits, **cfg)
                    times.append(time.perf_counter() - t0)
                rows.append({"block": b, "layer": name, "bits": nbits, "method": label, "objective": res.objective,
                             "rel_err": res.rel_err, "seconds": statistics.median(times),
                             "sweeps": res.extras.get("sweeps")})
            print(f"block {b:2d} {name:22s} w{nbits} done", flush=True)
    df = pd.DataFrame(rows)
    key = df.set_index(["block", "layer", "bits", "method"])

    def ratio(col: str, ref: str) -> list[float]:
        return [getattr(r, col) / key.loc[(r.block, r.layer, r.bits, ref), col] for r in df.itertuples()]

    df["obj_vs_gptq"] = ratio("objective", "gptq")
    df["obj_vs_gptq_act_order"] = ratio("objective", "gptq-act-order")
    df["obj_vs_default"] = ratio("objective", DEFAULT)
    df["time_vs_gptq"] = ratio("seconds", "gptq")
    return df


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    g = df.groupby(["bits", "method"], sort=False)
    return pd.DataFrame({
        "layers": g.size(),
        "obj_vs_gptq_median": g["obj_vs_gptq"].median(),
        "won_vs_gptq": g["obj_vs_gptq"].apply(lambda s: int((s < 1).sum())),
        "obj_vs_gptq_act_order_median": g["obj_vs_gptq_act_order"].median(),
        "won_vs_gptq_act_order": g["obj_vs_gptq_act_order"].apply(lambda s: int((s < 1).sum())),
        "obj_vs_default_median": g["obj_vs_default"].median(),
        "obj_vs_default_max": g["obj_vs_default"].max(),
        "time_vs_gptq_median": g["time_vs_gptq"].median(),
        "seconds_total": g["seconds"].sum(),
    }).reset_index()


def goals(summary: pd.DataFrame) -> list[str]:
    """The issue's targets, one line each with the measured value and a verdict."""
    s = summary.set_index(["bits", "method"])
    out = []
    for nbits in sorted(summary["bits"].unique()):
        d, ao, fast = s.loc[(nbits, DEFAULT)], s.loc[(nbits, "quantease-from-gptq-act-order")], s.loc[(nbits, "quantease-fast")]
        checks = [
            ("paper defaults: median objective / GPTQ <= 0.86", d.obj_vs_gptq_median, d.obj_vs_gptq_median <= 0.86),
            ("from act-order GPTQ: better than act-order GPTQ on >= 90% of layers",
             ao.won_vs_gptq_act_order / ao.layers, ao.won_vs_gptq_act_order >= 0.9 * ao.layers),
            ("paper defaults: median seconds / GPTQ <= 20", d.time_vs_gptq_median, d.time_vs_gptq_median <= 20),
            ("quantease-fast: median seconds / GPTQ <= 10", fast.time_vs_gptq_median, fast.time_vs_gptq_median <= 10),
            ("quantease-fast: median objective / default <= 1.01", fast.obj_vs_default_median,
             fast.obj_vs_default_median <= 1.01),
        ]
        out += [f"- w{nbits} {text}: {value:.3f} — {'met' if ok else 'MISSED'}" for text, value, ok in checks]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-dir", required=True)
    p.add_argument("--calib", required=True)
    p.add_argument("--blocks", default="0,15,29")
    p.add_argument("--bits", default="3,4")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    df = run(args.model_dir, args.calib, [int(b) for b in args.blocks.split(",")],
             [int(b) for b in args.bits.split(",")], args.repeats)
    summary = summarise(df)
    out = Path(args.out)
    for frame, stem in ((df, "bench_quantease_layers"), (summary, "bench_quantease")):
        with atomic_path(out / f"{stem}.csv", ".csv") as tmp:
            frame.to_csv(tmp, index=False)
    fast = ", ".join(f"{k}={v}" for k, v in FAST_CONFIG.items())
    text = ("# bench_quantease (ratios to GPTQ / act-order GPTQ / QuantEase defaults, same process, same Gram)\n\n"
            f"Blocks {args.blocks} of {args.model_dir}, {args.threads} thread(s), median of {args.repeats} run(s). "
            f"`won`: layers with a strictly lower objective. quantease-fast: {fast}.\n\n"
            + summary.to_markdown(index=False, floatfmt=".4g") + "\n\n## Goals\n\n" + "\n".join(goals(summary)) + "\n")
    with atomic_path(out / "bench_quantease.md", ".md") as tmp:
        tmp.write_text(text)
    write_json(out / "bench_quantease.provenance.json",
               provenance(stage="bench", model_dir=args.model_dir, calib=args.calib, blocks=args.blocks, bits=args.bits,
                          repeats=args.repeats, threads=args.threads, device=device_info("auto")))
    print(text)


if __name__ == "__main__":
    main()
