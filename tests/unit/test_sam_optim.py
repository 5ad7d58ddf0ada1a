"""reprise.sam.SAM (SAM / mSAM over a base optimizer) against hand-computed updates; Hessian power iteration."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from reprise.io import ReproError
from reprise.sam import SAM, top_hessian_eigenvalue

F64 = torch.float64


def _quadratic(seed=0, p=4):
    g = torch.Generator().manual_seed(seed)
    M = torch.randn(p, p, generator=g, dtype=F64)
    A = M @ M.T + torch.eye(p, dtype=F64)
    c = torch.randn(p, generator=g, dtype=F64)
    w0 = torch.randn(p, generator=g, dtype=F64)
    return A, c, w0


def _closure(opt, w, A, c):
    def closure():
        opt.zero_grad()
        loss = 0.5 * (w - c) @ A @ (w - c)
        loss.backward()
        return loss
    return closure


@pytest.mark.parametrize("unnormalised", [False, True])
def test_sam_step_is_the_two_step_update_on_a_quadratic(unnormalised):
    A, c, w0 = _quadratic()
    rho, lr = 0.3, 0.05
    w = w0.clone().requires_grad_(True)
    opt = SAM([w], torch.optim.SGD, rho=rho, unnormalised=unnormalised, lr=lr)
    loss = opt.step(_closure(opt, w, A, c))
    g = A @ (w0 - c)
    eps = rho * g if unnormalised else rho * g / g.norm()
    expected = w0 - lr * (A @ (w0 + eps - c))
    torch.testing.assert_close(w.detach(), expected, rtol=1e-12, atol=1e-12)
    assert float(loss) == pytest.approx(float(0.5 * (w0 - c) @ A @ (w0 - c)))


def test_adaptive_sam_scales_the_ascent_by_the_weights():
    A, c, w0 = _quadratic(1)
    w = w0.clone().requires_grad_(True)
    opt = SAM([w], torch.optim.SGD, rho=0.5, adaptive=True, lr=0.1)
    opt.step(_closure(opt, w, A, c))
    g = A @ (w0 - c)
    T = w0.abs()
    eps = 0.5 * T ** 2 * g / (T * g).norm()
    torch.testing.assert_close(w.detach(), w0 - 0.1 * (A @ (w0 + eps - c)), rtol=1e-12, atol=1e-12)


def test_rho_zero_is_the_base_optimizer_exactly():
    A, c, w0 = _quadratic(2)
    a = w0.clone().requires_grad_(True)
    b = w0.clone().requires_grad_(True)
    sam = SAM([a], torch.optim.SGD, rho=0.0, lr=0.05, momentum=0.9, weight_decay=1e-3)
    sgd = torch.optim.SGD([b], lr=0.05, momentum=0.9, weight_decay=1e-3)
    for _ in range(5):
        sam.step(_closure(sam, a, A, c))
        sgd.step(_closure(sgd, b, A, c))
    assert torch.equal(a.detach(), b.detach())
    assert sam.param_groups[0]["momentum"] == 0.9  # base kwargs pass through
    assert "momentum_buffer" in sam.state_dict()["state"][0]


def test_micro_batches_average_the_per_shard_perturbed_gradients():
    p, m, rho, lr = 3, 4, 0.2, 0.1
    shards = [_quadratic(10 + k, p)[:2] for k in range(m)]
    _, _, w0 = _quadratic(99, p)
    w = w0.clone().requires_grad_(True)
    opt = SAM([w], torch.optim.SGD, rho=rho, micro_batches=m, lr=lr)
    calls = []

    def closure(k):
        calls.append(k)
        opt.zero_grad()
        A, c = shards[k]
        loss = 0.5 * (w - c) @ A @ (w - c)
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert calls == [0, 0, 1, 1, 2, 2, 3, 3]
    perturbed = []
    for A, c in shards:
        g = A @ (w0 - c)
        perturbed.append(A @ (w0 + rho * g / g.norm() - c))
    expected = w0 - lr * torch.stack(perturbed).mean(0)
    torch.testing.assert_close(w.detach(), expected, rtol=1e-12, atol=1e-12)
    losses = [0.5 * (w0 - c) @ A @ (w0 - c) for A, c in shards]
    assert float(loss) == pytest.approx(float(sum(losses) / m))
    # and it differs from SAM on the summed loss (the shard perturbations are not the full-batch one)
    A_sum = sum(A for A, _ in shards) / m
    b_sum = sum(A @ c for A, c in shards) / m
    g = A_sum @ w0 - b_sum
    sam_full = w0 - lr * (A_sum @ (w0 + rho * g / g.norm()) - b_sum)
    assert not torch.allclose(w.detach(), sam_full, atol=1e-6)


def test_sam_errors_are_clear():
    w = torch.zeros(2, dtype=F64, requires_grad=True)
    with pytest.raises(ReproError, match="base_optimizer"):
        SAM([w], "sgd", lr=0.1)
    with pytest.raises(ReproError, match="micro_batches"):
        SAM([w], torch.optim.SGD, micro_batches=0, lr=0.1)
    with pytest.raises(ReproError, match="closure"):
        SAM([w], torch.optim.SGD, lr=0.1).step()


def test_power_iteration_recovers_the_top_eigenvalue_of_a_quadratic():
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    eig = np.array([5.0, 2.0, 1.0, 0.5, 0.1, 0.01])
    A = torch.as_tensor(Q @ np.diag(eig) @ Q.T)
    x = torch.randn(6, generator=torch.Generator().manual_seed(0), dtype=F64).requires_grad_(True)
    y = torch.zeros(2, dtype=F64, requires_grad=True)  # a second parameter with zero curvature
    value = top_hessian_eigenvalue(lambda: 0.5 * x @ A @ x + 0.0 * y.sum(), [x, y], iters=500, tol=1e-12, seed=3)
    assert value == pytest.approx(5.0, rel=1e-8)
    # a non-quadratic loss: the Hessian of sum(x⁴)/4 at x is diag(3x²)
    z = torch.tensor([1.0, -2.0, 0.5], dtype=F64, requires_grad=True)
    assert top_hessian_eigenvalue(lambda: (z ** 4).sum() / 4, [z], iters=200, tol=1e-12) == pytest.approx(12.0)


# ----------------------------------------------------------------------------------------------- mSAM (paper msam)
def _shard_closure(opt, w, shards, seen=None):
    def closure(k=0):
        opt.zero_grad()
        A, c = shards[k]
        loss = 0.5 * (w - c) @ A @ (w - c)
        loss.backward()
        if seen is not None:
            seen.append(float(loss.detach()))
        return loss
    return closure


def test_msam_with_identical_shards_is_sam():
    A, c, w0 = _quadratic(3, p=5)
    a = w0.clone().requires_grad_(True)
    b = w0.clone().requires_grad_(True)
    sam = SAM([a], torch.optim.SGD, rho=0.2, lr=0.05, momentum=0.9)
    msam = SAM([b], torch.optim.SGD, rho=0.2, micro_batches=3, lr=0.05, momentum=0.9)
    for _ in range(4):
        sam.step(_closure(sam, a, A, c))
        msam.step(_shard_closure(msam, b, [(A, c)] * 3))
    torch.testing.assert_close(b.detach(), a.detach(), rtol=0, atol=1e-12)


def test_rho_zero_msam_is_the_base_step_on_the_mean_gradient():
    m, p = 4, 3
    shards = [_quadratic(20 + k, p)[:2] for k in range(m)]
    _, _, w0 = _quadratic(7, p)
    a = w0.clone().requires_grad_(True)
    b = w0.clone().requires_grad_(True)
    msam = SAM([a], torch.optim.SGD, rho=0.0, micro_batches=m, lr=0.02, momentum=0.9, weight_decay=1e-3)
    sgd = torch.optim.SGD([b], lr=0.02, momentum=0.9, weight_decay=1e-3)
    for _ in range(5):
        msam.step(_shard_closure(msam, a, shards))
        sgd.zero_grad()
        (sum(0.5 * (b - c) @ A @ (b - c) for A, c in shards) / m).backward()
        sgd.step()
    torch.testing.assert_close(a.detach(), b.detach(), rtol=0, atol=1e-12)


def _exact_ball_max(A, c, w, rho, n=20001):
    """max over ‖ε‖ = ρ of ½(w+ε−c)ᵀA(w+ε−c) on a fine circle (2-D; a convex function peaks on the sphere)."""
    t = torch.linspace(0, 2 * np.pi, n, dtype=F64)
    eps = rho * torch.stack([torch.cos(t), torch.sin(t)], 1)
    r = w + eps - c
    return 0.5 * ((r @ A) * r).sum(1)


def test_msam_surrogate_upper_bounds_the_sam_surrogate_to_first_order():
    """§4.2: (1/m)Σ_k max L_k(w+ε_k) ≥ max (1/m)Σ_k L_k(w+ε); the optimizer's ε_k is the first-order maximiser,
    and the gap of its perturbed losses is ρ((1/m)Σ‖∇L_k‖ − ‖∇L̄‖) + O(ρ²)."""
    m = 4
    shards = [_quadratic(40 + k, 2)[:2] for k in range(m)]
    _, _, w0 = _quadratic(41, 2)
    grads = [A @ (w0 - c) for A, c in shards]
    first_order_gap = float(sum(g.norm() for g in grads) / m - (sum(grads) / m).norm())
    assert first_order_gap > 0
    for rho in (1e-2, 1e-3):
        curves = torch.stack([_exact_ball_max(A, c, w0, rho) for A, c in shards])
        assert float(curves.max(1).values.mean()) >= float(curves.mean(0).max())  # exact, on the circle
        # the perturbed losses the optimizer evaluates: mSAM (its ε_k per shard) and SAM on the mean loss
        seen = []
        w = w0.clone().requires_grad_(True)
        opt = SAM([w], torch.optim.SGD, rho=rho, micro_batches=m, lr=0.0)
        opt.step(_shard_closure(opt, w, shards, seen))
        msam_perturbed = np.mean(seen[1::2])
        for k in range(m):  # per shard, ε_k = ρ g_k/‖g_k‖ attains the exact maximum up to O(ρ²)
            assert abs(seen[2 * k + 1] - float(curves[k].max())) <= 2 * rho ** 2 * float(torch.linalg.eigvalsh(
                shards[k][0]).max())
        v = w0.clone().requires_grad_(True)
        sam = SAM([v], torch.optim.SGD, rho=rho, lr=0.0)
        mean_A = sum(A for A, _ in shards) / m
        mean_c = torch.linalg.solve(mean_A, sum(A @ c for A, c in shards) / m)
        const = float(sum(0.5 * c @ A @ c for A, c in shards) / m - 0.5 * mean_c @ mean_A @ mean_c)
        pert = []

        def closure():
            sam.zero_grad()
            loss = 0.5 * (v - mean_c) @ mean_A @ (v - mean_c) + const  # = (1/m)Σ_k L_k(v)
            loss.backward()
            pert.append(float(loss.detach()))
            return loss

        sam.step(closure)
        gap = msam_perturbed - pert[1]
        assert gap > 0
        assert gap / rho == pytest.approx(first_order_gap, rel=rho)  # measured: 0.17ρ


def test_groups_with_their_own_rho_and_adaptive_share_one_norm():
    A, c, w0 = _quadratic(5, p=4)
    a = w0[:2].clone().requires_grad_(True)
    b = w0[2:].clone().requires_grad_(True)
    opt = SAM([{"params": [a], "rho": 0.3}, {"params": [b], "rho": 0.1, "adaptive": True}], torch.optim.SGD, lr=0.05)

    def closure():
        opt.zero_grad()
        w = torch.cat([a, b])
        loss = 0.5 * (w - c) @ A @ (w - c)
        loss.backward()
        return loss

    opt.step(closure)
    g = A @ (w0 - c)
    T = torch.cat([torch.ones(2, dtype=F64), w0[2:].abs()])  # |w| scaling in the adaptive group only
    norm = (T * g).norm()
    eps = torch.cat([0.3 * g[:2], 0.1 * w0[2:] ** 2 * g[2:]]) / norm
    torch.testing.assert_close(torch.cat([a, b]).detach(), w0 - 0.05 * (A @ (w0 + eps - c)), rtol=0, atol=1e-12)
