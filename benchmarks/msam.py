"""bench_msam: seconds per epoch of SGD, SAM and mSAM (m = 2, 4, 8, 16) and their ratio to SGD (specs/other-papers.md
§4.2 cost claim, §4.5 item 5).

Two models, each trained one epoch per method in turn within every repeat (interleaved, so machine load hits all
alike; median over repeats; the ratio is the median of the per-repeat ratios to that repeat's SGD epoch):

- ``mlp``: the digits MLP of the smoke targets (64-64-64-10 ReLU, scikit-learn's digits, batch 64, 21 steps; each
  measurement averages 10 epochs, one lasts milliseconds);
- ``cnn``: a small ResNet-style CNN with GroupNorm on random 32 × 32 × 3 images (16-32-64 channels, one residual
  block per stage, 10 classes, batch 128, ``--cnn-n`` images), a CIFAR-shaped stand-in.

mSAM is timed two ways: ``loop`` (:func:`reprise.sam.msam.train_step`, :class:`reprise.sam.SAM` with
``micro_batches = m``: 2m small forward-backward passes per step, the reference implementation) and ``vmap``
(:func:`reprise.sam.msam.vmap_msam_step`: the m micro-batches in one batched pass each via ``torch.func.vmap``;
the same update, checked in tests/unit/test_msam_experiment.py). The goal (the papers' "without significant extra
cost") is SAM ≈ mSAM ≤ 2.2 × SGD.

    OMP_NUM_THREADS=1 python benchmarks/msam.py --out benchmarks/results
    python benchmarks/msam.py --device cuda --cnn-n 4096 --repeats 5

Outputs ``bench_msam.{md,csv}`` and ``bench_msam.provenance.json`` in ``--out``. Measured on the shared 2-core
development machine, one thread: see the Markdown table; the whole run takes about 1–2 minutes.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

GOAL = 2.2


def small_resnet(groups: int = 8):
    import torch
    from torch import nn

    from reprise.vision.resnet_gn import make_norm

    class Block(nn.Module):
        def __init__(self, c_in, c_out, stride):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False),
                                      make_norm("group", c_out, groups), nn.ReLU(),
                                      nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), make_norm("group", c_out, groups))
            self.skip = nn.Conv2d(c_in, c_out, 1, stride, bias=False) if (stride, c_in) != (1, c_out) else nn.Identity()

        def forward(self, x):
            return torch.relu(self.body(x) + self.skip(x))

    return nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), make_norm("group", 16, groups), nn.ReLU(),
                         Block(16, 16, 1), Block(16, 32, 2), Block(32, 64, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(64, 10))


def problems(cnn_n: int, device):
    import torch

    from reprise.sam.msam import digits_data

    Xtr, ytr, _, _ = digits_data(0, 0.25)
    g = torch.Generator().manual_seed(0)

    def mlp():
        return torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64), torch.nn.ReLU(),
                                   torch.nn.Linear(64, 10))

    X = torch.rand(cnn_n, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (cnn_n,), generator=g)
    # the MLP's epoch (21 steps) lasts milliseconds: each measurement runs it 10 times to rise above timer noise
    return {"mlp": (mlp, Xtr.to(device), ytr.to(device), 64, 10),
            "cnn": (small_resnet, X.to(device), y.to(device), 128, 1)}


def methods(shards):
    out = [("sgd", 1, "-"), ("sam", 1, "loop")]
    for m in shards:
        out += [("msam", m, "loop"), ("msam", m, "vmap")]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shards", default="2,4,8,16")
    ap.add_argument("--models", default="mlp,cnn")
    ap.add_argument("--cnn-n", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rho", type=float, default=0.05)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()

    import pandas as pd
    import torch

    from reprise.io import atomic_path, write_json
    from reprise.llm.models.blockwise import pick_device
    from reprise.provenance import device_info, provenance
    from reprise.sam import SAM
    from reprise.sam.msam import train_step, vmap_msam_step

    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()[0]
    device = pick_device(args.device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    ce = torch.nn.functional.cross_entropy
    shards = [int(s) for s in args.shards.split(",")]
    rows = []
    for name, (build, X, y, batch, passes) in problems(args.cnn_n, device).items():
        if name not in args.models.split(","):
            continue
        runs = []
        for method, m, impl in methods(shards):
            torch.manual_seed(0)
            model = build().to(device)
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9) if method == "sgd" else \
                SAM(model.parameters(), torch.optim.SGD, rho=args.rho, micro_batches=m, lr=0.01, momentum=0.9)
            runs.append((method, m, impl, model, opt, vmap_msam_step if impl == "vmap" else train_step))
        steps = len(X) // batch

        def epoch(run):
            _, m, _, model, opt, step = run
            sync()
            t0 = time.perf_counter()
            for _ in range(passes):
                for s in range(steps):
                    step(model, opt, ce, X[s * batch:(s + 1) * batch], y[s * batch:(s + 1) * batch], m)
            sync()
            return (time.perf_counter() - t0) / passes

        for run in runs:  # warm-up: allocations, vmap tracing
            epoch(run)
        times = [[] for _ in runs]
        for r in range(args.repeats):
            for i, run in enumerate(runs):
                times[i].append(epoch(run))
            print(f"{name} repeat {r + 1}/{args.repeats}: " + ", ".join(
                f"{run[0]}{run[1]}{'' if run[2] in ('-', 'loop') else '-vmap'} {t[-1]:.3f}s"
                for run, t in zip(runs, times)), flush=True)
        for (method, m, impl, *_), t in zip(runs, times):
            ratio = statistics.median(a / b for a, b in zip(t, times[0]))
            rows.append(dict(model=name, method=method, num_shards=m, shard_size=batch // m, batch_size=batch,
                             implementation=impl, steps_per_epoch=steps, seconds_per_epoch=statistics.median(t),
                             ratio_to_sgd=ratio, within_goal=(ratio <= GOAL) if method != "sgd" else None,
                             repeats=args.repeats, device=str(device), threads=args.threads))
    frame = pd.DataFrame(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "bench_msam.csv", suffix=".csv") as tmp:
        frame.to_csv(tmp, index=False)
    lines = ["# bench_msam: seconds per epoch of SGD, SAM and mSAM", "",
             f"Device {device} ({args.threads} thread(s)), median of {args.repeats} interleaved repeats after one "
             f"warm-up epoch each; ratio = median of the per-repeat ratios to SGD's epoch; goal ≤ {GOAL}× for SAM and "
             "mSAM. `loop`: 2m forward-backward passes of size b/m per step (reprise.sam.SAM); `vmap`: the m shards "
             f"in one batched pass each (torch.func.vmap). Load average at the start / end: {load0:.1f} / "
             f"{os.getloadavg()[0]:.1f} (on {os.cpu_count()} cores).", "",
             "| model | method | m | shard size | implementation | s / epoch | ratio to SGD | ≤ goal |",
             "|---|---|---:|---:|---|---:|---:|---|"]
    for r in rows:
        ok = "—" if r["within_goal"] is None else ("yes" if r["within_goal"] else "no")
        lines.append(f"| {r['model']} | {r['method']} | {r['num_shards']} | {r['shard_size']} | {r['implementation']} | "
                     f"{r['seconds_per_epoch']:.4f} | {r['ratio_to_sgd']:.2f} | {ok} |")
    with atomic_path(out / "bench_msam.md", suffix=".md") as tmp:
        Path(tmp).write_text("\n".join(lines) + "\n")
    write_json(out / "bench_msam.provenance.json",
               provenance(stage="benchmark", benchmark="msam", args=vars(args), device=device_info()))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
