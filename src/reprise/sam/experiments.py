"""SAM statistics (arXiv 2302.11836, Behdin & Mazumder) experiments ``sam.fig1`` … ``sam.fig5``.

Each is ``fn(params, seed) -> DataFrame`` (see :mod:`reprise.experiments`) with tidy rows and the columns

``experiment, seed, method, ascent, rho, eta, batch_size, iteration, unit, risk, component, source, value, stderr,
n_replicates``

- ``method``: ``gd`` (ρ = 0; ``sgd`` in fig5), ``sam`` (un-normalised ascent ``ε = ρ∇L``, the analysed variant),
  ``sam_normalised`` (``ε = ρ∇L/‖∇L‖``, Foret et al.'s SAM and the default of figs 4–5). ``ascent`` names the
  ascent (``none`` for ρ = 0).
- ``risk``: ``in_sample`` (``E‖X(β_t − β*)‖²/n``, resp. ``‖f_t(X) − f*(X)‖²/n``) or ``out_of_sample`` (population
  covariance, resp. a test grid); ``test``/``train`` for the networks.
- ``component``: ``bias``, ``variance``, ``total`` (figs 1–3); ``test_mse``, ``train_loss``, ``sharpness`` (fig4,
  sharpness only at the last iteration); ``test_accuracy``, ``test_loss``, ``train_loss`` (fig5, ``unit = epoch``).
- ``source``: ``closed_form`` (:mod:`reprise.sam.theory`) or ``monte_carlo`` (:mod:`reprise.sam.simulate`,
  ``stderr`` = its standard error) or ``simulation`` (one training run per seed; ``stderr`` empty — seeds are the
  workflow's replicates).

The iteration grid is thinned to about ``grid_points`` log-spaced iterations (0, 1, …, ``iterations``).

Params. Smoke and full coincide for figs 1–4 (specs/other-papers.md §5.5: "essentially the full experiments");
the keys, with their defaults:

- ``sam.fig1`` (linear regression): ``n=200, p=100, decay=1.0`` (population eigenvalues ``λ_i ∝ i^-decay``),
  ``design="gaussian"`` (rows ``N(0, Σ)``, ``X`` rescaled so ``λ_max(XᵀX/n) = 1``; ``"exact"`` gives
  ``XᵀX/n = Σ = diag(λ)`` exactly), ``beta_scale=1.0`` (``β* ~ N(0, beta_scale² I)``), ``sigma=0.5, eta=0.5,
  rhos=[0, 0.5, 1]`` (closed form + MC), ``rhos_normalised=[0.1, 0.5]`` (MC only), ``iterations=2000,
  grid_points=30, replicates=200, design_seed=0``. ``seed`` drives the noise draws (the same for every method).
  Measured: 2.1 s.
- ``sam.fig2`` (RBF kernel regression): ``n=200`` points uniform on ``[0, 1]``, target ``sin(2π·frequency·x)``
  with ``frequency=1``, ``lengthscale=0.1, normalise_kernel=True`` (K scaled so ``λ_max(K/n) = 1``, which makes
  ``eta=0.5, rhos=[0, 0.5, 1]`` satisfy ``0 ≤ a_i < 1`` as in fig1), ``sigma=0.5, rhos_normalised=[0.1, 0.5],
  iterations=1000, grid_points=30, replicates=200, n_test=400, design_seed=0``. Measured: 3.8–4.9 s.
- ``sam.fig3`` (mini-batch): fig1's (``problem="linear"``) or fig2's (``problem="kernel"``) problem and keys, with
  ``batch_size=20, replicates=50, eta=0.25, rhos=[0, 0.5, 1], rhos_normalised=[0.1]``. η is halved from fig1's
  because a 20-row batch Hessian ``H_B`` of fig1's design has ``λ_max ≈ 1.25`` on average (up to 2.8): at η = 0.5,
  ρ = 1 the batch step ``ηλ_B(1 + ρλ_B)`` is ≈ 1.4 typically and up to 5.5, far outside ``0 ≤ a < 1``; at η = 0.25
  it is ≈ 0.7 typically (η = 0.5 still runs, with a visibly noisier SAM);
  the batch (distinct rows, fresh each step) serves both the ascent and the descent. Rows: MC of the mini-batch runs,
  plus the full-batch closed form at the same η as reference (``batch_size = n``). Measured: 2.5–3.6 s.
- ``sam.fig4`` (teacher–student one-hidden-layer ReLU network): ``d=20, width=50, n=500, n_test=2000,
  teacher_width=4, noise=0.5, lr=0.05, steps=2000, rhos=[0, 0.05, 0.2], ascent="normalised", grid_points=30,
  power_iters=100, design_seed=0``; full-batch GD vs SAM (the shared optimizer over SGD) from the same init (``seed``).
  Measured: 5.9–7.6 s (the full 2000 steps; no cheaper smoke setting needed).
- ``sam.fig5`` (deep-network figure, **reduced-size substitute**: an MLP on scikit-learn's bundled
  ``load_digits`` instead of the paper's CIFAR-10 networks): ``dataset="digits", epochs=20, batch_size=32, lr=0.05,
  momentum=0.9, weight_decay=0.0, hidden=64, rhos=[0, 0.05], ascent="normalised", test_fraction=0.25,
  split_seed=0``. Measured: 2.4 s. The CIFAR-10 ResNet version is not implemented (torchvision is not installed).

Times: one call at the defaults with OMP_NUM_THREADS=1 on the 2-core development machine while it was shared
(load average ≈ 4), so upper-end figures. ``full`` differs only in the workflow's number of seeds (≥ 3) and, for
fig5, optionally more ``epochs``/``hidden``.
"""
from __future__ import annotations

from functools import partial
from typing import Any, Mapping

import numpy as np

from reprise.experiments import boolean, choice, experiment, integer, list_of, params as _validate, real
from reprise.io import ReproError
from reprise.sam import theory
from reprise.sam.simulate import (DESIGN_STREAM, log_grid, rbf_kernel, simulate_kernel, simulate_least_squares,
                                  stream_rng)

COLUMNS = ["experiment", "seed", "method", "ascent", "rho", "eta", "batch_size", "iteration", "unit", "risk", "component",
           "source", "value", "stderr", "n_replicates"]

# params: reprise.experiments' checkers; integers here also take whole floats such as 200.0, and a
# rho list may be empty or one number
_integer = partial(integer, whole_floats=True)
_RHOS = list_of(real(0.0), non_empty=False, scalar=True)


def _rows(frame_rows: list[dict], seed: int):
    import pandas as pd

    frame = pd.DataFrame(frame_rows)
    frame["seed"] = int(seed)
    for col in COLUMNS:
        if col not in frame:
            frame[col] = np.nan
    return frame[COLUMNS]


def _method(rho: float, ascent: str) -> str:
    if rho == 0:
        return "gd"
    return "sam" if ascent == "unnormalised" else "sam_normalised"


def _curve_rows(out: list, exp: str, rho: float, ascent: str, eta: float, batch: int, risk: str, iterations,
                values: Mapping[str, np.ndarray], stderrs: Mapping[str, np.ndarray] | None, source: str,
                replicates: int | None):
    for comp in ("bias", "variance", "total"):
        for j, t in enumerate(iterations):
            out.append(dict(experiment=exp, method=_method(rho, ascent), ascent="none" if rho == 0 else ascent,
                            rho=rho, eta=eta, batch_size=batch, iteration=int(t), unit="iteration", risk=risk,
                            component=comp, source=source, value=float(values[comp][j]),
                            stderr=np.nan if stderrs is None else float(stderrs[comp][j]),
                            n_replicates=replicates))


def _closed_rows(out, exp, rho, eta, batch, curves: Mapping[str, theory.RiskCurves]):
    for risk, c in curves.items():
        _curve_rows(out, exp, rho, "unnormalised", eta, batch, risk, c.iterations,
                    {"bias": c.bias, "variance": c.variance, "total": c.total}, None, "closed_form", None)


def _mc_rows(out, exp, rho, ascent, eta, batch, est):
    for risk, e in est.items():
        _curve_rows(out, exp, rho, ascent, eta, batch, risk, e.iterations, e.value, e.stderr, "monte_carlo",
                    e.n_replicates)


# --------------------------------------------------------------------------------------------------------- problems
def linear_problem(n: int, p: int, decay: float, beta_scale: float, design: str, seed: int):
    """Design ``X`` (n × p), truth ``β*`` and the population covariance ``Σ`` of fig1 (``λ_max(XᵀX/n) = 1``)."""
    rng = stream_rng(seed, DESIGN_STREAM)
    lam = np.arange(1, p + 1, dtype=np.float64) ** (-decay)
    if design == "exact":
        if n < p:
            raise ReproError(f"design 'exact' needs n >= p; got n={n}, p={p}")
        Q, _ = np.linalg.qr(rng.standard_normal((n, p)))
        X = np.sqrt(n) * Q * np.sqrt(lam)[None, :]
        cov = np.diag(lam)
    else:
        X = rng.standard_normal((n, p)) * np.sqrt(lam)[None, :]
        top = float(np.linalg.eigvalsh(X.T @ X / n).max())
        X = X / np.sqrt(top)
        cov = np.diag(lam / top)
    beta = beta_scale * rng.standard_normal(p)
    return X, beta, cov


def kernel_problem(n: int, n_test: int, lengthscale: float, frequency: float, normalise: bool, seed: int):
    """Training kernel ``K``, test kernel ``k(x_test, X)``, truth on both, for fig2 (x uniform on [0, 1])."""
    rng = stream_rng(seed, DESIGN_STREAM)
    x = np.sort(rng.uniform(0.0, 1.0, n))
    x_test = (np.arange(n_test) + 0.5) / n_test
    K = rbf_kernel(x, x, lengthscale)
    K_test = rbf_kernel(x_test, x, lengthscale)
    if normalise:
        scale = 1.0 / float(np.linalg.eigvalsh(K / n).max())
        K, K_test = K * scale, K_test * scale
    f = lambda z: np.sin(2 * np.pi * frequency * z)  # noqa: E731
    return K, K_test, f(x), f(x_test)


_LINEAR = dict(n=(200, _integer(2)), p=(100, _integer(1)), decay=(1.0, real(0.0)), beta_scale=(1.0, real(0.0)),
               design=("gaussian", choice("gaussian", "exact")), sigma=(0.5, real(0.0)),
               eta=(0.5, real(0.0, strict=True)), rhos=([0.0, 0.5, 1.0], _RHOS),
               rhos_normalised=([0.1, 0.5], _RHOS), iterations=(2000, _integer(1)), grid_points=(30, _integer(2)),
               replicates=(200, _integer(2)), design_seed=(0, _integer(0)))
_KERNEL = dict(n=(200, _integer(2)), lengthscale=(0.1, real(0.0, strict=True)), frequency=(1.0, real(0.0)),
               normalise_kernel=(True, boolean), n_test=(400, _integer(1)), sigma=(0.5, real(0.0)),
               eta=(0.5, real(0.0, strict=True)), rhos=([0.0, 0.5, 1.0], _RHOS),
               rhos_normalised=([0.1, 0.5], _RHOS), iterations=(1000, _integer(1)), grid_points=(30, _integer(2)),
               replicates=(200, _integer(2)), design_seed=(0, _integer(0)))


def _check_rhos(name, P, eigvals):
    for rho in P["rhos"]:
        try:
            theory.check_stability(eigvals, P["eta"], rho)
        except ReproError as exc:
            raise ReproError(f"{name}: params eta/rhos: {exc}") from None


def _regression(name: str, P: dict, problem: str, seed: int, batch_size: int | None):
    if problem == "linear":
        X, beta, cov = linear_problem(P["n"], P["p"], P["decay"], P["beta_scale"], P["design"], P["design_seed"])
        eig = np.linalg.eigvalsh(X.T @ X / P["n"])

        def closed(rho, grid):
            return theory.least_squares_risk(X, beta, P["sigma"], P["eta"], rho, grid, population_cov=cov)

        def mc(rho, ascent, grid):
            return simulate_least_squares(X, beta, P["sigma"], P["eta"], rho, grid, P["replicates"], seed,
                                          ascent=ascent, batch_size=batch_size, population_cov=cov)
    else:
        K, Kt, fs, ft = kernel_problem(P["n"], P["n_test"], P["lengthscale"], P["frequency"], P["normalise_kernel"],
                                       P["design_seed"])
        eig = np.linalg.eigvalsh(K / P["n"])

        def closed(rho, grid):
            return theory.kernel_risk(K, fs, P["sigma"], P["eta"], rho, grid, K_test=Kt, f_star_test=ft)

        def mc(rho, ascent, grid):
            return simulate_kernel(K, fs, P["sigma"], P["eta"], rho, grid, P["replicates"], seed, ascent=ascent,
                                   K_test=Kt, f_star_test=ft, batch_size=batch_size)

    _check_rhos(name, P, np.maximum(eig, 0.0))
    grid = log_grid(P["iterations"], P["grid_points"])
    n = P["n"]
    rows: list[dict] = []
    for rho in P["rhos"]:
        _closed_rows(rows, name, rho, P["eta"], n, closed(rho, grid))
        _mc_rows(rows, name, rho, "unnormalised", P["eta"], batch_size or n, mc(rho, "unnormalised", grid))
    for rho in P["rhos_normalised"]:
        if rho > 0:
            _mc_rows(rows, name, rho, "normalised", P["eta"], batch_size or n, mc(rho, "normalised", grid))
    return rows


# ------------------------------------------------------------------------------------------------------ experiments
@experiment("sam.fig1")
def fig1(params: Mapping[str, Any], seed: int):
    """Linear regression: bias/variance/total risk vs iteration, GD vs SAM, closed form and Monte-Carlo."""
    P = _validate("sam.fig1", params, _LINEAR)
    return _rows(_regression("sam.fig1", P, "linear", seed, None), seed)


@experiment("sam.fig2")
def fig2(params: Mapping[str, Any], seed: int):
    """RBF kernel regression of sin(2πx) on [0, 1]: the same curves in function space (H → K/n)."""
    P = _validate("sam.fig2", params, _KERNEL)
    return _rows(_regression("sam.fig2", P, "kernel", seed, None), seed)


@experiment("sam.fig3")
def fig3(params: Mapping[str, Any], seed: int):
    """Mini-batch GD vs SAM (one batch for ascent and descent), Monte-Carlo, with the full-batch closed form."""
    params = dict(params)
    problem = choice("linear", "kernel")("sam.fig3: params['problem']", params.pop("problem", "linear"))
    base = dict(_LINEAR if problem == "linear" else _KERNEL)
    base.update(batch_size=(20, _integer(1)), replicates=(50, _integer(2)), eta=(0.25, real(0.0, strict=True)),
                rhos_normalised=([0.1], _RHOS))
    P = _validate("sam.fig3", params, base)
    if P["batch_size"] > P["n"]:
        raise ReproError(f"sam.fig3: param 'batch_size' = {P['batch_size']} exceeds n = {P['n']}")
    rows = _regression("sam.fig3", P, problem, seed, P["batch_size"])
    return _rows(rows, seed)  # the closed-form rows are the full-batch reference (batch_size = n)


@experiment("sam.fig4")
def fig4(params: Mapping[str, Any], seed: int):
    """Teacher–student one-hidden-layer ReLU net: test error vs iteration (GD vs SAM) and the final sharpness."""
    from reprise.sam.network import teacher_student_data, train_teacher_student

    spec = dict(d=(20, _integer(1)), width=(50, _integer(1)), n=(500, _integer(1)), n_test=(2000, _integer(1)),
                teacher_width=(4, _integer(1)), noise=(0.5, real(0.0)), lr=(0.05, real(0.0, strict=True)),
                steps=(2000, _integer(1)), rhos=([0.0, 0.05, 0.2], _RHOS),
                ascent=("normalised", choice("normalised", "unnormalised")), grid_points=(30, _integer(2)),
                power_iters=(100, _integer(1)), design_seed=(0, _integer(0)))
    P = _validate("sam.fig4", params, spec)
    data = teacher_student_data(P["d"], P["n"], P["n_test"], P["teacher_width"], P["noise"], P["design_seed"])
    grid = log_grid(P["steps"], P["grid_points"])
    rows = []
    for rho in P["rhos"]:
        trace = train_teacher_student(data, P["width"], P["lr"], P["steps"], rho, seed, grid, ascent=P["ascent"],
                                      power_iters=P["power_iters"])
        base = dict(experiment="sam.fig4", method=_method(rho, P["ascent"]),
                    ascent="none" if rho == 0 else P["ascent"], rho=rho, eta=P["lr"], batch_size=P["n"],
                    unit="iteration", source="simulation", stderr=np.nan, n_replicates=1)
        for comp, risk in (("test_mse", "test"), ("train_loss", "train")):
            for t, v in zip(trace.iterations, trace.metrics[comp]):
                rows.append(dict(base, iteration=t, risk=risk, component=comp, value=v))
        rows.append(dict(base, iteration=int(P["steps"]), risk="train", component="sharpness", value=trace.sharpness))
    return _rows(rows, seed)


@experiment("sam.fig5")
def fig5(params: Mapping[str, Any], seed: int):
    """Deep-network figure at reduced size (load_digits MLP, a labelled substitute): SGD vs SAM accuracy per epoch."""
    from reprise.sam.network import train_digits_mlp

    spec = dict(dataset=("digits", choice("digits")), epochs=(20, _integer(1)), batch_size=(32, _integer(1)),
                lr=(0.05, real(0.0, strict=True)), momentum=(0.9, real(0.0)), weight_decay=(0.0, real(0.0)),
                hidden=(64, _integer(1)), rhos=([0.0, 0.05], _RHOS),
                ascent=("normalised", choice("normalised", "unnormalised")),
                test_fraction=(0.25, real(0.0, strict=True)), split_seed=(0, _integer(0)))
    P = _validate("sam.fig5", params, spec)
    rows = []
    for rho in P["rhos"]:
        trace = train_digits_mlp(rho, P["epochs"], P["batch_size"], P["lr"], P["momentum"], P["hidden"], seed,
                                 split_seed=P["split_seed"], test_fraction=P["test_fraction"],
                                 weight_decay=P["weight_decay"], ascent=P["ascent"])
        base = dict(experiment="sam.fig5", method="sgd" if rho == 0 else _method(rho, P["ascent"]),
                    ascent="none" if rho == 0 else P["ascent"], rho=rho, eta=P["lr"], batch_size=P["batch_size"],
                    unit="epoch", source="simulation", stderr=np.nan, n_replicates=1)
        for comp in ("test_accuracy", "test_loss", "train_loss"):
            risk = "train" if comp.startswith("train") else "test"
            for t, v in zip(trace.iterations, trace.metrics[comp]):
                rows.append(dict(base, iteration=t, risk=risk, component=comp, value=v))
    frame = _rows(rows, seed)
    frame["note"] = "reduced-size substitute: load_digits MLP for the paper's deep-network (CIFAR-10) figure"
    return frame
from reprise.sam import msam as _msam  # noqa: E402,F401  (registers sam.msam_grid)
