"""DSnoT: the mask's shape, its relation to Wanda's, and what the prune-and-grow cycles guarantee."""
import dataclasses

import pytest
import torch

from reprise.io import ReproError
from reprise.llm.methods import DsnotConfig, get_method, solve


def _problem(seed=0, rows=32, cols=128, n=1024, shift=0.3):
    """Correlated inputs with non-zero per-feature means and unequal scales."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.eye(cols) + 0.3 * torch.randn(cols, cols, generator=g) / cols ** 0.5
    X = (torch.randn(n, cols, generator=g) @ mix + shift * torch.randn(cols, generator=g))
    X = X * torch.exp(0.3 * torch.randn(cols, generator=g))
    W = torch.randn(rows, cols, generator=g)
    return W, X.T @ X / n, X.mean(0)


def _signal(W, keep, mu):
    """Row-wise reconstruction-error signal Σ_{j pruned} W_ij μ_j."""
    return ((W * ~keep) * mu[None, :]).sum(dim=1)


@pytest.mark.parametrize("kw", [dict(sparsity=0.5), dict(sparsity=0.7), dict(nm="2:4"), dict(nm="4:8")])
def test_every_row_keeps_the_target_count_or_pattern(kw):
    W, G, mu = _problem()
    res = solve("dsnot", W, G, x_mean=mu, **kw)
    assert res.extras["swaps"] > 0  # the cycles did change the mask
    if "nm" in kw:
        n, m = map(int, kw["nm"].split(":"))
        assert (res.mask.reshape(W.shape[0], -1, m).sum(-1) == n).all()
    else:
        assert (res.mask.sum(1) == W.shape[1] - round(kw["sparsity"] * W.shape[1])).all()


@pytest.mark.parametrize("kw", [dict(sparsity=0.5), dict(nm="2:4")])
def test_no_cycles_or_an_unreachable_threshold_give_wandas_mask(kw):
    W, G, mu = _problem(1)
    wanda = solve("wanda", W, G, **kw)
    for extra in (dict(max_cycles=0), dict(update_threshold=1e12)):
        res = solve("dsnot", W, G, x_mean=mu, **kw, **extra)
        assert torch.equal(res.mask, wanda.mask) and torch.equal(res.weight, wanda.weight)
        assert res.extras["swaps"] == 0


def test_weights_are_never_updated():
    W, G, mu = _problem(2)
    res = solve("dsnot", W, G, x_mean=mu, sparsity=0.6)
    assert torch.equal(res.weight, W * res.mask)


def test_with_the_sign_check_every_rows_error_signal_shrinks():
    """Unstructured with same_sign: each swap moves e_i towards 0 without crossing it, so |e_i|
    can only fall below Wanda's, in every row."""
    for seed in range(3):
        W, G, mu = _problem(seed)
        wanda = solve("wanda", W, G, sparsity=0.5)
        res = solve("dsnot", W, G, x_mean=mu, sparsity=0.5, same_sign=True)
        before, after = _signal(W, wanda.mask, mu), _signal(W, res.mask, mu)
        assert (after.abs() <= before.abs() + 1e-6).all()
        assert (after.abs() < before.abs()).float().mean() > 0.5
        torch.testing.assert_close(res.extras["recon_error"], after, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(res.extras["recon_error_initial"], before, rtol=1e-4, atol=1e-5)


def test_official_defaults_reduce_the_error_signal_on_most_rows():
    """Without the sign check (the official unstructured default) a swap may overshoot, so no row
    is guaranteed; the signal still falls on most rows and by a large factor on average."""
    for seed in range(3):
        W, G, mu = _problem(seed, cols=256)
        wanda = solve("wanda", W, G, sparsity=0.5)
        res = solve("dsnot", W, G, x_mean=mu, sparsity=0.5)
        before, after = _signal(W, wanda.mask, mu).abs(), _signal(W, res.mask, mu).abs()
        assert (after <= before).float().mean() >= 0.7
        assert after.mean() < 0.5 * before.mean()


def test_nm_checks_the_sign_by_default_and_keeps_each_rows_sign():
    W, G, mu = _problem(3)
    wanda = solve("wanda", W, G, nm="2:4")
    res = solve("dsnot", W, G, x_mean=mu, nm="2:4")
    assert DsnotConfig(nm="2:4").sign_check and not DsnotConfig().sign_check
    before, after = _signal(W, wanda.mask, mu), _signal(W, res.mask, mu)
    assert torch.equal(torch.sign(after), torch.sign(before))
    assert after.abs().mean() < before.abs().mean()


def test_other_initial_masks():
    W, G, mu = _problem(4)
    mag = solve("dsnot", W, G, x_mean=mu, initial="magnitude", max_cycles=0)
    per_row_mag = torch.ones_like(W, dtype=torch.bool).scatter_(1, W.abs().argsort(dim=1, stable=True)[:, :64], False)
    assert torch.equal(mag.mask, per_row_mag)
    sgpt = solve("dsnot", W, G, x_mean=mu, initial="sparsegpt", nm="2:4")
    assert sgpt.damping is not None and (sgpt.mask.reshape(32, -1, 4).sum(-1) == 2).all()


def test_layer_config_skips_the_chosen_role():
    dsnot = get_method("dsnot")
    cfg = dsnot.make_config({"sparsity": 0.5})
    assert cfg.skip_layer == "mlp"
    assert dsnot.config_for(cfg, "mlp") == dataclasses.replace(cfg, max_cycles=0)
    assert dsnot.config_for(cfg, "attn") is cfg
    none = dsnot.make_config({"skip_layer": "none"})
    assert dsnot.config_for(none, "mlp") is none and dsnot.config_for(none, "attn") is none
    attn = dsnot.make_config({"skip_layer": "attn"})
    assert dsnot.config_for(attn, "attn").max_cycles == 0 and dsnot.config_for(attn, "mlp").max_cycles == 50


def test_the_threshold_scale_follows_threshold_tokens():
    """The threshold applies to Σ_pruned W μ · threshold_tokens: scaling both leaves the mask alone."""
    W, G, mu = _problem(5)
    a = solve("dsnot", W, G, x_mean=mu, update_threshold=0.2, threshold_tokens=2048)
    b = solve("dsnot", W, G, x_mean=mu, update_threshold=0.1, threshold_tokens=1024)
    assert a.extras["swaps"] > 0 and torch.equal(a.mask, b.mask)


@pytest.mark.parametrize("kw,match", [
    (dict(initial="sgpt"), r"initial='sgpt'.*wanda"),
    (dict(max_cycles=-1), r"max_cycles=-1"),
    (dict(update_threshold=-0.1), r"update_threshold=-0.1"),
    (dict(pow_of_var_regrowing=float("inf")), r"pow_of_var_regrowing=inf"),
    (dict(same_sign="yes"), r"same_sign='yes'"),
    (dict(threshold_tokens=0), r"threshold_tokens=0"),
    (dict(skip_layer="self_attn"), r"skip_layer='self_attn'.*attn"),
    (dict(nm="2:4", sparsity=0.5), r"either sparsity or nm"),
])
def test_bad_configs_name_the_field(kw, match):
    W, G, mu = _problem()
    with pytest.raises(ReproError, match=match):
        solve("dsnot", W, G, x_mean=mu, **kw)


def test_missing_mean_is_refused_with_the_fix():
    W, G, _ = _problem()
    with pytest.raises(ReproError, match=r"driver must pass x_mean"):
        solve("dsnot", W, G, sparsity=0.5)
