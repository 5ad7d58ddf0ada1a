"""HASSLE-free and OATS (sparse + low-rank layer solvers, spec §5): the properties that define them."""
import math

import pytest
import torch

from conftest import correlated_layer
from reprise.io import ReproError
from reprise.llm.methods import HassleFreeConfig, OatsConfig, get_method, layer_objective, solve
from reprise.llm.methods.hassle_free import (
    _lora_init,
    budget_rank_ratio,
    budget_sparsity,
    damped_gram,
    low_rank_step,
    rank_for_budget,
)
from reprise.llm.methods.masks import nm_keep


def _problem(seed, rows=8, cols=32, n=96, dtype=torch.float64):
    return correlated_layer(seed, rows, cols, n, dtype)


def _assert_nm(mask, n, m):
    groups = mask.reshape(mask.shape[0], -1, m).sum(-1)
    assert bool((groups == n).all())


def _assert_factors(res, W, r):
    S, A, B = res.extras["sparse"], res.extras["A"], res.extras["B"]
    assert res.extras["rank"] == r and B.shape == (W.shape[0], r) and A.shape == (r, W.shape[1])
    assert not bool(S[~res.mask].any())  # S lives on the mask
    torch.testing.assert_close(res.weight.double(), (S + B @ A).double(), rtol=1e-5, atol=1e-5)
    assert int(torch.linalg.matrix_rank(B @ A)) <= r


# --------------------------------------------------------------------------- budget (§5.2)

# spec §5.2's rank table: (setting, shapes (q, k, v, o, gate, up, down) as (out, in)), ranks
_LLAMA3_8B = [(4096, 4096), (1024, 4096), (1024, 4096), (4096, 4096), (14336, 4096), (14336, 4096), (4096, 14336)]
_LLAMA32_3B = [(3072, 3072), (1024, 3072), (1024, 3072), (3072, 3072), (8192, 3072), (8192, 3072), (3072, 8192)]
_LLAMA32_1B = [(2048, 2048), (512, 2048), (512, 2048), (2048, 2048), (8192, 2048), (8192, 2048), (2048, 8192)]
_RANK_TABLE = [
    (_LLAMA3_8B, dict(compression=0.5, nm="2:8"), [512, 204, 204, 512, 796, 796, 796]),
    (_LLAMA3_8B, dict(compression=0.5, nm="3:8"), [256, 102, 102, 256, 398, 398, 398]),
    (_LLAMA3_8B, dict(compression=0.6, rank_ratio=0.3), [245, 98, 98, 245, 382, 382, 382]),
    (_LLAMA3_8B, dict(compression=0.7, rank_ratio=0.3), [184, 73, 73, 184, 286, 286, 286]),
    (_LLAMA3_8B, dict(compression=0.8, rank_ratio=0.3), [122, 49, 49, 122, 191, 191, 191]),
    (_LLAMA32_3B, dict(compression=0.5, nm="2:8"), [384, 192, 192, 384, 558, 558, 558]),
    (_LLAMA32_1B, dict(compression=0.5, nm="2:8"), [256, 102, 102, 256, 409, 409, 409]),
]


@pytest.mark.parametrize("shapes,budget,ranks", _RANK_TABLE)
def test_budget_reproduces_the_rank_table(shapes, budget, ranks):
    assert [rank_for_budget(q, p, **budget) for q, p in shapes] == ranks
    cfg = HassleFreeConfig(**budget)  # the config reaches the same ranks
    assert [cfg.layer_rank(q, p) for q, p in shapes] == ranks


def test_budget_ratios_and_derived_sparsity():
    assert budget_rank_ratio(0.5, "2:8") == pytest.approx(0.5)
    assert budget_rank_ratio(0.5, "3:8") == pytest.approx(0.25)
    cfg = HassleFreeConfig(compression=0.6, rank_ratio=0.3)
    assert cfg.sparsity == pytest.approx(budget_sparsity(0.6, 0.3)) == pytest.approx(0.72)
    # kept parameters ≈ (1 − cr): sparse density (1−cr)(1−rr) plus rank·(q+p)/(qp) ≈ rr(1−cr)
    q, p = 4096, 4096
    kept = (1 - cfg.sparsity) + cfg.layer_rank(q, p) * (q + p) / (q * p)
    assert kept == pytest.approx(0.4, abs=1e-3)
    assert HassleFreeConfig.from_dict(cfg.to_dict()) == cfg  # the derived sparsity round-trips


# --------------------------------------------------------------------------- low-rank step

def test_low_rank_step_approaches_the_closed_form_optimum_in_the_gram_metric():
    W, G = _problem(3, rows=12, cols=24)
    S = W * nm_keep(W.abs(), 2, 4)
    T, r = W - S, 3
    H = damped_gram(G, 0.01)
    ev, Q = torch.linalg.eigh(H)
    H_half, H_ihalf = (Q * ev.sqrt()) @ Q.T, (Q / ev.sqrt()) @ Q.T
    U, s, Vh = torch.linalg.svd(T @ H_half)
    L_star = (U[:, :r] * s[:r]) @ Vh[:r] @ H_ihalf  # argmin over rank r of tr((T−L)H(T−L)ᵀ)

    def f(L):
        return layer_objective(T, L, H)

    B, A = torch.zeros(12, r, dtype=W.dtype), _lora_init(r, 24, 0, W.dtype, "cpu")
    for t in range(40):  # the outer schedule lr/(t+10), warm-started, 50 steps each
        B, A = low_rank_step(T, H, B, A, 50, 0.1 / (t + 10))
    gap = (f(B @ A) - f(L_star)) / f(L_star)
    assert -1e-9 < gap < 1e-4  # measured 1.1e-7
    assert f(L_star) < 0.5 * f(torch.zeros_like(T))  # the problem is not trivial


def test_low_rank_step_survives_a_diverging_learning_rate():
    W, G = _problem(4, rows=6, cols=16)
    H = damped_gram(G, 0.01)
    B, A = torch.zeros(6, 2, dtype=W.dtype), _lora_init(2, 16, 0, W.dtype, "cpu")
    B, A = low_rank_step(W, H, B, A, 20, 1e300)  # overflows, resets, retries with lr/10 ...
    assert bool(torch.isfinite(B).all()) and bool(torch.isfinite(A).all())


# --------------------------------------------------------------------------- HASSLE-free

@pytest.mark.parametrize("solver", ["sparsegpt", "alps"])
def test_objective_is_the_minimum_over_the_visited_iterates(solver):
    W, G = _problem(0)
    res = solve("hassle-free", W, G, nm="2:4", rank=2, am_iters=6, gd_iters=20, sparse_solver=solver)
    trace = res.extras["objective_trace"]
    assert len(trace) == 2 * 6 and all(math.isfinite(v) for v in trace)
    assert res.objective == pytest.approx(min(trace), rel=1e-6)


@pytest.mark.parametrize("solver,pattern", [("sparsegpt", dict(nm="2:4")), ("alps", dict(nm="2:4")),
                                            ("sparsegpt", dict(nm="1:4")), ("sparsegpt", dict(sparsity=0.7))])
def test_patterns_and_rank_hold_exactly(solver, pattern):
    W, G = _problem(1, rows=10, cols=32, dtype=torch.float32)
    res = solve("hassle-free", W, G, rank=3, am_iters=4, gd_iters=10, sparse_solver=solver, **pattern)
    if "nm" in pattern:
        _assert_nm(res.mask, *map(int, pattern["nm"].split(":")))
    else:
        assert int((~res.mask).sum()) == round(0.7 * W.numel())
    _assert_factors(res, W, 3)


def test_rank_is_capped_at_the_layer_shape():
    W, G = _problem(2, rows=4, cols=16)
    res = solve("hassle-free", W, G, nm="2:4", am_iters=2, gd_iters=5)  # default rank 64
    assert res.extras["rank"] == 4
    _assert_factors(res, W, 4)


@pytest.mark.parametrize("solver", ["sparsegpt", "alps"])
def test_exact_sparse_plus_low_rank_is_recovered(solver):
    g = torch.Generator().manual_seed(0)
    q, p, r = 16, 32, 2
    mask = nm_keep(torch.rand(q, p, generator=g), 2, 4)
    S0 = (torch.rand(q, p, generator=g, dtype=torch.float64) + 1) * torch.randn(q, p, generator=g,
                                                                                  dtype=torch.float64).sign() * mask
    L0 = 0.1 * torch.randn(q, r, generator=g, dtype=torch.float64) @ torch.randn(r, p, generator=g,
                                                                                 dtype=torch.float64)
    M = torch.randn(p, p, generator=g, dtype=torch.float64) / p ** 0.5
    G = torch.eye(p, dtype=torch.float64) + 0.1 * M @ M.T  # well conditioned
    res = solve("hassle-free", S0 + L0, G, nm="2:4", rank=r, am_iters=40, gd_lr=0.05, rel_damp=0.0,
                sparse_solver=solver)
    assert bool((res.mask == mask).all())
    assert res.rel_err < 2e-3  # measured 7.5e-4 (sparsegpt), 7.7e-4 (alps)
    S, L = res.extras["sparse"], res.extras["B"] @ res.extras["A"]
    assert float((S - S0).norm() / S0.norm()) < 1e-2  # measured 3.8e-3
    assert float((L - L0).norm() / L0.norm()) < 0.1


@pytest.mark.parametrize("solver,pattern", [("sparsegpt", dict(nm="2:4")), ("alps", dict(nm="2:4")),
                                            ("sparsegpt", dict(sparsity=0.6))])
def test_not_worse_than_sparse_only_with_the_same_pattern_and_solver(solver, pattern):
    W, G = _problem(5, rows=12, cols=32)
    res = solve("hassle-free", W, G, rank=2, am_iters=5, gd_iters=30, gd_lr=0.1, sparse_solver=solver,
                **pattern)  # gd_lr: O(1) weights need a larger step than the scripts' 1e-2
    damp = {"rel_damp": 0.005} if solver == "sparsegpt" else {"rel_ridge": 0.005, "max_iter": 200}
    sparse_only = solve(solver, W, G, **pattern, **damp)
    assert res.extras["objective_trace"][0] == pytest.approx(sparse_only.objective, rel=1e-6)
    assert res.objective < 0.95 * sparse_only.objective  # the low-rank part helps on a random problem


# --------------------------------------------------------------------------- OATS

@pytest.mark.parametrize("pattern", [dict(nm="2:4"), dict(sparsity=0.6), dict(sparsity=0.6, per_row=False)])
def test_oats_is_finite_and_holds_rank_and_pattern(pattern):
    W, G = _problem(6, rows=12, cols=32, dtype=torch.float32)
    res = solve("oats", W, G, rank=3, iters=20, **pattern)
    assert math.isfinite(res.objective) and res.objective < res.ref_energy
    if "nm" in pattern:
        _assert_nm(res.mask, 2, 4)
    elif pattern.get("per_row", True):
        assert bool(((~res.mask).sum(1) == round(0.6 * 32)).all())
    else:
        assert int((~res.mask).sum()) == round(0.6 * W.numel())
    _assert_factors(res, W, 3)
    trace = res.extras["objective_trace"]  # both half-steps are exact minimisers: monotone
    assert all(b <= a * (1 + 1e-5) + 1e-6 for a, b in zip(trace, trace[1:]))


def test_oats_relaxation_is_the_exact_objective_for_a_diagonal_gram():
    W, _ = _problem(7, rows=8, cols=16)
    G = torch.diag(torch.linspace(0.1, 3.0, 16, dtype=torch.float64))
    res = solve("oats", W, G, nm="2:4", rank=2, iters=10)
    assert res.objective == pytest.approx(res.extras["objective_trace"][-1], rel=1e-6)  # weight is fp32


def test_hassle_free_beats_oats_on_a_correlated_gram():
    W, G = _problem(8, rows=12, cols=32)
    hf = solve("hassle-free", W, G, nm="2:4", rank=2, am_iters=10, gd_iters=30, gd_lr=0.1)  # 13.4 vs 21.8
    oats = solve("oats", W, G, nm="2:4", rank=2, iters=20)
    assert hf.objective < oats.objective


# --------------------------------------------------------------------------- configs

@pytest.mark.parametrize("name,kw,match", [
    ("hassle-free", dict(sparse_solvr="alps"), r"unknown key\(s\) 'sparse_solvr'.*sparse_solver"),
    ("oats", dict(iter=3), r"unknown key\(s\) 'iter'.*iters"),
    ("hassle-free", dict(sparse_solver="wanda"), r"sparse_solver='wanda'.*sparsegpt, alps"),
    ("hassle-free", dict(rank=-1), r"rank=-1"),
    ("hassle-free", dict(rank=8, compression=0.5, nm="2:8"), r"rank=8.*not both"),
    ("hassle-free", dict(rank_ratio=0.3), r"rank_ratio=0.3.*needs compression"),
    ("hassle-free", dict(compression=0.5), r"compression=0.5.*nm .*rank_ratio"),
    ("hassle-free", dict(compression=0.5, nm="3:4"), r"compression=0.5 .*N/M"),
    ("hassle-free", dict(compression=0.6, rank_ratio=0.3, sparsity=0.5), r"sparsity=0.5.*derived"),
    ("hassle-free", dict(gd_lr=0), r"gd_lr=0.0"),
    ("hassle-free", dict(am_iters=0), r"am_iters=0"),
    ("hassle-free", dict(rel_damp=-1), r"rel_damp=-1"),
    ("oats", dict(per_row="yes"), r"per_row='yes'"),
])
def test_bad_configs_fail_naming_the_key(name, kw, match):
    W, G = _problem(0)
    with pytest.raises(ReproError, match=match):
        solve(name, W, G, **kw)


def test_registered_as_pruning_methods_that_need_the_gram():
    for name, Config in (("hassle-free", HassleFreeConfig), ("oats", OatsConfig)):
        m = get_method(name)
        assert m.kind == "prune" and m.needs_gram and m.Config is Config
    cfg = HassleFreeConfig()  # spec §5.4, the scripts' values
    assert (cfg.am_iters, cfg.gd_iters, cfg.gd_lr, cfg.rel_damp, cfg.rank, cfg.sparse_solver) == \
        (80, 50, 1e-2, 0.005, 64, "sparsegpt")
