"""Magnitude, Wanda and SparseGPT: exact mask structure and the properties that define them."""
import pytest
import torch

from reprise.llm.methods import solve


def _problem(seed, rows=8, cols=32, n=96):
    """Random layer with correlated inputs of uneven scale, so G is far from diagonal."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.eye(cols) + 0.7 * torch.randn(cols, cols, generator=g) / cols ** 0.5
    X = (torch.randn(n, cols, generator=g) @ mix) * torch.exp(0.5 * torch.randn(cols, generator=g))
    W = torch.randn(rows, cols, generator=g)
    return W, X.T @ X / n, X


def _nm_exact(mask, n, m):
    kept = mask.reshape(mask.shape[0], -1, m).sum(-1)
    return bool((kept == n).all())


@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
@pytest.mark.parametrize("nm", ["2:4", "1:4", "3:8"])
def test_nm_masks_are_exact(method, nm):
    W, G, _ = _problem(0)
    res = solve(method, W, G, nm=nm, **({"block_size": 6} if method == "sparsegpt" else {}))
    n, m = map(int, nm.split(":"))
    assert _nm_exact(res.mask, n, m)
    assert not bool(res.weight[~res.mask].any())


@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
@pytest.mark.parametrize("sparsity", [0.3, 0.5, 0.7])
def test_unstructured_sparsity_is_exact(method, sparsity):
    W, G, _ = _problem(1)
    res = solve(method, W, G, sparsity=sparsity, **({"block_size": 12} if method == "sparsegpt" else {}))
    if method == "wanda":  # compared within each output row
        assert bool(((~res.mask).sum(1) == round(sparsity * W.shape[1])).all())
    else:
        assert int((~res.mask).sum()) == round(sparsity * W.numel())
    assert not bool(res.weight[~res.mask].any())


def test_magnitude_keeps_the_largest_weights_of_the_layer():
    W, _, _ = _problem(2)
    res = solve("magnitude", W, None, sparsity=0.75)
    assert float(W.abs()[res.mask].min()) > float(W.abs()[~res.mask].max())
    assert torch.equal(res.weight, W * res.mask)


@pytest.mark.parametrize("nm", [None, "2:4"])
def test_wanda_mask_is_rowwise_topk_of_activation_weighted_magnitude(nm):
    W, G, X = _problem(3)
    score = W.abs() * X.norm(dim=0)  # computed from X, not from G
    if nm is None:
        keep = torch.zeros_like(W, dtype=torch.bool).scatter_(1, score.topk(W.shape[1] // 2, dim=1).indices, True)
        res = solve("wanda", W, G, sparsity=0.5)
    else:
        grouped = score.reshape(W.shape[0], -1, 4)
        keep = torch.zeros_like(grouped, dtype=torch.bool).scatter_(-1, grouped.topk(2, dim=-1).indices, True)
        keep = keep.reshape(W.shape)
        res = solve("wanda", W, G, nm=nm)
    assert torch.equal(res.mask, keep)
    assert torch.equal(res.weight, W * keep)


@pytest.mark.parametrize("pattern", [{"sparsity": 0.5}, {"nm": "2:4"}])
def test_sparsegpt_beats_magnitude(pattern):
    for seed in range(10):
        W, G, _ = _problem(10 + seed, cols=24)
        sg = solve("sparsegpt", W, G, block_size=8, **pattern)
        assert sg.objective < solve("magnitude", W, G, **pattern).objective


def test_sparsegpt_nm_does_not_depend_on_block_size():
    """N:M choices see the up-to-date weights, so lazy batching changes only rounding."""
    W, G, _ = _problem(4, cols=24)
    a, b = (solve("sparsegpt", W, G, nm="2:4", block_size=bs) for bs in (6, 128))
    assert torch.equal(a.mask, b.mask)
    torch.testing.assert_close(a.weight, b.weight, rtol=0, atol=1e-5)


def test_sparsegpt_zeroes_dead_columns_without_nan():
    W, _, X = _problem(5)
    X[:, [3, 17]] = 0
    res = solve("sparsegpt", W, X.T @ X / X.shape[0], sparsity=0.5)
    assert res.damping.dead == (3, 17)
    assert bool(torch.isfinite(res.weight).all()) and not bool(res.weight[:, [3, 17]].any())
