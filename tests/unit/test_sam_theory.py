"""SAM statistics: the closed form of reprise.sam.theory against the simulators and the orderings of §5.5."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from reprise.io import ReproError
from reprise.sam import theory
from reprise.sam.experiments import kernel_problem, linear_problem
from reprise.sam.simulate import log_grid, mc_components, simulate_kernel, simulate_least_squares

KEY = ["rho", "risk", "component", "iteration"]


def _agreement(frame: pd.DataFrame) -> pd.DataFrame:
    """Closed form beside the Monte-Carlo estimate of the same (ρ, risk, component, t), un-normalised SAM and GD."""
    frame = frame[frame.method != "sam_normalised"]
    cf = frame[frame.source == "closed_form"].set_index(KEY)["value"].rename("closed")
    mc = frame[frame.source == "monte_carlo"].set_index(KEY)[["value", "stderr"]]
    joined = mc.join(cf, how="inner")
    assert len(joined) == len(cf) == len(mc)
    return joined


def _within(joined: pd.DataFrame) -> pd.Series:
    """Within 3 standard errors (plus rounding) or within §5.5's 5 % of the closed form."""
    diff = (joined.value - joined.closed).abs()
    return (diff <= 3 * joined.stderr + 1e-9 * np.maximum(1.0, joined.closed.abs())) | (diff <= 0.05 * joined.closed.abs())


@pytest.fixture(scope="module")
def fig1():
    from reprise.experiments import run_experiment

    return run_experiment("sam.fig1", {}, 0)  # the §5.5 smoke values: n=200, p=100, σ=0.5, η=0.5, ρ∈{0, .5, 1}, R=200


@pytest.fixture(scope="module")
def fig2():
    from reprise.experiments import run_experiment

    return run_experiment("sam.fig2", {"iterations": 300}, 0)


@pytest.mark.parametrize("name", ["fig1", "fig2"])
def test_closed_form_matches_monte_carlo(name, request):
    joined = _agreement(request.getfixturevalue(name))
    ok = _within(joined)
    assert ok.all(), joined[~ok]
    # and the 3-standard-error criterion alone holds everywhere past t = 0 (t = 0 is deterministic)
    late = joined[joined.index.get_level_values("iteration") > 0]
    assert ((late.value - late.closed).abs() <= 3 * late.stderr).all()
    assert set(joined.index.get_level_values("risk")) == {"in_sample", "out_of_sample"}


@pytest.mark.parametrize("name", ["fig1", "fig2"])
def test_sam_has_lower_bias_and_higher_variance_at_every_t(name, request):
    frame = request.getfixturevalue(name)
    cf = frame[(frame.source == "closed_form") & (frame.risk == "in_sample")]
    table = cf.pivot_table(index="iteration", columns=["component", "rho"], values="value")
    rhos = sorted(cf.rho.unique())
    assert rhos == [0.0, 0.5, 1.0]
    for small, large in zip(rhos, rhos[1:]):  # monotone in ρ, ρ = 0 being GD
        assert (table["bias"][large] <= table["bias"][small] + 1e-15).all()
        assert (table["variance"][large] >= table["variance"][small] - 1e-15).all()
    # strictly somewhere, so the check is not vacuous
    assert (table["bias"][1.0] < table["bias"][0.0]).any() and (table["variance"][1.0] > table["variance"][0.0]).any()
    # out of sample the variance ordering is termwise too (Σ̃ᵢᵢ ≥ 0)
    out = frame[(frame.source == "closed_form") & (frame.risk == "out_of_sample") & (frame.component == "variance")]
    ov = out.pivot_table(index="iteration", columns="rho", values="value")
    assert (ov[1.0] >= ov[0.0] - 1e-15).all()


def test_noise_free_simulation_equals_the_closed_form_bias():
    X, beta, cov = linear_problem(60, 30, 1.0, 1.0, "gaussian", seed=3)
    grid = log_grid(300, 15)
    for rho in (0.0, 0.7):
        cf = theory.least_squares_risk(X, beta, 0.0, 0.5, rho, grid, population_cov=cov)
        mc = simulate_least_squares(X, beta, 0.0, 0.5, rho, grid, n_replicates=2, seed=0, population_cov=cov)
        for risk in ("in_sample", "out_of_sample"):
            np.testing.assert_allclose(mc[risk].value["bias"], cf[risk].bias, rtol=1e-9, atol=1e-13)
            np.testing.assert_allclose(mc[risk].value["variance"], 0.0, atol=1e-20)
    K, Kt, fs, ft = kernel_problem(50, 40, 0.15, 1.0, True, seed=1)
    cf = theory.kernel_risk(K, fs, 0.0, 0.5, 1.0, grid, K_test=Kt, f_star_test=ft)
    mc = simulate_kernel(K, fs, 0.0, 0.5, 1.0, grid, 2, seed=0, K_test=Kt, f_star_test=ft)
    for risk in ("in_sample", "out_of_sample"):
        np.testing.assert_allclose(mc[risk].value["bias"], cf[risk].bias, rtol=1e-7, atol=1e-12)


def test_sam_with_rho_zero_is_gd_exactly():
    X, beta, cov = linear_problem(40, 20, 1.0, 1.0, "exact", seed=0)
    grid = log_grid(100, 10)
    gd = theory.least_squares_risk(X, beta, 0.5, 0.5, 0.0, grid, population_cov=cov)
    lam = np.linalg.eigvalsh(X.T @ X / 40)
    assert np.array_equal(theory.contraction(lam, 0.5, 0.0), 1 - 0.5 * np.where(lam > 1e-12, lam, 0))
    sam0 = simulate_least_squares(X, beta, 0.5, 0.5, 0.0, grid, 5, seed=1, ascent="normalised")
    gd_mc = simulate_least_squares(X, beta, 0.5, 0.5, 0.0, grid, 5, seed=1, ascent="unnormalised")
    for c in ("bias", "variance", "total"):
        assert np.array_equal(sam0["in_sample"].value[c], gd_mc["in_sample"].value[c])
    # the "exact" design has XᵀX/n = Σ, so out-of-sample equals in-sample
    np.testing.assert_allclose(gd["out_of_sample"].total, gd["in_sample"].total, rtol=1e-10)


def test_closed_form_by_direct_recursion():
    rng = np.random.default_rng(0)
    lam = np.array([1.0, 0.5, 0.2, 0.0])
    c = rng.normal(size=4)
    eta, rho, sigma, n = 0.4, 0.8, 0.3, 50
    a = 1 - eta * lam * (1 + rho * lam)
    curves = theory.in_sample_risk(lam, c, sigma, n, eta, rho, [0, 1, 2, 7])
    for j, t in enumerate([0, 1, 2, 7]):
        assert curves.bias[j] == pytest.approx(float((lam * a ** (2 * t) * c ** 2).sum()), rel=1e-12)
        assert curves.variance[j] == pytest.approx(float(((1 - a[:3] ** t) ** 2).sum() * sigma ** 2 / n), rel=1e-12)
    assert curves.total[0] == pytest.approx(float((lam * c ** 2).sum()))


def test_unstable_step_raises_naming_eta_rho_and_the_bound():
    lam = np.array([2.0, 1.0, 0.1])
    with pytest.raises(ReproError, match=r"eta = 0\.4, rho = 1.*eta <= 0\.166667"):
        theory.check_stability(lam, 0.4, 1.0)
    with pytest.raises(ReproError, match="eta"):
        theory.in_sample_risk(lam, np.ones(3), 0.1, 10, 0.6, 0.0, [0, 1])
    with pytest.raises(ReproError, match="rho"):
        theory.check_stability(lam, 0.1, -1.0)
    assert theory.max_stable_eta(lam, 1.0) == pytest.approx(1 / 6)
    theory.check_stability(lam, 1 / 6, 1.0)  # at the bound a_max = 0 is allowed
    from reprise.experiments import run_experiment

    with pytest.raises(ReproError, match=r"sam\.fig1: params eta/rhos: unstable step: eta = 0\.9"):
        run_experiment("sam.fig1", {"eta": 0.9, "replicates": 2, "iterations": 2}, 0)


def test_mc_components_are_consistent_and_unbiased():
    rng = np.random.default_rng(5)
    b = np.array([0.3, -0.2, 0.1])
    C = np.diag([0.5, 0.2, 0.05])
    E = b + rng.normal(size=(1500, 3)) * np.sqrt(np.diag(C))
    v, s = mc_components(E)
    assert v["bias"] + v["variance"] == pytest.approx(v["total"], rel=1e-12)
    assert abs(v["bias"] - b @ b) <= 4 * s["bias"]
    assert abs(v["variance"] - np.trace(C)) <= 4 * s["variance"]
