"""bench_skinny_trees: prediction time of a dense soft-tree ensemble against its compressed (feature-pruned) form.

Anchor (specs/other-papers.md §1.9 item 7, Appendix B ``timing_v100_1000rows``): T = 50 trees of depth 6, 1000
rows, dense p = 22 000 inputs 179 ms against 35 selected features 45.2 ms on a V100 (about 4x) [V-log]; the
abstract claims up to 10x faster inference [V-abs]. Those figures are shown beside ours, never asserted.

For each shape the ensemble (``reprise.trees.SoftTreeEnsemble``, Glorot init, all but ``k`` kernel rows zeroed as
after group-l0 training) is timed on 1000 rows three ways, interleaved within each repeat so that machine load
hits all alike: ``dense`` (the p x T(2^d - 1) kernel on all p columns), ``compressed`` (the k-row kernel on the k
selected columns, what a deployed model receives) and ``compressed_gather`` (the k-row kernel reading its columns
out of the full-width input). The median over repeats is reported, with the ratio dense / compressed from the same
run; the compressed predictions are checked equal to the dense ones (max abs difference in the table).

    OMP_NUM_THREADS=1 python benchmarks/skinny_trees.py --out benchmarks/results
    python benchmarks/skinny_trees.py --shapes 22000:50:6:35 --repeats 7 --device cuda

Shapes ``p:T:d:k``; default the anchor's (22000:50:6:35) and the spec's smoke shape (2000:10:4:20).
Outputs ``bench_skinny_trees.{md,csv}`` and ``bench_skinny_trees.provenance.json`` in ``--out``.
Measured on the 2-core development machine, one thread: dense 22000:50:6 about 750 ms, compressed (35)
about 32 ms per 1000 rows (23x); 2000:10:4 4.7 ms against 1.0 ms (4.8x). The whole run takes about 11 s.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

ANCHOR = {"shape": "22000:50:6:35", "dense_ms": 179.0, "compressed_ms": 45.2, "device": "V100",
          "source": "specs/other-papers.md §1.9 item 7 / Appendix B timing_v100_1000rows [V-log]"}


def timed(fn, sync) -> float:
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t0


def bench_shape(p: int, T: int, d: int, k: int, rows: int, repeats: int, device, seed: int = 0) -> dict:
    import torch

    from reprise.trees.model import SoftTreeEnsemble

    g = torch.Generator().manual_seed(seed)
    dense = SoftTreeEnsemble(p, 2, T, d, generator=g)
    keep = torch.randperm(p, generator=g)[:k]
    mask = torch.zeros(p, dtype=torch.bool)
    mask[keep] = True
    with torch.no_grad():
        dense.kernel[~mask] = 0  # the zero rows group-l0 training leaves behind
    small = dense.compressed()
    dense, small = dense.to(device), small.to(device)
    X = torch.randn(rows, p, generator=g).to(device)
    Xk = X[:, small.features].contiguous()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with torch.inference_mode():
        ref = dense(X)
        diff = max(float((small(Xk) - ref).abs().max()), float((small(X) - ref).abs().max()))
        runs = {"dense": lambda: dense(X), "compressed": lambda: small(Xk), "compressed_gather": lambda: small(X)}
        for fn in runs.values():  # warm-up (allocations, kernels)
            fn()
        times = {name: [] for name in runs}
        for _ in range(repeats):
            for name, fn in runs.items():
                times[name].append(timed(fn, sync))
    med = {name: statistics.median(v) * 1e3 for name, v in times.items()}
    return {"p": p, "trees": T, "depth": d, "selected": k, "rows": rows, "repeats": repeats,
            "dense_ms": med["dense"], "compressed_ms": med["compressed"],
            "compressed_gather_ms": med["compressed_gather"], "speedup": med["dense"] / med["compressed"],
            "speedup_gather": med["dense"] / med["compressed_gather"], "max_abs_diff": diff,
            "compression": p / k}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="22000:50:6:35,2000:10:4:20")
    ap.add_argument("--rows", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()

    import pandas as pd
    import torch

    from reprise.io import atomic_path, write_json
    from reprise.llm.models.blockwise import pick_device
    from reprise.provenance import device_info, provenance

    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    rows = []
    for shape in args.shapes.split(","):
        p, T, d, k = (int(x) for x in shape.split(":"))
        r = bench_shape(p, T, d, k, args.rows, args.repeats, device)
        r["device"] = str(device)
        rows.append(r)
        print(f"p={p} T={T} d={d} k={k}: dense {r['dense_ms']:.1f} ms, compressed {r['compressed_ms']:.2f} ms "
              f"({r['speedup']:.1f}x), gather {r['compressed_gather_ms']:.2f} ms; max |diff| {r['max_abs_diff']:.1e}",
              flush=True)
        if r["max_abs_diff"] > 1e-4:
            raise SystemExit(f"compressed predictions differ from the dense ones by {r['max_abs_diff']}")
    frame = pd.DataFrame(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "bench_skinny_trees.csv", suffix=".csv") as tmp:
        frame.to_csv(tmp, index=False)
    lines = ["# bench_skinny_trees: dense vs compressed soft-tree ensemble prediction", "",
             f"Device {device} ({args.threads} thread(s)), {args.rows} rows, median of {args.repeats} interleaved "
             "repeats; `compressed` reads the selected columns only, `gather` picks them from the full input.", "",
             "| p | T | d | selected | dense ms | compressed ms | speed-up | gather ms | speed-up (gather) "
             "| max abs diff |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['p']} | {r['trees']} | {r['depth']} | {r['selected']} | {r['dense_ms']:.1f} | "
                     f"{r['compressed_ms']:.2f} | {r['speedup']:.1f}x | {r['compressed_gather_ms']:.2f} | "
                     f"{r['speedup_gather']:.1f}x | {r['max_abs_diff']:.1e} |")
    a = ANCHOR
    lines += ["", f"Anchor ({a['source']}): {a['shape']} on a {a['device']}: dense {a['dense_ms']} ms, "
              f"compressed {a['compressed_ms']} ms ({a['dense_ms'] / a['compressed_ms']:.1f}x); the abstract claims "
              "up to 10x [V-abs]. A different device, framework (TensorFlow there) and input path, so only the "
              "ratios are comparable."]
    with atomic_path(out / "bench_skinny_trees.md", suffix=".md") as tmp:
        Path(tmp).write_text("\n".join(lines) + "\n")
    write_json(out / "bench_skinny_trees.provenance.json",
               provenance(stage="benchmark", benchmark="skinny_trees", args=vars(args), device=device_info()))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
