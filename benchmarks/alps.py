"""bench_alps: ALPS (released defaults and FAST_CONFIG) against SparseGPT and Wanda on SmolLM2's real layers.

Every layer of blocks 0, 15 and 29, at 50%, 70% and 90% unstructured sparsity and 2:4. Per layer,
each method's objective ``tr(ΔW G ΔWᵀ)`` and seconds are reported as ratios to SparseGPT (same
pattern), run in the same process on the same Gram; ``alps-fast`` is also compared with the
default ALPS. The summary gives, per method and pattern, the median and worst objective ratio, the
layers won (objective below SparseGPT's), the median time ratio and the total seconds.

Goals (from the task): median objective ratio ALPS/SparseGPT <= 0.75 at every pattern; default ALPS
<= 15x SparseGPT's seconds; the fast setting <= 10x and within 1% of the default's objective.

    python benchmarks/alps.py --model-dir models/smollm2-135m \
        --calib data/tokens/smollm2-135m/local-enwiki-gensim/train.contiguous_16x256_s0.pt --out benchmarks/results
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from _bench import layer_bench_args, layer_grams, timed_solve, write_outputs
from reprise.llm.methods.alps import FAST_CONFIG

PATTERNS = [("sp50", {"sparsity": 0.5}), ("sp70", {"sparsity": 0.7}), ("sp90", {"sparsity": 0.9}),
            ("2:4", {"nm": "2:4"})]
# (label, method, extra config); the first is the reference
METHODS = [("sparsegpt", "sparsegpt", {}), ("wanda", "wanda", {}), ("alps", "alps", {}),
           ("alps-fast", "alps", FAST_CONFIG)]
REFERENCE = "sparsegpt"
GOALS = {"alps": {"objective_ratio_median": 0.75, "time_ratio_median": 15.0},
         "alps-fast": {"objective_ratio_median": 0.75, "time_ratio_median": 10.0, "vs_alps_median": 1.01}}


def run(model_dir: str, calib: str, blocks: list[int], repeats: int) -> pd.DataFrame:
    rows = []
    for (b, name), lg in layer_grams(model_dir, calib, blocks).items():
        for pattern, pcfg in PATTERNS:
            for label, method, cfg in METHODS:
                res, seconds = timed_solve(method, lg["W"], lg["G"], repeats, **pcfg, **cfg)
                rows.append({"block": b, "layer": name, "pattern": pattern, "method": label,
                             "objective": res.objective, "rel_err": res.rel_err, "seconds": seconds,
                             "admm_iterations": res.extras.get("admm_iterations"),
                             "final_rho": res.extras.get("final_rho")})
            print(f"block {b} {name} {pattern} done", flush=True)
    df = pd.DataFrame(rows)
    key = ["block", "layer", "pattern"]
    ref = df[df.method == REFERENCE].set_index(key)
    alps = df[df.method == "alps"].set_index(key)
    idx = pd.MultiIndex.from_frame(df[key])
    df["objective_ratio"] = df["objective"].to_numpy() / ref["objective"].reindex(idx).to_numpy()
    df["time_ratio"] = df["seconds"].to_numpy() / ref["seconds"].reindex(idx).to_numpy()
    df["vs_alps"] = df["objective"].to_numpy() / alps["objective"].reindex(idx).to_numpy()
    return df


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    g = df.groupby(["method", "pattern"], sort=False)
    out = pd.DataFrame({
        "layers": g.size(),
        "objective_ratio_median": g["objective_ratio"].median(),
        "objective_ratio_max": g["objective_ratio"].max(),
        "layers_won": g["objective_ratio"].apply(lambda r: int((r < 1).sum())),
        "vs_alps_median": g["vs_alps"].median(),
        "vs_alps_max": g["vs_alps"].max(),
        "time_ratio_median": g["time_ratio"].median(),
        "seconds_total": g["seconds"].sum(),
        "admm_iterations_median": g["admm_iterations"].median(),
    }).reset_index()
    return out


def goals_text(summary: pd.DataFrame) -> str:
    lines = []
    for method, goals in GOALS.items():
        for col, bound in goals.items():
            vals = summary.loc[summary.method == method].set_index("pattern")[col]
            ok = bool((vals <= bound).all())
            detail = ", ".join(f"{p} {v:.3g}" for p, v in vals.items())
            lines.append(f"- {method} {col} <= {bound:g}: {'met' if ok else 'MISSED'} ({detail})")
    return "\n".join(lines)


def main() -> None:
    args = layer_bench_args(__doc__)
    df = run(args.model_dir, args.calib, args.block_list, args.repeats)
    summary = summarise(df)
    text = ("# bench_alps (objective and seconds as ratios to SparseGPT, same process, same Gram)\n\n"
            f"alps-fast = alps with {FAST_CONFIG}; vs_alps = objective / default ALPS's objective.\n\n"
            + summary.to_markdown(index=False, floatfmt=".4g") + "\n\n## Goals\n\n" + goals_text(summary) + "\n")
    write_outputs(Path(args.out), "bench_alps", df, summary, text, model_dir=args.model_dir, calib=args.calib,
                  blocks=args.blocks, repeats=args.repeats, threads=args.threads, fast_config=FAST_CONFIG)
    print(text)


if __name__ == "__main__":
    main()
