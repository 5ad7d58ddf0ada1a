"""ALPS, the support refits (PCG and exact backsolve) and the backsolve method: the properties that define them."""
import itertools
import logging

import pytest
import torch

from conftest import correlated_layer
from reprise.io import ReproError
from reprise.llm.methods import AlpsConfig, layer_objective, solve
from reprise.llm.methods.alps import FAST_CONFIG, ShiftedInverse, _global_keep, _small_nm_keep
from reprise.llm.methods.masks import nm_keep
from reprise.llm.methods.refit import exact_refit, normalised_gram, pcg_refit, ridge_value

log = logging.getLogger(__name__)


def _problem(seed, rows=8, cols=32, n=96, dtype=torch.float32):
    return correlated_layer(seed, rows, cols, n, dtype)


def _ridge_objective(W, W_hat, G, lam):
    """``tr(ΔW (G + λI) ΔWᵀ)``: the objective ALPS and the refits minimise."""
    d = (W - W_hat).double()
    return layer_objective(W, W_hat, G) + lam * float((d * d).sum())


def _random_mask(seed, shape, density):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g) < density


# --------------------------------------------------------------------------- refits


def test_exact_refit_matches_a_per_row_solve_with_ragged_supports():
    W, G = _problem(0, rows=6, cols=12, dtype=torch.float64)
    mask = _random_mask(1, W.shape, 0.5)
    mask[0] = False  # a row with nothing kept
    mask[1] = True  # a row with everything kept
    lam = 0.05
    out = exact_refit(G, W, mask, lam, max_chunk_bytes=8 * 4 * 4 * 2)  # tiny chunks: several per call
    Gr = G + lam * torch.eye(12, dtype=G.dtype)
    for i in range(6):
        S = mask[i].nonzero().reshape(-1)
        expect = torch.zeros(12, dtype=G.dtype)
        if len(S):
            expect[S] = torch.linalg.solve(Gr[S][:, S], (Gr @ W[i])[S])
        torch.testing.assert_close(out[i], expect, rtol=1e-9, atol=1e-10)
    assert not bool(out[~mask].any())


def test_exact_refit_handles_a_singular_gram_without_ridge():
    W, G = _problem(2, rows=4, cols=8, dtype=torch.float64)
    G[3, :] = 0
    G[:, 3] = 0  # a dead input: G is singular
    mask = torch.ones_like(W, dtype=torch.bool)
    mask[:, ::2] = False
    out = exact_refit(G, W, mask, 0.0)
    assert bool(torch.isfinite(out).all())
    # stationarity on the support: (G (ŵ − w))_S = 0
    grad = (out - W) @ G
    assert float(grad[mask].abs().max()) < 1e-9


def test_pcg_refit_converges_to_the_exact_backsolve():
    W, G = _problem(3, rows=10, cols=24, dtype=torch.float64)
    mask = _random_mask(4, W.shape, 0.5)
    Gt, D, lam = normalised_gram(G, 0.01)
    B0 = W * D
    rhs = (B0 @ Gt).T
    exact = exact_refit(G, W, mask, lam)
    many = pcg_refit(Gt, rhs, mask.T, (B0 * mask).T, iters=100, rtol=0.0).T / D
    torch.testing.assert_close(many, exact, rtol=1e-6, atol=1e-8)
    assert not bool(many[~mask].any())
    # ten iterations (the ALPS setting) already get within 1% of the optimum's ridge objective
    ten = pcg_refit(Gt, rhs, mask.T, (B0 * mask).T, iters=10).T / D
    f_exact, f_ten = _ridge_objective(W, exact, G, lam), _ridge_objective(W, ten, G, lam)
    f_start = _ridge_objective(W, W * mask, G, lam)
    assert f_exact <= f_ten <= f_start
    assert f_ten <= 1.01 * f_exact


def test_pcg_leaves_a_solution_unchanged():
    W, G = _problem(5, rows=4, cols=8, dtype=torch.float64)
    Gt, D, _ = normalised_gram(G, 0.01)
    B0 = W * D
    full = torch.ones_like(W, dtype=torch.bool)
    # the full support: the dense weights solve the system (zero residual, zero step)
    X = pcg_refit(Gt, (B0 @ Gt).T, full.T, B0.T.clone(), iters=10)
    torch.testing.assert_close(X.T, B0)


def test_normalised_gram_has_a_unit_diagonal():
    _, G = _problem(6, dtype=torch.float64)
    Gt, D, lam = normalised_gram(G, 0.01)
    assert lam == pytest.approx(0.01 * float(torch.diagonal(G).mean()))
    torch.testing.assert_close(torch.diagonal(Gt), torch.ones(G.shape[0], dtype=G.dtype))
    torch.testing.assert_close(Gt * D[:, None] * D[None, :], G + lam * torch.eye(G.shape[0], dtype=G.dtype))


# --------------------------------------------------------------------------- building blocks


def test_shifted_inverse_both_routes_match_a_solve():
    _, G = _problem(7, cols=16, dtype=torch.float64)
    Gt, _, _ = normalised_gram(G, 0.01)
    R = torch.randn(5, 16, dtype=torch.float64)
    for rows, every in ((100, 3), (1, 3)):  # forms the inverse / applies Q twice
        inv = ShiftedInverse(Gt, torch.float64, rows, every)
        assert inv.form == (rows == 100)
        for rho in (0.1, 2.0):
            inv.set_rho(rho)
            expect = torch.linalg.solve(Gt + rho * torch.eye(16, dtype=Gt.dtype), R.T).T
            torch.testing.assert_close(inv.apply(R), expect)


def test_global_keep_is_exact_with_ties_and_with_a_hint():
    g = torch.Generator().manual_seed(8)
    a = torch.rand(20, 30, generator=g)
    for k in (0, 1, 299, 600):
        keep, t = _global_keep(a, k)
        assert int(keep.sum()) == k
        if 0 < k < a.numel():
            assert float(a[keep].min()) > float(a[~keep].max())
            hinted, _ = _global_keep(a, k, hint=t * 1.05)
            assert torch.equal(hinted, keep)
    tied = torch.ones(6, 5)
    keep, _ = _global_keep(tied, 7)
    assert int(keep.sum()) == 7 and bool(keep.view(-1)[:7].all())  # ties filled in position order


def test_small_nm_keep_matches_the_shared_nm_mask_including_ties():
    g = torch.Generator().manual_seed(9)
    a = torch.rand(6, 16, generator=g)
    a[:, :4] = 0.5  # a fully tied group
    a[2, 4:8] = torch.tensor([0.3, 0.7, 0.3, 0.3])
    for n, m in ((1, 4), (2, 4), (3, 4), (1, 2)):
        assert torch.equal(_small_nm_keep(a, n, m), nm_keep(a, n, m))


# --------------------------------------------------------------------------- ALPS


@pytest.mark.parametrize("sparsity", [0.5, 0.7, 0.9])
def test_unstructured_budget_is_exact_and_global(sparsity):
    W, G = _problem(10, rows=12, cols=32)
    res = solve("alps", W, G, sparsity=sparsity)
    k = round((1 - sparsity) * W.numel())
    assert int(res.mask.sum()) == k
    assert not bool(res.weight[~res.mask].any())
    assert int((res.weight != 0).sum()) == k
    per_row = res.mask.sum(1)
    assert int(per_row.max()) != int(per_row.min())  # a per-layer budget, not a per-row one


@pytest.mark.parametrize("nm", ["2:4", "4:8", "1:4"])
def test_nm_pattern_is_exact(nm):
    W, G = _problem(11, rows=8, cols=32)
    res = solve("alps", W, G, nm=nm)
    n, m = map(int, nm.split(":"))
    assert bool((res.mask.reshape(8, -1, m).sum(-1) == n).all())
    assert not bool(res.weight[~res.mask].any())


def _brute_force_optimum(W, G, lam, k):
    """Minimum ridge objective over every support with exactly ``k`` kept weights, and its argmin.

    The objective separates over rows, so each row's best value is computed for every subset of
    its inputs; the best split of ``k`` between the rows is then enumerated.
    """
    m, p = W.shape
    Gr = G + lam * torch.eye(p, dtype=G.dtype)
    best = [[float("inf")] * (p + 1) for _ in range(m)]  # best[i][s]: row i, s kept
    for i in range(m):
        for s in range(p + 1):
            for S in itertools.combinations(range(p), s):
                w = torch.zeros(p, dtype=G.dtype)
                if S:
                    idx = list(S)
                    w[idx] = torch.linalg.solve(Gr[idx][:, idx], (Gr @ W[i])[idx])
                d = W[i] - w
                best[i][s] = min(best[i][s], float(d @ Gr @ d))
    return min(sum(best[i][s] for i, s in enumerate(split))
               for split in itertools.product(range(p + 1), repeat=m) if sum(split) == k)


def test_alps_against_the_brute_force_optimum_on_small_problems():
    """Objective: the ridge objective ``tr(ΔW (G + λI) ΔWᵀ)``, λ = 0.01·mean(diag G), for both sides.

    Measured (this seed range): ALPS is within 1e-3 of the optimum on 24 of the 50 problems, with a
    median gap of 3%; the exact refit of the magnitude support on 12, median gap 73%. On problems
    this small one support change is 1/6 of ``k``, so the released ρ schedule grows ρ at every
    check and stops at the first check without change; the code is the released algorithm (a
    plain transcription with explicit Z and V gives identical weights on all 50). The bounds
    below leave a margin under those measurements.
    """
    hits, gaps, mp_gaps = 0, [], []
    for seed in range(50):
        m, p = (3, 4) if seed % 2 else (2, 6)
        W, G = _problem(100 + seed, rows=m, cols=p, n=16, dtype=torch.float64)
        lam = ridge_value(G, 0.01)
        k = round(0.5 * m * p)
        opt = _brute_force_optimum(W, G, lam, k)
        res = solve("alps", W, G, sparsity=0.5)
        assert int(res.mask.sum()) == k
        got = _ridge_objective(W, res.weight.double(), G, lam)
        assert got >= opt * (1 - 1e-6)  # nothing beats the optimum
        gap = got / opt - 1
        mp = solve("backsolve", W, G, sparsity=0.5, support="magnitude")
        mp_gaps.append(_ridge_objective(W, mp.weight.double(), G, lam) / opt - 1)
        if gap <= 1e-3:
            hits += 1
        else:
            gaps.append((seed, round(gap, 4)))
    all_gaps = sorted([0.0] * hits + [g for _, g in gaps])
    median, mp_median = all_gaps[25], sorted(mp_gaps)[25]
    log.info("ALPS within 1e-3 of the optimum on %d/50 problems (median gap %.3g; magnitude + exact refit "
             "%.3g); gaps elsewhere: %s", hits, median, mp_median, gaps)
    msg = f"{hits}/50 within 1e-3, median gap {median:.3g} (magnitude + exact refit {mp_median:.3g}); gaps: {gaps}"
    assert hits >= 20, msg
    assert median < 0.1 and median < 0.5 * mp_median, msg


def _stable_from(trace):
    """First iteration after which the support never changes again (per-iteration change 0)."""
    changed = (trace[:, 2] > 0).nonzero().reshape(-1)
    return 1 if len(changed) == 0 else int(trace[int(changed[-1]), 0]) + 1


def test_adaptive_rho_stabilises_the_support_sooner_than_a_fixed_rho():
    W, G = _problem(12, rows=16, cols=48)
    adaptive = solve("alps", W, G, sparsity=0.7, trace=True)
    fixed = solve("alps", W, G, sparsity=0.7, trace=True, rho_schedule="fixed", rho0=0.3)
    for res in (adaptive, fixed):
        trace = res.extras["admm_trace"]
        T = res.extras["admm_iterations"]
        assert trace.dtype == torch.float64 and trace.shape == (T, 4)
        assert torch.equal(trace[:, 0], torch.arange(1, T + 1, dtype=torch.float64))
        assert bool((trace[:, 2] >= 0).all()) and bool((trace[:, 3] >= 0).all())
        assert int(res.mask.sum()) == round(0.3 * W.numel())
    assert bool((fixed.extras["admm_trace"][:, 1] == 0.3).all())
    assert fixed.extras["final_rho"] == 0.3
    assert adaptive.extras["final_rho"] > 0.1  # the penalty grew
    assert _stable_from(adaptive.extras["admm_trace"]) < _stable_from(fixed.extras["admm_trace"])


def test_alps_beats_magnitude_and_the_refit_only_helps():
    W, G = _problem(13, rows=12, cols=32)
    lam = ridge_value(G, 0.01)
    runs = {refit: solve("alps", W, G, sparsity=0.7, refit=refit) for refit in ("none", "pcg", "exact")}
    f = {r: _ridge_objective(W, res.weight, G, lam) for r, res in runs.items()}
    assert torch.equal(runs["none"].mask, runs["exact"].mask)
    assert f["exact"] <= f["pcg"] * (1 + 1e-5) <= f["none"] * (1 + 1e-5)
    assert runs["pcg"].objective < solve("magnitude", W, G, sparsity=0.7).objective
    fast = solve("alps", W, G, sparsity=0.7, **FAST_CONFIG)
    assert int(fast.mask.sum()) == int(runs["pcg"].mask.sum())


def test_fp64_inputs_and_extras():
    W, G = _problem(14, dtype=torch.float64)
    res = solve("alps", W, G, sparsity=0.5)
    assert res.weight.dtype == torch.float32
    assert isinstance(res.extras["admm_iterations"], int) and 1 <= res.extras["admm_iterations"] <= 300
    assert isinstance(res.extras["final_rho"], float)
    assert "admm_trace" not in res.extras


@pytest.mark.parametrize("field,value", [("rho_schedule", "adaptve"), ("rho0", -1.0), ("refit", "pcgg"),
                                         ("pcg_iters", 0), ("max_iter", 0), ("switch_tol", float("nan")),
                                         ("trace", "yes")])
def test_bad_config_names_the_field(field, value):
    W, G = _problem(15)
    with pytest.raises(ReproError, match=field):
        solve("alps", W, G, **{field: value})
    with pytest.raises(ReproError, match=field):
        AlpsConfig(**{field: value})


def test_bad_choices_list_the_allowed_values():
    with pytest.raises(ReproError, match="adaptive, fixed"):
        AlpsConfig(rho_schedule="adaptve")
    with pytest.raises(ReproError, match="pcg, exact, none"):
        AlpsConfig(refit="cg")


def test_nm_needs_in_features_divisible_by_m():
    W, G = _problem(16, rows=4, cols=30)
    with pytest.raises(ReproError, match="divisible by 4"):
        solve("alps", W, G, nm="2:4")


# --------------------------------------------------------------------------- backsolve


@pytest.mark.parametrize("support,pattern", [("magnitude", {"sparsity": 0.6}), ("wanda", {"nm": "2:4"}),
                                             ("sparsegpt", {"sparsity": 0.5})])
def test_backsolve_refits_the_support_methods_mask(support, pattern):
    W, G = _problem(17, rows=12, cols=32)
    lam = ridge_value(G, 0.01)
    mask = solve(support, W, G, **pattern).mask
    runs = {r: solve("backsolve", W, G, support=support, refit=r, **pattern) for r in ("none", "pcg", "exact")}
    for res in runs.values():
        assert torch.equal(res.mask, mask)
        assert not bool(res.weight[~mask].any())
    assert torch.equal(runs["none"].weight, W * mask)
    ridge = {r: _ridge_objective(W, res.weight, G, lam) for r, res in runs.items()}
    assert ridge["exact"] <= ridge["pcg"] * (1 + 1e-5) <= ridge["none"] * (1 + 1e-5)
    # on the undamped objective too (the ridge only adds ‖ΔW‖², which a refit can only grow)
    assert runs["exact"].objective <= runs["none"].objective
    assert runs["pcg"].objective <= runs["none"].objective
    assert ridge["pcg"] <= 1.02 * ridge["exact"]


def test_backsolve_rejects_an_unknown_support_or_refit():
    W, G = _problem(18)
    with pytest.raises(ReproError, match="support"):
        solve("backsolve", W, G, support="magnitud")
    with pytest.raises(ReproError, match="support"):
        solve("backsolve", W, G, support="rtn")
    with pytest.raises(ReproError, match="refit"):
        solve("backsolve", W, G, refit="cg")
