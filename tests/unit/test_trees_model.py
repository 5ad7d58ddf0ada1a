"""reprise.trees.model: the soft routing against a brute-force path product and finite differences, Keras'
initialisation, one proximal SGD step against its closed form, and the compressed model's identity."""
from __future__ import annotations

import math

import pytest
import torch

from reprise.trees.model import (SoftTreeEnsemble, classification_loss, group_hard_threshold_, penalty_schedule,
                                 train_ensemble)


def brute_force(model: SoftTreeEnsemble, x: torch.Tensor) -> torch.Tensor:
    """Σ_t Σ_leaf Π_path s or (1 − s) · o, walking each heap path node by node."""
    W, b, O = model.kernel, model.bias, model.leaves
    nodes = model.n_nodes
    out = torch.zeros(x.shape[0], model.n_outputs, dtype=x.dtype)
    for i in range(x.shape[0]):
        for t in range(model.n_trees):
            for leaf in range(2 ** model.depth):
                heap = leaf + nodes  # heap index of the leaf
                prob = torch.ones((), dtype=x.dtype)
                while heap > 0:
                    parent = (heap - 1) // 2
                    s = torch.sigmoid(x[i] @ W[:, t * nodes + parent] + b[t * nodes + parent])
                    prob = prob * (s if heap == 2 * parent + 1 else 1 - s)
                    heap = parent
                out[i] += prob * O[leaf, :, t]
    return out


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_forward_is_the_sum_over_trees_of_path_products(depth):
    g = torch.Generator().manual_seed(depth)
    m = SoftTreeEnsemble(4, 3, n_trees=3, depth=depth, generator=g, dtype=torch.float64)
    with torch.no_grad():
        m.bias.normal_(generator=g)  # non-zero biases so the bias path is exercised
    x = torch.randn(5, 4, generator=g, dtype=torch.float64)
    assert torch.allclose(m(x), brute_force(m, x), atol=1e-12)
    assert torch.allclose(m.leaf_probabilities(x).sum(-1), torch.ones(5, 3, dtype=torch.float64))


def test_soft_routing_gradients_match_finite_differences():
    g = torch.Generator().manual_seed(0)
    m = SoftTreeEnsemble(3, 2, n_trees=2, depth=2, generator=g, dtype=torch.float64)
    x = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    W, b, O = (t.detach().clone().requires_grad_(True) for t in (m.kernel, m.bias, m.leaves))
    with torch.no_grad():
        b.normal_(generator=g)

    def fn(x, W, b, O):
        return torch.func.functional_call(m, {"kernel": W, "bias": b, "leaves": O}, (x,))

    assert torch.autograd.gradcheck(fn, (x, W, b, O), eps=1e-6, atol=1e-7)


def test_glorot_uniform_on_keras_shapes_and_zero_biases():
    p, T, d, c = 200, 30, 4, 3
    m = SoftTreeEnsemble(p, c, T, d, generator=torch.Generator().manual_seed(1))
    units = T * (2 ** d - 1)
    lim_w = math.sqrt(6 / (p + units))
    lim_o = math.sqrt(6 / (c + T))  # each leaf's Keras shape (1, c, T): fan-in c, fan-out T
    assert m.kernel.shape == (p, units) and m.leaves.shape == (2 ** d, c, T)
    assert m.kernel.abs().max() <= lim_w and m.leaves.abs().max() <= lim_o
    assert abs(m.kernel.var().item() - lim_w ** 2 / 3) < 0.05 * lim_w ** 2 / 3  # uniform(-a, a) variance a²/3
    assert abs(m.leaves.var().item() - lim_o ** 2 / 3) < 0.1 * lim_o ** 2 / 3
    assert torch.count_nonzero(m.bias) == 0


def test_group_hard_threshold_keeps_rows_strictly_above():
    W = torch.tensor([[3.0, 4.0], [0.6, 0.8], [0.0, 0.5], [1.0, 0.0]])
    keep = group_hard_threshold_(W, 1.0)  # norms 5, 1, 0.5, 1
    assert keep.tolist() == [True, False, False, False]
    assert W[0].tolist() == [3.0, 4.0] and torch.count_nonzero(W[1:]) == 0


@pytest.mark.parametrize("anneal", [True, False])
def test_one_proximal_step_matches_its_closed_form(anneal):
    """One step: SGD on mean loss + λ₂‖W‖² (gradient 2λ₂W, Keras L2 has no ½), counter t = 1, then the group
    threshold sqrt(2ηλ₀(t)) with λ₀ = kernel_constraint/p, λ₂ = kernel_l2/(T(2^d−1))."""
    g = torch.Generator().manual_seed(3)
    p, T, d = 6, 2, 2
    m = SoftTreeEnsemble(p, 2, T, d, generator=g, dtype=torch.float64)
    X = torch.randn(8, p, generator=g, dtype=torch.float64)
    y = torch.randint(0, 2, (8,), generator=g)
    with torch.no_grad():
        m.kernel[2] *= 0.05  # one small row that the threshold removes
    eta, kl2, kc, tau = 0.3, 0.5, 4.0, 0.7
    lam2, lam0 = kl2 / (T * (2 ** d - 1)), kc / p
    ref = {k: v.detach().clone().requires_grad_(True) for k, v in m.named_parameters()}
    loss = classification_loss(torch.func.functional_call(m, ref, (X,)), y) + lam2 * ref["kernel"].square().sum()
    grads = torch.autograd.grad(loss, list(ref.values()))
    expect = {k: (v - eta * gr).detach() for (k, v), gr in zip(ref.items(), grads)}
    thr = math.sqrt(2 * eta * lam0 * ((1 - math.exp(-tau)) if anneal else 1.0))
    expect["kernel"][expect["kernel"].norm(dim=1) <= thr] = 0
    res = train_ensemble(m, X, y, classification_loss, learning_rate=eta, batch_size=8, epochs=1, kernel_l2=kl2,
                         kernel_constraint=kc, temperature=tau, anneal=anneal,
                         generator=torch.Generator().manual_seed(0))
    assert res.steps == 1 and res.feature_history[0] == p
    for k, v in m.named_parameters():
        assert torch.allclose(v, expect[k], atol=1e-12), k
    assert res.feature_history[-1] == int((expect["kernel"].norm(dim=1) > 0).sum()) < p


def test_penalty_schedule_counts_steps():
    assert penalty_schedule(2.0, 0.1, True, 0) == 0.0
    assert penalty_schedule(2.0, 0.1, True, 10) == pytest.approx(2.0 * (1 - math.exp(-1.0)))
    assert penalty_schedule(2.0, 0.1, False, 1) == 2.0


def test_compressed_model_gives_the_dense_predictions():
    g = torch.Generator().manual_seed(5)
    m = SoftTreeEnsemble(12, 3, 4, 3, generator=g, dtype=torch.float64)
    with torch.no_grad():
        m.kernel[[0, 3, 4, 7, 8, 11]] = 0
        m.bias.normal_(generator=g)
    small = m.compressed()
    assert small.kernel.shape == (6, m.kernel.shape[1]) and small.features.tolist() == [1, 2, 5, 6, 9, 10]
    x = torch.randn(20, 12, generator=g, dtype=torch.float64)
    assert torch.allclose(small(x), m(x), atol=1e-12)  # full-width input: the selected columns are read
    assert torch.allclose(small(x[:, small.features]), m(x), atol=1e-12)  # or the selected columns only
