"""Data for the sMTL experiments: the paper's simulation designs, the synthetic "FSCV-like"
substitute for the real-data figures, and the OSF downloads of the real data (full scale only).

Every generator takes an explicit ``seed`` and uses only its own ``numpy.random.default_rng``.

* :func:`simulate_multitask` — the 2024 simulations (``sMTL_Paper_2024/Figures/Simulations``,
  ``sparseParam_test``): exponential correlation ``Σ_ij = ρ^|i−j|`` (ρ = 0.5), supports on every
  other feature (the scripts skip neighbours because of the correlation), ``r_card = round(r·r_p)``
  nonzeros per task (r = 20, r_p = 0.5 → 10); **q = 0 gives disjoint supports** (task after task
  along the features) and **q > 0 draws each task's support from a pool of max(q, r_card)
  features**, so q = r_card means one shared support and larger q more heterogeneity (the
  scripts' comment: "larger q means more heterogeneity"). Coefficients: a mean per feature,
  ±U(0.2, 0.5), drawn once (the scripts fix it with a separate seed across replicates; here
  ``coef_seed``), plus a task effect N(0, betaVar = 50), times the support indicator; no
  intercept. Noise variance per task U(τ/2, 2τ) with τ = 1. One design shared by the tasks
  (the scripts' multi-task version draws one X and K outcomes), 2n rows split in half into
  training and test rows. K = 5 tasks (``sparseParam_test`` has K = 5 and the multi-task fits use
  all of them).
* :func:`simulate_demo` — the exact-solver demo (``Exact Solvers/demo.jl``): ρ = 0.4, s_true − q
  shared features, q task-specific ones per task, U(0, 1) values scaled to unit norm per task,
  noise scaled to an SNR in dB, y centred by its training mean. Also the Fig 1 toy
  (2 shared + 2 task-specific features).
* :func:`fscv_like` — **a synthetic substitute, not the FSCV recordings**: smooth, highly
  correlated covariates (AR(1), ρ = 0.95, p = 100) standing in for voltammogram points, K = 4
  tasks with their own designs (electrodes) and partly shared supports.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from reprise.io import ReproError, download, file_digest
from reprise.mtl._core import check_int, check_nonneg


@dataclass
class MultiTaskData:
    """Training and test tasks with the true coefficients."""

    Xs: list[np.ndarray]
    ys: list[np.ndarray]
    Xs_test: list[np.ndarray]
    ys_test: list[np.ndarray]
    coef: np.ndarray              # (K, p)
    intercept: np.ndarray         # (K,)
    noise_sd: np.ndarray          # (K,)
    info: dict = field(default_factory=dict)

    @property
    def support(self) -> np.ndarray:
        return self.coef != 0


def _ar1(rng: np.random.Generator, n: int, p: int, rho: float) -> np.ndarray:
    """Rows with unit variances and correlation ρ^|i−j| (a stationary AR(1) along the columns)."""
    X = np.empty((n, p))
    X[:, 0] = rng.standard_normal(n)
    innov = np.sqrt(1 - rho ** 2)
    for j in range(1, p):
        X[:, j] = rho * X[:, j - 1] + innov * rng.standard_normal(n)
    return X


def _check_rho(rho) -> float:
    rho = check_nonneg("rho", rho)
    if rho >= 1:
        raise ReproError(f"rho={rho} must be in [0, 1) (the correlation of neighbouring features)")
    return rho


def _check_seed(seed) -> int:
    return check_int("seed", seed, 0, hint=" (pass an explicit integer seed)")


def multitask_supports(rng: np.random.Generator, K: int, p: int, q: int, r_card: int,
                       common_size: int = 0) -> np.ndarray:
    """(K, p) bool supports of the 2024 simulations (see the module docstring)."""
    Z = np.zeros((K, p), dtype=bool)
    common = 2 * np.arange(common_size)
    start = 2 * common_size
    if q == 0:
        need = start + 2 * r_card * K - 1
        if need > p:
            raise ReproError(f"q=0 (disjoint supports) needs p >= {need} for K={K}, r_card={r_card}, "
                             f"common_size={common_size}; got p={p}: raise p or lower r / r_p")
        for k in range(K):
            Z[k, start + 2 * r_card * k + 2 * np.arange(r_card)] = True
    else:
        pool_size = max(q, r_card)
        pool = start + 2 * np.arange(pool_size)
        if pool[-1] >= p:
            raise ReproError(f"q={q} needs p >= {pool[-1] + 1} (a pool of {pool_size} features on every other "
                             f"column); got p={p}: raise p or lower q")
        for k in range(K):
            Z[k, rng.choice(pool, size=r_card, replace=False)] = True
    Z[:, common] = True
    return Z


def simulate_multitask(seed: int, *, K: int = 5, p: int = 250, n: int = 50, n_test: int | None = None,
                       q: int = 0, r: int = 20, r_p: float = 0.5, common_size: int = 0, rho: float = 0.5,
                       beta_mean_range: tuple[float, float] = (0.2, 0.5), beta_var: float = 50.0,
                       tau: float = 1.0, error_mult: float = 2.0, shared_design: bool = True,
                       coef_seed: int | None = None) -> MultiTaskData:
    """One replicate of the 2024 simulation design (module docstring); defaults are the paper's."""
    seed = _check_seed(seed)
    K = check_int("K", K, 1)
    p = check_int("p", p, 1)
    n = check_int("n", n, 2)
    n_test = n if n_test is None else check_int("n_test", n_test, 1)
    q = check_int("q", q, 0)
    r = check_int("r", r, 1)
    r_p = check_nonneg("r_p", r_p)
    if not 0 < r_p <= 1:
        raise ReproError(f"r_p={r_p} must be in (0, 1] (the share of the r candidate features each task uses)")
    common_size = check_int("common_size", common_size, 0)
    rho = _check_rho(rho)
    lo, hi = (check_nonneg("beta_mean_range", v) for v in beta_mean_range)
    if lo > hi:
        raise ReproError(f"beta_mean_range={beta_mean_range} must be (low, high) with low <= high")
    beta_var, tau = check_nonneg("beta_var", beta_var), check_nonneg("tau", tau)
    error_mult = check_nonneg("error_mult", error_mult)
    if error_mult < 1:
        raise ReproError(f"error_mult={error_mult} must be >= 1 (noise variances lie in [tau/m, tau*m])")
    rng = np.random.default_rng(seed)
    r_card = max(1, int(np.floor(r * r_p + 0.5)))
    Z = multitask_supports(rng, K, p, q, r_card, common_size)
    mrng = rng if coef_seed is None else np.random.default_rng(check_int("coef_seed", coef_seed, 0))
    means = mrng.choice([-1.0, 1.0], size=p) * mrng.uniform(lo, hi, size=p)
    coef = (means[None, :] + np.sqrt(beta_var) * rng.standard_normal((K, p))) * Z
    noise_sd = np.sqrt(rng.uniform(tau / error_mult, tau * error_mult, size=K))
    if shared_design:
        X_all = _ar1(rng, n + n_test, p, rho)
        designs = [X_all] * K
    else:
        designs = [_ar1(rng, n + n_test, p, rho) for _ in range(K)]
    Xs, ys, Xt, yt = [], [], [], []
    for k in range(K):
        X = designs[k]
        y = X @ coef[k] + noise_sd[k] * rng.standard_normal(n + n_test)
        Xs.append(X[:n].copy())
        ys.append(y[:n])
        Xt.append(X[n:].copy())
        yt.append(y[n:])
    info = dict(generator="simulate_multitask", K=K, p=p, n=n, n_test=n_test, q=q, r=r, r_p=r_p, r_card=r_card,
                common_size=common_size, rho=rho, beta_var=beta_var, tau=tau, error_mult=error_mult,
                shared_design=shared_design, seed=seed, coef_seed=coef_seed)
    return MultiTaskData(Xs, ys, Xt, yt, coef, np.zeros(K), noise_sd, info)


def simulate_demo(seed: int, *, K: int = 5, p: int = 200, n: int = 500, n_test: int | None = None,
                  s_true: int = 5, q: int = 1, rho: float = 0.4, snr_db: float = 40.0) -> MultiTaskData:
    """The exact-solver demo's design (module docstring); defaults are the demo's."""
    seed = _check_seed(seed)
    K, p, n = check_int("K", K, 1), check_int("p", p, 1), check_int("n", n, 2)
    n_test = n if n_test is None else check_int("n_test", n_test, 1)
    s_true = check_int("s_true", s_true, 1)
    q = check_int("q", q, 0, s_true, hint=" (the task-specific part of each task's s_true features)")
    rho = _check_rho(rho)
    if isinstance(snr_db, bool) or not isinstance(snr_db, (int, float)) or not np.isfinite(snr_db):
        raise ReproError(f"snr_db={snr_db!r} must be a finite number (decibels)")
    if s_true + q * K > p:
        raise ReproError(f"p={p} is too small for s_true={s_true}, q={q}, K={K}: the task-specific features "
                         f"end at {s_true + q * K}; raise p")
    rng = np.random.default_rng(seed)
    Z = np.zeros((K, p), dtype=bool)
    Z[:, : s_true - q] = True
    for k in range(K):
        Z[k, s_true + q * k: s_true + q * (k + 1)] = True
    Xs, ys, Xt, yt, sds, icpt = [], [], [], [], [], []
    coef = np.zeros((K, p))
    for k in range(K):
        X, X_test = _ar1(rng, n, p, rho), _ar1(rng, n_test, p, rho)
        beta = rng.uniform(0, 1, size=p) * Z[k]
        beta /= np.linalg.norm(beta)
        noise = rng.standard_normal(n)
        sigma = np.linalg.norm(X @ beta) / (10 ** (snr_db / 20) * np.linalg.norm(noise))
        y = X @ beta + sigma * noise
        b = y.mean()
        Xs.append(X)
        ys.append(y - b)
        Xt.append(X_test)
        yt.append(X_test @ beta + sigma * rng.standard_normal(n_test) - b)
        coef[k] = beta
        icpt.append(-b)
        sds.append(sigma)
    info = dict(generator="simulate_demo", K=K, p=p, n=n, n_test=n_test, s_true=s_true, q=q, rho=rho,
                snr_db=snr_db, seed=seed)
    return MultiTaskData(Xs, ys, Xt, yt, coef, np.array(icpt), np.array(sds), info)


def fscv_like(seed: int, *, K: int = 4, p: int = 100, n: int = 100, n_test: int | None = None,
              rho: float = 0.95, support_size: int = 10, q: int = 15, beta_mean_range=(0.5, 1.0),
              beta_var: float = 0.25, tau: float = 1.0) -> MultiTaskData:
    """Synthetic stand-in for the FSCV data (module docstring): ``simulate_multitask`` with AR(1)
    ρ = 0.95 covariates, one design per task, ``support_size`` nonzeros per task drawn from a pool
    of ``q`` features (partly shared), coefficients 0.5–1 in size with task variation 0.25."""
    data = simulate_multitask(seed, K=K, p=p, n=n, n_test=n_test, q=q, r=support_size, r_p=1.0, rho=rho,
                              beta_mean_range=beta_mean_range, beta_var=beta_var, tau=tau, error_mult=2.0,
                              shared_design=False)
    data.info.update(generator="fscv_like", substitute_for="FSCV (osf.io/tb8fx)", support_size=support_size)
    return data


# --------------------------------------------------------------------------- OSF downloads (full scale)

#: OSF landing pages (specs/other-papers.md §6.5) and the download of each project's files as a zip
OSF_PROJECTS = {"fscv": "tb8fx", "breast_cancer": "k6ynp"}


def osf_zip_url(node: str) -> str:
    return f"https://files.osf.io/v1/resources/{node}/providers/osfstorage/?zip="


def _fetch_osf(key: str, dest, url: str | None, sha256: str | None, timeout: float) -> Path:
    node = OSF_PROJECTS[key]
    if not isinstance(dest, (str, os.PathLike)) or not str(dest):
        raise ReproError(f"fetch_{key}: dest={dest!r} must be a file path (or an existing directory)")
    if sha256 is not None and (not isinstance(sha256, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", sha256)):
        raise ReproError(f"fetch_{key}: sha256={sha256!r} must be 64 hexadecimal characters (or None)")
    url = osf_zip_url(node) if url is None else url
    if not isinstance(url, str) or not re.match(r"^(https?|file)://", url):
        raise ReproError(f"fetch_{key}: url={url!r} must be an http(s):// or file:// URL")
    timeout = check_nonneg("timeout", timeout)
    target = Path(dest)
    if target.is_dir():
        target = target / f"{key}_osf_{node}.zip"
    if target.exists() and (sha256 is None or file_digest(target) == sha256.lower()):
        return target
    download(url, target, expect={"sha256": sha256} if sha256 is not None else None, timeout=timeout,
             what=f"fetch_{key}", hint=f"the real-data analysis needs network access (full scale only): fetch it "
                                       f"where the network is reachable (landing page https://osf.io/{node}/) and "
                                       f"pass the file")
    return target


def fetch_fscv(dest, *, url: str | None = None, sha256: str | None = None, timeout: float = 120.0) -> Path:
    """Download the FSCV dopamine data (Loewinger et al. 2022, OSF project tb8fx) as a zip to
    ``dest`` (a file path, or a directory to hold ``fscv_osf_tb8fx.zip``), checking ``sha256``
    when given. Written atomically; a failed download or a checksum mismatch leaves nothing.
    An existing file with the right checksum (or any existing file when no checksum is given) is
    kept. Needs network access (full scale only)."""
    return _fetch_osf("fscv", dest, url, sha256, timeout)


def fetch_breast_cancer(dest, *, url: str | None = None, sha256: str | None = None,
                        timeout: float = 120.0) -> Path:
    """Download the pre-processed curatedBreastData studies (OSF project k6ynp); as
    :func:`fetch_fscv`."""
    return _fetch_osf("breast_cancer", dest, url, sha256, timeout)


def simulate_fig1(seed: int, *, K: int = 2, p: int = 50, n: int = 25, n_test: int | None = None, q: int = 14,
                  r_card: int = 7, common_size: int = 0, rho: float = 0.5, sigma2: float = 1.0) -> MultiTaskData:
    """The Fig 1 toy (``sMTL_Paper_2024/Figures/Figure1``): one shared design with exponential
    correlation ρ = 0.5, supports as in :func:`multitask_supports` (the script draws r_card = 7 of a
    pool of 14 every-other features per task; ``common_size`` shared plus ``q = 0`` disjoint gives
    "s_c shared + r_card task-specific"), coefficients +1 in even tasks and −1 in odd ones (so a
    β̄ penalty pulls them towards 0), noise variance 1. Defaults are the script's (K=2, n=25, p=50)."""
    seed = _check_seed(seed)
    K, p, n = check_int("K", K, 1), check_int("p", p, 1), check_int("n", n, 2)
    n_test = n if n_test is None else check_int("n_test", n_test, 1)
    q, r_card = check_int("q", q, 0), check_int("r_card", r_card, 1)
    common_size = check_int("common_size", common_size, 0)
    rho, sigma2 = _check_rho(rho), check_nonneg("sigma2", sigma2)
    rng = np.random.default_rng(seed)
    Z = multitask_supports(rng, K, p, q, r_card, common_size)
    coef = np.where(Z, np.where(np.arange(K)[:, None] % 2 == 0, 1.0, -1.0), 0.0)
    X = _ar1(rng, n + n_test, p, rho)
    Xs, ys, Xt, yt = [], [], [], []
    for k in range(K):
        y = X @ coef[k] + np.sqrt(sigma2) * rng.standard_normal(n + n_test)
        Xs.append(X[:n].copy())
        ys.append(y[:n])
        Xt.append(X[n:].copy())
        yt.append(y[n:])
    info = dict(generator="simulate_fig1", K=K, p=p, n=n, n_test=n_test, q=q, r_card=r_card,
                common_size=common_size, rho=rho, sigma2=sigma2, seed=seed)
    return MultiTaskData(Xs, ys, Xt, yt, coef, np.zeros(K), np.full(K, np.sqrt(sigma2)), info)
