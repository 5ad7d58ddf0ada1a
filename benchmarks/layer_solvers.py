"""bench_layer_solvers: every baseline on the real layers of SmolLM2 blocks 0, 15 and 29.

Per layer, each method's objective and seconds are reported as ratios to the reference method of
its kind, run in the same process on the same Gram: RTN (same bits) for quantizers, magnitude
(same pattern) for pruners. Ratios, not absolute seconds, are what carry across machines.

    python benchmarks/layer_solvers.py --model-dir models/smollm2-135m \
        --calib data/tokens/smollm2-135m/local-enwiki-gensim/train.contiguous_16x256_s0.pt --out benchmarks/results
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from _bench import layer_bench_args, layer_grams, timed_solve, write_outputs

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
    rows = []
    for (b, name), lg in layer_grams(model_dir, calib, blocks).items():
        for label, method, cfg, ref in CASES:
            res, seconds = timed_solve(method, lg["W"], lg["G"], repeats, **cfg)
            rows.append({"block": b, "layer": name, "method": label, "reference": ref, "objective": res.objective,
                         "rel_err": res.rel_err, "seconds": seconds})
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
    args = layer_bench_args(__doc__)
    df = run(args.model_dir, args.calib, args.block_list, args.repeats)
    summary = summarise(df)
    text = ("# bench_layer_solvers (ratios to the reference method, same process, same Gram)\n\n"
            + summary.to_markdown(index=False, floatfmt=".4g") + "\n")
    write_outputs(Path(args.out), "bench_layer_solvers", df, summary, text, model_dir=args.model_dir,
                  calib=args.calib, blocks=args.blocks, repeats=args.repeats, threads=args.threads)
    print(text)


if __name__ == "__main__":
    main()
