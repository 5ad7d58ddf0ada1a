"""bench_graphl0: our GraphL0BnB against the official code's measured figures (specs/other-papers.md §2.9).

Three parts, all on one core (OMP_NUM_THREADS=1 is set before numpy loads):

1. **BnB.** The five instances of the measured table in §2.9 — same generator, p, n, λ0, M = max|Θ*|
   and the same time limit, warm-started from the heuristic as there. The data are the official
   generator's own draws: ``RandomState(0)`` as demo.py's ``rng=0`` (bit-identical to
   ``l0bnb2.generate_synthetic`` for both models; the uniform instance is sampled with
   ``RandomState.multivariate_normal`` as the official code does). The table does not record λ2
   per instance ("0.01–0.05"); we use the λ2 listed in ``INSTANCES`` (see its comment for how it
   was chosen). Our final gap and nodes sit beside the official figures ``[V-run]``;
   ``gap_ratio = ours / official``.
   Goal (issue 17): final gap no larger than the official one on every instance, at most half of
   it on most (≥ 3 of 5). Each configuration is a separately named row ``search:relaxation``:
   ``bfs:perspective`` is the reference algorithm (BFS, maxfrac, the perspective relaxation,
   gap_tol 1e-2, as the official solver), ``bfs:strengthened`` the same search on our strengthened
   relaxation (``reprise.graphs.strengthened``); ``--variants`` adds others (``best:...``).
2. **Heuristic time vs p** up to p = 1000 (the ``graphs.scaling`` experiment: CDPSI and its
   active-set variant ASCDPSI, Toeplitz s = 3, n = 200), with the fitted growth exponent.
3. **Statistics on the same five instances**: MCC (all p² entries, as the official
   ``check_support``; and off the diagonal) and relative Frobenius error of GraphL0 (the BnB solution
   at the instance's λ, and λ0 tuned on a held-out draw by pseudo-likelihood) against graphical lasso
   and nodewise lasso (AND rule), each tuned on the same held-out draw (``RandomState(1)``). Reports
   whether the paper's claim "better support recovery than the ℓ1 methods" holds on these instances.

    OMP_NUM_THREADS=1 python benchmarks/graphl0.py --out benchmarks/results
    python benchmarks/graphl0.py --time-limit 10        # every BnB run at 10 s (say so when comparing)
    python benchmarks/graphl0.py --variants bfs,best --official-code /path/to/GraphL0

``--official-code`` (optional) re-runs the official solver from a local checkout of
mazumder-lab/GraphL0 on the same instances, in a subprocess (it needs numba; NumPy 2 lacks its
``np.Inf``, which the subprocess aliases), giving a same-machine column ``rerun_gap``/``rerun_nodes``
beside the recorded figures. Nothing of it is copied here.

Outputs ``bench_graphl0.{csv,md}``, ``bench_graphl0_scaling.csv``, ``bench_graphl0_stats.csv`` and
``bench_graphl0.provenance.json`` in ``--out``.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from reprise.experiments import run_experiment  # noqa: E402
from reprise.graphs import (GraphProblem, banded_toeplitz_precision, branch_and_bound, solve_heuristic,  # noqa: E402
                            tune_baseline, tune_lambda0, uniform_precision)
from reprise.io import atomic_path, write_json  # noqa: E402
from reprise.provenance import package_versions, provenance  # noqa: E402
from reprise.sparsity import rel_frobenius, support_counts  # noqa: E402

SOURCE = "specs/other-papers.md §2.9 [V-run] (official code mazumder-lab/GraphL0 58c7aed, 2 CPU cores)"
# (label, model, p, n, s or p0, λ0, λ2, time limit s, official: heuristic s, gap, nodes, MCC).
# λ2 is not recorded per instance in §2.9 ("λ2 = 0.01–0.05"): the λ0 = 0.05 rows are the demo's
# values (λ0 = λ2 = 0.05); for the other two we take λ2 = LAMBDA2_LOW (see --lambda2-low).
INSTANCES = [
    ("toeplitz s=2 p=10 n=200", "toeplitz", 10, 200, 2, 0.02, None, 30.0, 0.37, 0.028, 756, 0.52),
    ("toeplitz s=2 p=20 n=500", "toeplitz", 20, 500, 2, 0.005, None, 30.0, 0.03, 0.022, 481, 0.50),
    ("toeplitz s=3 p=20 n=200 (demo)", "toeplitz", 20, 200, 3, 0.05, 0.05, 60.0, None, 0.050, 1618, 0.44),
    ("uniform p0=0.15 p=20 n=200", "uniform", 20, 200, 0.15, 0.05, 0.05, 60.0, 0.01, 0.054, 2464, 0.47),
    ("toeplitz s=3 p=50 n=200", "toeplitz", 50, 200, 3, 0.05, 0.05, 60.0, 0.02, 0.140, 508, 0.41),
]
LAMBDA2_LOW = 0.01
GAP_TOL = 1e-2          # BNBTree.solve's default
TUNE_GRID = [0.005, 0.01, 0.02, 0.05, 0.1, 0.2]
BASELINE_GRID = [0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4]


def instance(model: str, p: int, n: int, s, seed: int):
    """The official generator's draw with ``RandomState(seed)`` (Θ first, then X)."""
    rs = np.random.RandomState(seed)
    if model == "toeplitz":
        Theta = banded_toeplitz_precision(p, int(s), 0.5, 2.0)
        X = rs.standard_normal((n, p)) @ np.linalg.cholesky(np.linalg.inv(Theta)).T
    else:
        Theta = uniform_precision(p, float(s), 2.0, rng=rs)
        X = rs.multivariate_normal(np.zeros(p), np.linalg.inv(Theta), n)
    return Theta, X


def bnb_part(time_limit: float | None, variants: list[str], lambda2_low: float):
    """The BnB rows, and the first variant's estimate per instance (reused by the statistics)."""
    rows, solutions = [], {}
    for label, model, p, n, s, l0, l2, tl, off_h, off_gap, off_nodes, off_mcc in INSTANCES:
        l2 = lambda2_low if l2 is None else l2
        tl = time_limit or tl
        Theta, X = instance(model, p, n, s, 0)
        M = float(np.abs(Theta).max())
        prob = GraphProblem.from_data(X, l0, l2, M)
        t0 = time.perf_counter()
        heur = solve_heuristic(prob, "cdpsi")
        h_sec = time.perf_counter() - t0
        for variant in variants:
            search, relaxation = variant.split(":") if ":" in variant else (variant, "perspective")
            res = branch_and_bound(prob, warm_start=heur.Theta, gap_tol=GAP_TOL, time_limit=tl, search=search,
                                   relaxation=relaxation, log_every=0)
            c = support_counts(res.Theta, Theta)
            solutions.setdefault(label, res.Theta)
            rows.append({"instance": label, "model": model, "p": p, "n": n, "lambda0": l0, "lambda2": l2, "M": M,
                         "variant": variant, "time_limit": tl, "heuristic_seconds": h_sec,
                         "heuristic_objective": heur.objective, "objective": res.objective,
                         "lower_bound": res.lower_bound, "gap": res.gap, "nodes": res.n_nodes,
                         "seconds": res.seconds, "status": res.status, "mcc": c.mcc,
                         "official_heuristic_seconds": off_h, "official_time_limit": tl if time_limit is None else
                         [x for x in INSTANCES if x[0] == label][0][7], "official_gap": off_gap,
                         "official_nodes": off_nodes, "official_mcc": off_mcc, "gap_ratio": res.gap / off_gap})
            print(f"{label:32s} {variant:18s} gap {res.gap:.4f} (official {off_gap:.3f}) nodes {res.n_nodes} "
                  f"in {res.seconds:.1f} s", flush=True)
    return pd.DataFrame(rows), solutions


OFFICIAL_SCRIPT = r"""
import json, sys, time
import numpy as np
np.Inf = np.inf                      # the reference package predates NumPy 2 (spec §2.1 run note)
sys.path.insert(0, sys.argv[1])
from l0bnb2 import BNBTree, generate_synthetic, heuristic_solve, preprocess
model, p, n, s, l0, l2, tl = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), \
    float(sys.argv[6]), float(sys.argv[7]), float(sys.argv[8])
kw = dict(cond=2, half_bandwidth=int(s)) if model == "toeplitz" else dict(cond=2, p0=s)
X, _, T = generate_synthetic(n, p, "banded_Toeplitz_precision" if model == "toeplitz" else "uniform", True,
                             rng=0, **kw)
_, _, _, _, Y, _ = preprocess(X)
M = float(np.max(np.abs(T)))
heuristic_solve(np.ascontiguousarray(Y[:, :4]), l0, l2, M)   # compile before timing, as our warm-up
t0 = time.time(); Th, _, _, _ = heuristic_solve(Y, l0, l2, M); th = time.time() - t0
tree = BNBTree(X)
t0 = time.time(); sol = tree.solve(l0, l2, M, warm_start=Th, gap_tol=1e-2, time_limit=tl)
print(json.dumps({"rerun_heuristic_seconds": th, "rerun_objective": float(sol.cost), "rerun_gap": float(sol.gap),
                  "rerun_nodes": int(tree.number_of_nodes), "rerun_seconds": time.time() - t0}))
"""


def official_rerun(code_dir: str, bnb: pd.DataFrame) -> pd.DataFrame:
    """Re-run the official solver (a checkout of mazumder-lab/GraphL0 at ``code_dir``, needs numba)
    on the same instances and time limits in a subprocess, for a same-machine column."""
    import json
    import subprocess

    rows = []
    first = bnb[bnb.variant == bnb.variant.iloc[0]]
    for (label, model, p, n, s, l0, *_), (_, r) in zip(INSTANCES, first.iterrows()):
        out = subprocess.run([sys.executable, "-c", OFFICIAL_SCRIPT, code_dir, model, str(p), str(n), str(s), str(l0),
                              str(r["lambda2"]), str(r["time_limit"])], capture_output=True, text=True, check=True)
        rows.append({"instance": label, **json.loads(out.stdout.strip().splitlines()[-1])})
        print(f"official rerun {label}: {rows[-1]}", flush=True)
    return pd.DataFrame(rows)


def stats_part(bnb: pd.DataFrame, solutions: dict) -> pd.DataFrame:
    rows = []
    for label, model, p, n, s, l0, l2, tl, *_ in INSTANCES:
        sub = bnb[(bnb.instance == label) & (bnb.variant == bnb.variant.iloc[0])].iloc[0]
        Theta, X = instance(model, p, n, s, 0)
        _, X_val = instance(model, p, n, s, 1)
        M, l2 = sub["M"], sub["lambda2"]
        fits = {"graphl0 (instance λ0, BnB)": solutions[label]}
        tuned = tune_lambda0(X, X_val, TUNE_GRID, lambda2=l2, M=M, solver="cdpsi")
        fits["graphl0 (λ0 tuned, cdpsi)"] = tuned.precision
        chosen = {"graphl0 (λ0 tuned, cdpsi)": tuned.value, "graphl0 (instance λ0, BnB)": l0}
        for b in ("glasso", "nodewise_and"):
            t = tune_baseline(b, X, X_val, BASELINE_GRID)
            fits[b] = t.precision
            chosen[b] = t.value
        for method, P in fits.items():
            c, o = support_counts(P, Theta), support_counts(P, Theta, off_diagonal=True)
            rows.append({"instance": label, "method": method, "penalty": chosen[method], "mcc": c.mcc,
                         "mcc_offdiag": o.mcc, "fp": c.fp, "fn": c.fn, "rel_frobenius": rel_frobenius(P, Theta),
                         "n_edges": int(np.count_nonzero(np.triu(np.abs(P) > 1e-3, 1)))})
        print(f"stats {label} done", flush=True)
    return pd.DataFrame(rows)


def verdicts(bnb: pd.DataFrame, stats: pd.DataFrame) -> list[str]:
    out = []
    for v in dict.fromkeys(bnb.variant):
        e = bnb[bnb.variant == v]
        every = bool((e.gap <= e.official_gap).all())
        half = int((e.gap <= 0.5 * e.official_gap).sum())
        out.append(f"- {v}: final gap ≤ official on every instance: **{'yes' if every else 'no'}** "
                   f"({int((e.gap <= e.official_gap).sum())}/5); ≤ half of it on {half}/5 (goal ≥ 3): "
                   f"**{'met' if every and half >= 3 else 'not met'}**; median gap ratio {e.gap_ratio.median():.2f}.")
    piv = stats.pivot_table(index="instance", columns="method", values="mcc_offdiag", sort=False)
    for g0 in ("graphl0 (instance λ0, BnB)", "graphl0 (λ0 tuned, cdpsi)"):
        wins = int(((piv[g0] >= piv["glasso"]) & (piv[g0] >= piv["nodewise_and"])).sum())
        holds = wins >= (len(piv) + 1) // 2
        out.append(f"- support recovery, {g0} (off-diagonal MCC; the ℓ1 methods tuned on a held-out draw): ≥ both "
                   f"graphical lasso and nodewise lasso on {wins}/{len(piv)} instances; mean MCC "
                   f"{piv[g0].mean():.3f} vs GLASSO {piv['glasso'].mean():.3f}, nodewise "
                   f"{piv['nodewise_and'].mean():.3f}: the better-support-recovery claim "
                   f"**{'holds' if holds else 'does not hold'}** here.")
    return out


def markdown(bnb: pd.DataFrame, scal: pd.DataFrame, stats: pd.DataFrame, args) -> str:
    cols = ["instance", "variant", "lambda2", "time_limit", "heuristic_seconds", "gap", "nodes", "mcc",
            "official_heuristic_seconds", "official_gap", "official_nodes", "official_mcc", "gap_ratio"]
    cols += [c for c in ("rerun_gap", "rerun_nodes") if c in bnb]
    lines = ["# bench_graphl0: GraphL0BnB vs the official code's figures", "",
             f"Official figures: {SOURCE}. Ours: this repository, one core, {platform.processor() or platform.machine()}. "
             f"Time limit: {'as the official run (30 s / 60 s)' if args.time_limit is None else f'{args.time_limit} s for every run (shorter than the official 30/60 s)'}; "
             f"gap_tol {GAP_TOL}; λ2 of the λ0 ≠ 0.05 rows: {args.lambda2_low} (not recorded in §2.9).", "",
             "## Branch-and-bound: final gap and nodes within the time limit", "",
             bnb[cols].to_markdown(index=False, floatfmt=".4g"), "", "## Verdicts", "", *verdicts(bnb, stats), "",
             "## Heuristic time vs p (Toeplitz s=3, n=200)", "",
             scal[["solver", "p", "seconds", "objective", "n_edges", "sweeps", "growth_exponent"]]
             .to_markdown(index=False, floatfmt=".4g"), "",
             "## Statistics on the same instances (λ tuned on a held-out RandomState(1) draw)", "",
             stats.to_markdown(index=False, floatfmt=".3g"), ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--time-limit", type=float, default=None, help="override every BnB time limit (s)")
    ap.add_argument("--variants", default="bfs:perspective,bfs:strengthened",
                    help="comma-separated search:relaxation pairs (search bfs/best/dfs; relaxation perspective = "
                         "the reference, strengthened = ours); the first is the default judged")
    ap.add_argument("--lambda2-low", type=float, default=LAMBDA2_LOW)
    ap.add_argument("--scaling-p", default="50,100,200,500,1000")
    ap.add_argument("--scaling-repeats", type=int, default=3)
    ap.add_argument("--skip-stats", action="store_true")
    ap.add_argument("--official-code", default=None,
                    help="a checkout of mazumder-lab/GraphL0: also re-run it on the same instances (same machine)")
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()
    t0 = time.perf_counter()
    run_experiment("graphs.tab3", {"p": [6]}, 0)   # compile or load the numba kernels first
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    bnb, solutions = bnb_part(args.time_limit, variants, args.lambda2_low)
    if args.official_code:
        bnb = bnb.merge(official_rerun(args.official_code, bnb), on="instance", how="left")
    scal = run_experiment("graphs.scaling", {"p": [int(x) for x in args.scaling_p.split(",")],
                                             "repeats": args.scaling_repeats}, 0)
    print(scal.to_string(), flush=True)
    stats = stats_part(bnb, solutions) if not args.skip_stats else pd.DataFrame(
        columns=["instance", "method", "penalty", "mcc", "mcc_offdiag", "fp", "fn", "rel_frobenius", "n_edges"])
    out = Path(args.out)
    for frame, name in ((bnb, "bench_graphl0"), (scal, "bench_graphl0_scaling"), (stats, "bench_graphl0_stats")):
        with atomic_path(out / f"{name}.csv", ".csv") as tmp:
            frame.to_csv(tmp, index=False)
    md = markdown(bnb, scal, stats, args) if not args.skip_stats else bnb.to_markdown(index=False)
    with atomic_path(out / "bench_graphl0.md", ".md") as tmp:
        tmp.write_text(md)
    write_json(out / "bench_graphl0.provenance.json",
               provenance(stage="bench", bench="graphl0", args=vars(args), official_source=SOURCE,
                          seconds=time.perf_counter() - t0,
                          extra_packages=package_versions(("numba", "scikit-learn", "scipy", "pyscipopt")),
                          device={"cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
                                  "omp_threads": os.environ.get("OMP_NUM_THREADS")}))
    print(md)


if __name__ == "__main__":
    main()
