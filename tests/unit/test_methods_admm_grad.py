"""ADMM-Grad: mask shape, the ADMM fixed point, and its error against the mask-only baselines."""
import pytest
import torch

from reprise.io import ReproError
from reprise.llm.methods import layer_objective, solve


def _problem(seed=0, rows=16, cols=64, n=512):
    g = torch.Generator().manual_seed(seed)
    mix = torch.eye(cols) + 0.5 * torch.randn(cols, cols, generator=g) / cols ** 0.5
    X = (torch.randn(n, cols, generator=g) @ mix) * torch.exp(0.5 * torch.randn(cols, generator=g))
    return torch.randn(rows, cols, generator=g), X.T @ X / n


def _restricted_ridge(W, G, keep, rel_damp):
    """Exact minimiser of tr((W' − W) G_d (W' − W)ᵀ) over W' supported on ``keep``, with the damped
    Gram G_d = G + λ diag(G) that ADMM-Grad's normalised problem is in original coordinates."""
    d = torch.diagonal(G).sqrt() + 1e-8
    lam = rel_damp * float((torch.diagonal(G) / d ** 2).mean())
    Gd = (G + lam * torch.diag(d ** 2)).double()
    out = torch.zeros_like(W, dtype=torch.float64)
    for i in range(W.shape[0]):
        S = keep[i].nonzero()[:, 0]
        out[i, S] = torch.linalg.solve(Gd[S][:, S], (Gd @ W[i].double())[S])
    return out


@pytest.mark.parametrize("kw", [dict(sparsity=0.5), dict(sparsity=0.7), dict(sparsity=0.6, schedule="cubic"),
                                dict(sparsity=0.6, per_row=True), dict(nm="2:4"), dict(nm="4:8"), dict(nm="1:4")])
def test_exact_sparsity_or_pattern(kw):
    W, G = _problem()
    res = solve("admm-grad", W, G, **kw)
    assert bool((res.weight[~res.mask] == 0).all())
    if "nm" in kw:
        n, m = map(int, kw["nm"].split(":"))
        assert (res.mask.reshape(W.shape[0], -1, m).sum(-1) == n).all()
    elif kw.get("per_row"):
        assert (res.mask.sum(1) == W.shape[1] - round(kw["sparsity"] * W.shape[1])).all()
    else:
        assert int((~res.mask).sum()) == round(kw["sparsity"] * W.numel())


def test_iterations_on_the_fixed_mask_reach_the_restricted_least_squares_solution():
    """After the mask iterations ADMM solves a convex problem on a fixed support: its fixed point
    is the exact restricted (damped) least-squares solution."""
    W, G = _problem(1)
    G = G.double()
    for kw in (dict(sparsity=0.6), dict(nm="2:4")):
        res = solve("admm-grad", W.double(), G, iters=60, **kw)
        ref = _restricted_ridge(W.double(), G, res.mask, 0.1)
        assert float((res.weight.double() - ref).norm() / ref.norm()) < 1e-5
        default = solve("admm-grad", W.double(), G, **kw)  # 5 fixed-mask iterations: close already
        ref = _restricted_ridge(W.double(), G, default.mask, 0.1)
        assert float((default.weight.double() - ref).norm() / ref.norm()) < 1e-2


@pytest.mark.parametrize("kw", [dict(sparsity=0.5), dict(sparsity=0.7), dict(nm="2:4")])
def test_beats_magnitude_wanda_and_its_own_mask_without_update(kw):
    for seed in range(3):
        W, G = _problem(seed)
        res = solve("admm-grad", W, G, **kw)
        assert res.objective < layer_objective(W, W * res.mask, G)  # the update helps on its own mask
        assert res.objective <= solve("magnitude", W, G, **kw).objective
        assert res.objective <= solve("wanda", W, G, **kw).objective


def test_no_iterations_is_a_whole_layer_wanda_mask():
    W, G = _problem(2)
    res = solve("admm-grad", W, G, sparsity=0.5, iters=0, mask_iters=0)
    score = W.abs() * torch.diagonal(G).sqrt()[None, :]
    assert torch.equal(res.weight, W * res.mask)
    assert float(score[res.mask].min()) >= float(score[~res.mask].max())


@pytest.mark.parametrize("kw,match", [
    (dict(iters=-1), r"iters=-1"),
    (dict(iters=10), r"mask_iters=15.*iters=10"),
    (dict(rho=0), r"rho=0"),
    (dict(rel_damp=-0.1), r"rel_damp=-0.1"),
    (dict(per_row="yes"), r"per_row='yes'"),
    (dict(per_row=True, nm="2:4"), r"per_row=True.*nm"),
    (dict(schedule="linear"), r"schedule='linear'.*official"),
    (dict(sparsity=1.0), r"sparsity=1.0"),
])
def test_bad_configs_name_the_field(kw, match):
    W, G = _problem()
    with pytest.raises(ReproError, match=match):
        solve("admm-grad", W, G, **kw)
