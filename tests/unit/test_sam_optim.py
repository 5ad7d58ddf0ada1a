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
