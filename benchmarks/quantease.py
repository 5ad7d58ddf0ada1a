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

from pathlib import Path

import pandas as pd

from _bench import layer_bench_args, layer_grams, timed_solve, write_outputs
from reprise.llm.methods.quantease import FAST_CONFIG

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
    rows = []
    for (b, name), lg in layer_grams(model_dir, calib, blocks).items():
        for nbits in bits:
            for label, method, cfg in CASES:
                res, seconds = timed_solve(method, lg["W"], lg["G"], repeats, bits=nbits, **cfg)
                rows.append({"block": b, "layer": name, "bits": nbits, "method": label, "objective": res.objective,
                             "rel_err": res.rel_err, "seconds": seconds, "sweeps": res.extras.get("sweeps")})
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
    args = layer_bench_args(__doc__, repeats=1, extra=lambda p: p.add_argument("--bits", default="3,4"))
    df = run(args.model_dir, args.calib, args.block_list, [int(b) for b in args.bits.split(",")], args.repeats)
    summary = summarise(df)
    fast = ", ".join(f"{k}={v}" for k, v in FAST_CONFIG.items())
    text = ("# bench_quantease (ratios to GPTQ / act-order GPTQ / QuantEase defaults, same process, same Gram)\n\n"
            f"Blocks {args.blocks} of {args.model_dir}, {args.threads} thread(s), median of {args.repeats} run(s). "
            f"`won`: layers with a strictly lower objective. quantease-fast: {fast}.\n\n"
            + summary.to_markdown(index=False, floatfmt=".4g") + "\n\n## Goals\n\n" + "\n".join(goals(summary)) + "\n")
    write_outputs(Path(args.out), "bench_quantease", df, summary, text, model_dir=args.model_dir, calib=args.calib,
                  blocks=args.blocks, bits=args.bits, repeats=args.repeats, threads=args.threads)
    print(text)


if __name__ == "__main__":
    main()
