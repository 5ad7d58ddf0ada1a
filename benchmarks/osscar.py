"""bench_osscar: structured pruning of every SmolLM2-135M block, and the shrunk model's real speed.

SmolLM2-135M is a Llama with 30 blocks, 3 key-value groups of 3 query heads (head_dim 64, hidden
576) and an FFN of 1536 neurons. Three structured sparsity points are pruned over ALL blocks:

- ``n25``:      25% of the FFN neurons removed, every attention unit kept (1152 neurons);
- ``n50-kv1``:  50% of the neurons and 1 of the 3 key-value groups removed (768 neurons, 2 groups);
- ``n75-kv1``:  75% of the neurons and 1 of 3 groups removed (384 neurons, 2 groups).

Two kept groups = 6 query heads; 576 % 6 == 0, so ``shrink_model`` removes the dropped group
physically (no padding). Every point is pruned by ``osscar`` (greedy), ``mp-plus``, ``mp`` and
``ziplm`` (one structure per OBS downdate) by default, and on request (``--methods``) by
``osscar-ls`` (greedy + local search, slower); same calibration tokens, same driver. Each pruned
model's perplexity is measured on the test windows.

The greedy OSSCAR model of each point is then shrunk physically (its perplexity is re-measured:
it must equal the masked model's) and the dense and shrunk models are timed on CPU by
``reprise.llm.eval.speed.measure_speed`` (the speed jobs' implementation): full forwards
(``use_cache=False``) at batch 1 x 256 tokens and batch 8 x 256, dense and shrunk alternately,
median of ``--repeats`` timed forwards after ``--warmup`` untimed ones, thread count recorded.

FLOPs (``reprise.llm.eval.speed.forward_flops``): ``2 · P · B·L`` over the parameters used in a
matmul (the head included, embedding lookups left out) plus ``4 · L² · d_attn`` per block per
sequence for the attention scores and values. ``flop_ratio`` = dense / shrunk FLOPs, ``speedup`` =
dense / shrunk median seconds; ``efficiency`` = speedup / flop_ratio.

Goals (from the task): efficiency >= 0.8 at every point; OSSCAR's perplexity below MP+'s at every
point.

    python benchmarks/osscar.py --model-dir models/smollm2-135m \
        --calib data/tokens/smollm2-135m/local-enwiki-gensim/train.contiguous_16x256_s0.pt \
        --test data/tokens/smollm2-135m/local-enwiki-gensim/enwiki-gensim_8x256_s0.pt --out benchmarks/results
"""
from __future__ import annotations

import argparse
import logging
import copy
import time
from pathlib import Path

import pandas as pd
import torch

from _bench import write_outputs
from reprise.llm.data import load_tokens
from reprise.llm.driver import DriverConfig
from reprise.llm.driver.structured import prune_structured
from reprise.llm.eval import perplexity
from reprise.llm.eval.speed import measure_speed
from reprise.llm.export import parameter_count, shrink_model, unit_layout
from reprise.llm.models import load_local

# (label, heads_sparsity or None for "heads untouched", neurons_sparsity)
POINTS = [("n50-kv1", 1 / 3, 0.5), ("n75-kv1", 1 / 3, 0.75), ("n25", None, 0.25)]  # the richest point first
# (label, method, extra config)
METHODS = [("osscar", "osscar", {}), ("mp-plus", "mp-plus", {}), ("mp", "mp", {}), ("ziplm", "ziplm", {}),
           ("osscar-ls", "osscar", {"local_search": True})]
# ziplm (one neuron per downdate with in-place downdates) takes ~2 s per FFN layer at 50% here;
# osscar-ls adds Stage 2 on top of greedy and stays opt-in (--methods).
DEFAULT_METHODS = ("osscar", "mp-plus", "mp", "ziplm")
SHRINK_METHOD = "osscar"
REFERENCE = "mp-plus"
EFFICIENCY_GOAL = 0.8


def report(args, layer_rows, summary_rows, methods, batches, calib, calib_meta, windows, test_meta, points, t0):
    """Write the outputs (called after every point, so a cut-short run still leaves its table)."""
    layers = pd.DataFrame(layer_rows)
    summary = pd.DataFrame(summary_rows)
    labels = [m[0] for m in methods]
    ppl_cols = ["point", "heads_kept", "neurons_kept", "ppl_dense"] + [f"ppl_{m}" for m in labels] + ["ppl_shrunk"]
    speed_cols = ["point", "params_dense", "params_shrunk"] + [
        f"{k}_b{b}" for b in batches for k in ("flop_ratio", "dense_ms", "shrunk_ms", "speedup", "efficiency")]
    time_cols = ["point"] + [f"prune_s_{m}" for m in labels]
    goals = []
    if "efficiency_b1" in summary:
        for b in batches:
            vals = summary.set_index("point")[f"efficiency_b{b}"]
            goals.append(f"- speed-up / FLOP ratio >= {EFFICIENCY_GOAL} at batch {b}x{args.seqlen}: "
                         f"{'met' if (vals >= EFFICIENCY_GOAL).all() else 'MISSED'} "
                         f"({', '.join(f'{k} {v:.3f}' for k, v in vals.items())})")
    if "osscar_below_mp_plus" in summary:
        by = summary.set_index("point")
        below = by["osscar_below_mp_plus"]
        detail = ", ".join(f"{k} {by.loc[k, 'ppl_osscar']:.2f} vs {by.loc[k, 'ppl_mp-plus']:.2f}" for k in below.index)
        goals.append(f"- OSSCAR perplexity below MP+'s at every point: {'met' if below.all() else 'MISSED'} ({detail})")
    text = ("# bench_osscar (structured pruning of all 30 blocks of SmolLM2-135M; shrunk-model speed on CPU)\n\n"
            f"Calibration {calib_meta.get('protocol', args.calib)} {tuple(calib.shape)}; test windows "
            f"{args.test} {tuple(windows.shape)}; torch threads {torch.get_num_threads()}; latency = median of "
            f"{args.repeats} forwards after {args.warmup} warm-up, dense and shrunk alternately, use_cache=False, fp32.\n\n"
            "Points: n25 = 25% FFN neurons removed, heads kept; n50-kv1 / n75-kv1 = 50% / 75% neurons and 1 of 3 "
            "key-value groups removed. FLOPs = 2·matmul params·tokens (head included, embedding lookups left out) + "
            "4·L²·d_attn per block; efficiency = speed-up / FLOP ratio.\n\n"
            "## Perplexity\n\n" + summary[[c for c in ppl_cols if c in summary]].to_markdown(index=False, floatfmt=".4g")
            + "\n\n## Speed (dense vs shrunk OSSCAR model)\n\n"
            + summary[[c for c in speed_cols if c in summary]].to_markdown(index=False, floatfmt=".4g")
            + "\n\n## Prune seconds (whole model)\n\n"
            + summary[[c for c in time_cols if c in summary]].to_markdown(index=False, floatfmt=".4g")
            + "\n\n## Goals\n\n" + "\n".join(goals) + "\n")
    write_outputs(Path(args.out), "bench_osscar", layers, summary, text, model_dir=args.model_dir, calib=args.calib,
                  test=args.test, test_tokens=test_meta, points=[list(pt) for pt in points], methods=labels,
                  batches=batches, seqlen=args.seqlen, warmup=args.warmup, repeats=args.repeats,
                  threads=torch.get_num_threads(), seconds=time.perf_counter() - t0)
    return text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-dir", required=True)
    p.add_argument("--calib", required=True)
    p.add_argument("--test", required=True, help="test windows [n, seqlen] (load_tokens file)")
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                   help=f"comma list of {[m[0] for m in METHODS]}; osscar-ls is opt-in (slower)")
    p.add_argument("--points", default=",".join(pt[0] for pt in POINTS))
    p.add_argument("--batches", default="1,8", help="batch sizes timed (x seqlen tokens)")
    p.add_argument("--seqlen", type=int, default=256)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    logging.getLogger("reprise.driver").setLevel(logging.INFO)
    methods = [m for m in METHODS if m[0] in args.methods.split(",")]
    points = [pt for pt in POINTS if pt[0] in args.points.split(",")]
    batches = [int(b) for b in args.batches.split(",")]

    dense, _ = load_local(args.model_dir)
    dense.eval()
    calib, calib_meta = load_tokens(args.calib)
    windows, test_meta = load_tokens(args.test)
    test_len = windows.shape[1]
    layout = unit_layout(dense)
    driver = DriverConfig(device="cpu")

    t0 = time.perf_counter()
    ppl_dense = perplexity(dense, windows, test_len, batch_size=1, device="cpu")["ppl"]
    dense_params = parameter_count(dense)
    print(f"dense ppl {ppl_dense:.3f}, params {dense_params} "
          f"({time.perf_counter() - t0:.1f}s)", flush=True)

    layer_rows, summary_rows = [], []
    for point, heads_sp, neurons_sp in points:
        kinds = ("neurons",) if heads_sp is None else ("heads", "neurons")
        sp_cfg = {"neurons_sparsity": neurons_sp, **({} if heads_sp is None else {"heads_sparsity": heads_sp})}
        row = {"point": point, "heads_sparsity": 0.0 if heads_sp is None else round(heads_sp, 4),
               "neurons_sparsity": neurons_sp, "ppl_dense": ppl_dense}
        shrunk = None
        for label, method, extra in methods:
            model = copy.deepcopy(dense)
            res = prune_structured(model, calib, method, {"sparsity": neurons_sp, **sp_cfg, **extra}, layout,
                                   driver, kinds)
            ppl = perplexity(model, windows, test_len, batch_size=1, device="cpu")["ppl"]
            solve_s = sum(r["seconds"] for r in res.rows)
            for r in res.rows:
                layer_rows.append({"point": point, "label": label, **r})
            row[f"ppl_{label}"] = ppl
            row[f"prune_s_{label}"] = round(res.seconds, 2)
            row[f"solve_s_{label}"] = round(solve_s, 2)
            print(f"{point} {label}: ppl {ppl:.3f}, prune {res.seconds:.1f}s (solves {solve_s:.1f}s)", flush=True)
            if label == SHRINK_METHOD:
                shrunk = shrink_model(model, res.keep)
                plan = shrunk.reprise_shrink
                row["heads_kept"] = int(shrunk.config.num_key_value_heads)
                row["neurons_kept"] = int(shrunk.config.intermediate_size)
                row["padded_heads"] = sum(len(v) for v in plan.padded_heads.values())
                row["ppl_shrunk"] = perplexity(shrunk, windows, test_len, batch_size=1, device="cpu")["ppl"]
            else:
                del model
        if shrunk is None:
            summary_rows.append(row)
            continue
        row["params_dense"] = dense_params
        row["params_shrunk"] = parameter_count(shrunk)
        row["param_ratio"] = dense_params / row["params_shrunk"]
        for b in batches:
            sp = measure_speed(shrunk, dense, b, args.seqlen, warmup=args.warmup, repeats=args.repeats)
            speedup, flop_ratio = sp["speedup"], sp["flop_ratio"]
            row[f"flop_ratio_b{b}"] = flop_ratio
            row[f"dense_ms_b{b}"] = sp["dense_latency_ms"]
            row[f"shrunk_ms_b{b}"] = sp["latency_ms"]
            row[f"dense_tok_s_b{b}"] = sp["dense_tokens_per_s"]
            row[f"shrunk_tok_s_b{b}"] = sp["tokens_per_s"]
            row[f"speedup_b{b}"] = speedup
            row[f"efficiency_b{b}"] = speedup / flop_ratio
        if f"ppl_{REFERENCE}" in row:
            row["osscar_below_mp_plus"] = bool(row["ppl_osscar"] < row[f"ppl_{REFERENCE}"])
        print({k: v for k, v in row.items() if not k.startswith(("prune_s", "solve_s"))}, flush=True)
        summary_rows.append(row)
        del shrunk
        report(args, layer_rows, summary_rows, methods, batches, calib, calib_meta, windows, test_meta, points, t0)

    print(report(args, layer_rows, summary_rows, methods, batches, calib, calib_meta, windows, test_meta, points, t0))


if __name__ == "__main__":
    main()
