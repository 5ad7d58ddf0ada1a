"""AWQ on (W, G): RTN as its α = 0 case, never worse than RTN, a reference scale search, the record."""
import pytest
import torch

from reprise.io import ReproError
from reprise.llm.methods import solve
from reprise.llm.methods.quant_grid import decode, encode


def _problem(seed, rows=8, cols=24, n=96, dtype=torch.float32, dead=()):
    """Random layer with correlated inputs of very uneven scale (AWQ's salient channels)."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.eye(cols) + 0.7 * torch.randn(cols, cols, generator=g) / cols ** 0.5
    X = (torch.randn(n, cols, generator=g) @ mix) * torch.exp(torch.randn(cols, generator=g))
    X[:, list(dead)] = 0
    W = torch.randn(rows, cols, generator=g)
    return W.to(dtype), (X.T @ X / n).to(dtype)


def _obj(W, Wq, G):
    D = (W - Wq).double()
    return float(((D @ G.double()) * D).sum())


@pytest.mark.parametrize("group_size,sym", [(-1, False), (8, False), (7, True)])
def test_alpha_zero_without_clipping_is_rtn(group_size, sym):
    W, G = _problem(0)
    awq = solve("awq", W, G, bits=3, group_size=group_size, sym=sym, grid=1, clip=False)
    rtn = solve("rtn", W, G, bits=3, group_size=group_size, sym=sym)
    assert torch.equal(awq.weight, rtn.weight)
    assert torch.equal(awq.quant["awq_scale"], torch.ones(24))


@pytest.mark.parametrize("bits,group_size", [(3, -1), (4, -1), (3, 8), (4, 10)])
def test_awq_is_never_worse_than_rtn_and_clipping_never_hurts(bits, group_size):
    for seed in range(5):
        W, G = _problem(10 + seed, rows=12, cols=40, dead=(5,) if seed == 0 else ())
        rtn = solve("rtn", W, G, bits=bits, group_size=group_size).objective
        noclip = solve("awq", W, G, bits=bits, group_size=group_size, clip=False)
        full = solve("awq", W, G, bits=bits, group_size=group_size)
        assert noclip.objective <= rtn * (1 + 1e-6)
        assert full.objective <= noclip.objective * (1 + 1e-6)
        assert bool(torch.isfinite(full.weight).all())


def test_awq_beats_rtn_on_salient_channels():
    wins = 0
    for seed in range(8):
        W, G = _problem(30 + seed, rows=16, cols=48)
        wins += solve("awq", W, G, bits=3).objective < 0.98 * solve("rtn", W, G, bits=3).objective
    assert wins >= 6


def test_scale_search_matches_a_direct_search():
    """α in {0, 1/20, …, 19/20}; s = sqrt(diag G)^α floored at 1e-4 and normalised; loss = exact error."""
    W, G = _problem(2, rows=10, cols=32)
    res = solve("awq", W, G, bits=3, clip=False)
    x = G.diagonal().sqrt()
    best = None
    for i in range(20):
        s = x.pow(i / 20).clamp(min=1e-4)
        s = s / (s.max() * s.min()).sqrt()
        Q = solve("rtn", W * s, None, bits=3).weight / s
        loss = _obj(W, Q, G)
        if best is None or loss < best[0]:
            best = (loss, i / 20, Q)
    assert res.extras["alpha"] == best[1]
    torch.testing.assert_close(res.weight, best[2], rtol=1e-6, atol=1e-6)
    assert res.objective == pytest.approx(best[0], rel=1e-4)
    assert int(torch.argmin(res.extras["alpha_loss"])) == round(best[1] * 20)


@pytest.mark.parametrize("group_size", [-1, 8])
def test_record_reproduces_the_weight(group_size):
    W, G = _problem(3, dead=(2,))
    res = solve("awq", W, G, bits=4, group_size=group_size)
    s = res.quant["awq_scale"]
    assert s.shape == (24,) and bool((s > 0).all())
    assert torch.equal(decode(res.quant, encode(res.quant, res.weight * s)) / s, res.weight)
    ratio = res.extras["clip_ratio"]
    assert bool(((ratio > 0.5) & (ratio <= 1)).all())


@pytest.mark.parametrize("kw,match", [(dict(grid=0), r"grid=0"), (dict(clip_grid=-2), r"clip_grid=-2"),
                                      (dict(max_shrink=1.0), r"max_shrink=1.0"), (dict(clip="no"), r"clip='no'"),
                                      (dict(bits=9), r"bits=9")])
def test_bad_awq_config_names_the_field(kw, match):
    W, G = _problem(0)
    with pytest.raises(ReproError, match=match):
        solve("awq", W, G, **kw)
