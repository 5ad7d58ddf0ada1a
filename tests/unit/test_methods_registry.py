"""Contract every registered method honours, configs, and error messages on bad input."""
import json
import math

import pytest
import torch

from reprise.io import ReproError
from reprise.llm.methods import REGISTRY, get_method, layer_objective, solve


def _problem(seed=0, rows=8, cols=32, n=96):
    g = torch.Generator().manual_seed(seed)
    mix = torch.eye(cols) + 0.7 * torch.randn(cols, cols, generator=g) / cols ** 0.5
    X = (torch.randn(n, cols, generator=g) @ mix) * torch.exp(0.5 * torch.randn(cols, generator=g))
    W = torch.randn(rows, cols, generator=g)
    return W, X.T @ X / n, X


def test_builtin_methods_are_registered():
    assert {"identity", "rtn", "gptq", "magnitude", "wanda", "sparsegpt"} <= set(REGISTRY)
    for name, m in REGISTRY.items():
        assert m.name == name and m.kind in ("quant", "prune", "none")


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_objective_is_output_error_from_activations(name):
    W, G, X = _problem()
    res = REGISTRY[name].solve(W, G, x_mean=X.mean(0))  # ignored by the methods that do not need it
    assert res.weight.shape == W.shape and res.weight.dtype == torch.float32
    assert bool(torch.isfinite(res.weight).all())
    n = X.shape[0]
    direct = float(((X.double() @ (W - res.weight).double().T) ** 2).sum()) / n
    energy = float(((X.double() @ W.double().T) ** 2).sum()) / n
    assert res.objective == pytest.approx(direct, rel=1e-4, abs=1e-9 * energy)
    assert res.ref_energy == pytest.approx(energy, rel=1e-4)
    assert res.rel_err == pytest.approx(math.sqrt(direct / energy), rel=1e-4, abs=1e-6)
    if res.mask is not None:
        assert res.mask.dtype == torch.bool and res.mask.shape == W.shape


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_config_round_trips_through_json(name):
    Config = REGISTRY[name].Config
    cfg = Config()
    back = Config.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg and cfg.to_dict()["version"] == Config.version


def test_non_default_configs_round_trip():
    for name, kw in [("gptq", dict(bits=3, group_size=64, act_order=True, rel_damp=0.1)),
                     ("sparsegpt", dict(nm="2:4", block_size=64)), ("wanda", dict(sparsity=0.7))]:
        cfg = get_method(name).Config(**kw)
        assert get_method(name).Config.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


@pytest.mark.parametrize("name", [n for n, m in REGISTRY.items() if not m.needs_gram])
def test_methods_without_gram_accept_none(name):
    W, _, _ = _problem()
    res = solve(name, W, None)
    assert math.isnan(res.objective) and res.weight.shape == W.shape


def test_layer_objective_matches_trace_form():
    W, G, _ = _problem(1)
    D = (W - W.round()).double()
    assert layer_objective(W, W.round(), G) == pytest.approx(float(torch.trace(D @ G.double() @ D.T)))


@pytest.mark.parametrize("call,match", [
    (lambda W, G: solve("gptqq", W, G), r"unknown method 'gptqq'.*gptq"),
    (lambda W, G: solve("gptq", W, G, bitz=4), r"unknown key\(s\) 'bitz'.*bits"),
    (lambda W, G: solve("sparsegpt", W, G, nm="4:2"), r"nm='4:2'"),
    (lambda W, G: solve("wanda", W, G, nm="2-4"), r"nm='2-4'"),
    (lambda W, G: solve("magnitude", W, G, sparsity=1.0), r"sparsity=1.0"),
    (lambda W, G: solve("magnitude", W, G, sparsity=0.5, nm="2:4"), r"either sparsity or nm"),
    (lambda W, G: solve("gptq", W, G, bits=9), r"bits=9.*2 to 8"),
    (lambda W, G: solve("rtn", W, G, group_size=0), r"group_size=0"),
    (lambda W, G: solve("gptq", W, G, rel_damp=-1), r"rel_damp=-1"),
    (lambda W, G: solve("gptq", W, G.masked_fill(torch.eye(32, dtype=torch.bool), float("nan"))), r"G .*NaN"),
    (lambda W, G: solve("gptq", W, G[:16, :16]), r"G has size 16 .*in_features=32"),
    (lambda W, G: solve("wanda", W[0], G), r"W must be .*2-D"),
    (lambda W, G: solve("sparsegpt", W, None), r"needs the Gram"),
    (lambda W, G: solve("magnitude", W[:, :30], G[:30, :30], nm="2:4"), r"divisible by 4"),
    (lambda W, G: solve("dsnot", W, G), r"driver must pass x_mean .*shape \(32,\)"),
    (lambda W, G: solve("dsnot", W, G, x_mean=torch.zeros(16)), r"x_mean has shape \(16,\) .*in_features=32"),
    (lambda W, G: solve("dsnot", W, G, x_mean=torch.full((32,), float("nan"))), r"x_mean .*NaN"),
    (lambda W, G: solve("dsnot", W, G, x_mean=[0.0] * 32), r"x_mean must be a torch.Tensor"),
    (lambda W, G: solve("dsnot", W, G, x_mean=torch.zeros(32, dtype=torch.int64)), r"x_mean must be floating"),
])
def test_bad_inputs_raise_clear_errors(call, match):
    W, G, _ = _problem()
    with pytest.raises(ReproError, match=match):
        call(W, G)


def test_zero_damping_on_singular_gram_retries_in_solvers():
    W, _, X = _problem(2, n=6)  # 6 tokens, 32 inputs: G has rank 6
    G = X.T @ X / X.shape[0]
    for name in ("gptq", "sparsegpt"):
        res = solve(name, W, G, rel_damp=0.0)
        assert res.damping.retries > 0
        assert bool(torch.isfinite(res.weight).all()) and math.isfinite(res.objective)


def test_mean_and_layer_hooks_are_declared_by_registration():
    assert {n for n, m in REGISTRY.items() if m.needs_mean} >= {"dsnot"}
    assert not get_method("wanda").needs_mean and get_method("wanda").layer_config is None
    wanda = get_method("wanda")
    cfg = wanda.make_config({"sparsity": 0.6})
    assert wanda.config_for(cfg, "mlp") is cfg  # no hook: the config itself, whatever the role


def test_methods_without_mean_ignore_it_and_keep_three_argument_core_functions():
    W, G, X = _problem()
    for name in ("wanda", "sparsegpt", "gptq"):
        a, b = solve(name, W, G), solve(name, W, G, x_mean=X.mean(0))
        assert torch.equal(a.weight, b.weight)


def test_layer_config_hook_is_checked():
    dsnot = get_method("dsnot")
    cfg = dsnot.make_config({"sparsity": 0.5})
    with pytest.raises(ReproError, match="role must be one of"):
        dsnot.config_for(cfg, "embedding")
