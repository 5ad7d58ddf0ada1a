"""Baselines of sMTL's real-data figures (Figs 5-7), pure numpy.

The official scripts (``sMTL_Paper_2024/Figures/Figure6/fscv_multiStudy_IHT_cf_MT.R``,
``Figure7/sparse_MT_breast_random.R``) fit the group penalties on the **block-diagonal stacked
problem**: design ``bdiag(X_1, …, X_K)``, outcome the per-task centred ``y_k`` stacked, no intercept,
groups = one feature across the K tasks (``groupIDs <- rep(1:numCovs, K)``). On the prepared data
(:func:`reprise.mtl._core.prepare`: centred, standardised per task) the loss is

    ``L(B) = Σ_k ‖y_k − X_kβ_k‖² / (2N)``,  ``N = Σ_k n_k``,

with B (K, p) and the group of feature j the column ``B[:, j]``.

* :class:`SparseGroupLasso` — sparsegl's penalty ``λ[(1−α) w Σ_j ‖B[:, j]‖₂ + α Σ |B|]``,
  ``w = √K`` (sparsegl's default group weight √(group size)); monotone FISTA (Beck & Teboulle
  2009, MFISTA) with the exact SGL prox: soft-threshold by ``tλα`` then group soft-threshold by
  ``tλ(1−α)w`` (Simon, Friedman, Hastie, Tibshirani 2013, eq. 8).
* :class:`GroupExponentialLasso` — grpreg's ``penalty = "gel"`` (Breheny 2015, Biometrics 71:731):
  ``Σ_j (λ_j²/τ)(1 − exp(−τ θ_j/λ_j))`` with ``θ_j = ‖B[:, j]‖₁``, ``λ_j = λ w``, ``w = √K``
  (grpreg's default ``group.multiplier``), ``τ = 1/3`` (grpreg's default). Its derivative
  ``ρ'(θ) = λ_j exp(−τθ/λ_j)``. Group coordinate descent with a local linear approximation: at
  group j the concave penalty is majorised by its tangent at the current θ_j, which makes every
  entry of the group a weighted lasso coordinate (tasks are separable in the loss), so each group
  update is an exact majorise-minimise step and the objective never increases.
* :func:`tune_path` — the scripts' tuning: a decreasing λ path (warm starts), K-fold CV within
  tasks by multi-task RMSE (the scripts use sparsegl's / grpreg's CV error on the stacked rows),
  restricted to the path points whose mean support size per task is at most ``s_max`` (the
  scripts' ``sum(coef != 0) / K <= rho``); refit at the best λ on all rows. The path stops after
  ``PATH_PATIENCE`` = 5 consecutive points above the cap on all rows (they cannot be chosen), and
  the solvers work on active sets (SGL: a KKT-checked working set of groups; GEL: sweeps over the
  nonzero groups and the zero groups that violate their condition), which keeps p = 1000 tractable.

Pooled ("merged") L0 and ridge reuse :class:`~reprise.mtl.SparseMultiTask` on the stacked rows
(one task); independent per-task L0 is ``SparseMultiTask`` with λ₂ = λ_z = 0 (method
``l0_independent`` of :mod:`reprise.mtl.experiments`).
"""
from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator

from reprise.io import ReproError
from reprise.mtl._core import TaskData, check_nonneg, check_tasks, multitask_rmse, prepare
from reprise.mtl.estimator import task_folds

#: grpreg's default τ of the GEL penalty
GEL_TAU = 1.0 / 3.0
#: path points beyond the support cap before the tuning path stops (the cap discards them anyway)
PATH_PATIENCE = 5


def soft_threshold(v: np.ndarray, t) -> np.ndarray:
    return np.sign(v) * np.maximum(np.abs(v) - t, 0.0)


def sgl_prox(V: np.ndarray, t_l1: float, t_group: float) -> np.ndarray:
    """argmin_B ½‖B − V‖² + t_l1 Σ|B| + t_group Σ_j ‖B[:, j]‖₂ (groups are the columns)."""
    U = soft_threshold(np.asarray(V, dtype=float), t_l1)
    norms = np.sqrt((U ** 2).sum(axis=0))
    shrink = np.where(norms > t_group, 1.0 - t_group / np.where(norms > 0, norms, 1.0), 0.0)
    return U * shrink


def _weights(data: TaskData) -> np.ndarray:
    return data.n / data.n.sum()


def stacked_loss(data: TaskData, B: np.ndarray) -> float:
    """Σ_k ‖y_k − X_kβ_k‖² / (2N) on the prepared data."""
    GB = np.einsum("kij,kj->ki", data.G, B)
    per = 0.5 * np.einsum("ki,ki->k", B, GB) - np.einsum("ki,ki->k", data.c, B) + 0.5 * data.yy
    return float(_weights(data) @ per)


def _grad(data: TaskData, B: np.ndarray) -> np.ndarray:
    return _weights(data)[:, None] * (np.einsum("kij,kj->ki", data.G, B) - data.c)


def sgl_penalty(B: np.ndarray, lam: float, alpha: float, w: float) -> float:
    return float(lam * ((1 - alpha) * w * np.sqrt((B ** 2).sum(axis=0)).sum() + alpha * np.abs(B).sum()))


def gel_penalty(B: np.ndarray, lam: float, tau: float, w: float) -> float:
    if lam == 0:
        return 0.0
    lj = lam * w
    theta = np.abs(B).sum(axis=0)
    return float((lj ** 2 / tau * (1.0 - np.exp(-tau * theta / lj))).sum())


def gel_derivative(theta, lam: float, tau: float, w: float) -> np.ndarray:
    """ρ'(θ) = λ_j exp(−τθ/λ_j), λ_j = λw: the per-entry lasso weight of the tangent majoriser."""
    lj = lam * w
    return lj * np.exp(-tau * np.asarray(theta, dtype=float) / lj)


def _group_weight(w, K: int) -> float:
    return float(np.sqrt(K)) if w is None else check_nonneg("group_weight", w)


def _restrict(data: TaskData, cols: np.ndarray) -> TaskData:
    """The prepared problem on the columns ``cols`` only (the other coefficients held at zero)."""
    return TaskData(X=[X[:, cols] for X in data.X], y=data.y, G=data.G[:, cols][:, :, cols], c=data.c[:, cols],
                    yy=data.yy, n=data.n, x_mean=data.x_mean[:, cols], x_scale=data.x_scale[:, cols],
                    y_mean=data.y_mean)


def _sgl_fista(data: TaskData, B: np.ndarray, lam: float, alpha: float, w: float, max_iter: int, tol: float):
    """Monotone FISTA on one (restricted) problem; returns (B, objective history)."""
    L = max(float(np.linalg.eigvalsh(G)[-1]) * wk for G, wk in zip(data.G, _weights(data)))
    t = 1.0 / max(L, 1e-12)
    obj = lambda M: stacked_loss(data, M) + sgl_penalty(M, lam, alpha, w)  # noqa: E731
    x, y, theta, f = B.copy(), B.copy(), 1.0, obj(B)
    hist = [f]
    for _ in range(max_iter):
        z = sgl_prox(y - t * _grad(data, y), t * lam * alpha, t * lam * (1 - alpha) * w)
        fz = obj(z)
        x_new, f_new = (z, fz) if fz <= f else (x, f)
        # stop on the gradient-mapping step |z - y| (a rejected z leaves x unchanged, so |x_new - x| cannot)
        step = float(np.abs(z - y).max())
        theta_new = 0.5 * (1 + np.sqrt(1 + 4 * theta ** 2))
        y = x_new + (theta / theta_new) * (z - x_new) + ((theta - 1) / theta_new) * (x_new - x)
        x, f, theta = x_new, f_new, theta_new
        hist.append(f)
        if step <= tol * max(1.0, float(np.abs(x).max())):
            break
    return x, hist


def _sgl_violators(data: TaskData, B: np.ndarray, lam: float, alpha: float, w: float) -> np.ndarray:
    """Zero groups whose zero-subgradient condition ‖S(∇_j, λα)‖₂ <= λ(1−α)w fails at B."""
    g = _grad(data, B)
    norms = np.sqrt((soft_threshold(g, lam * alpha) ** 2).sum(axis=0))
    zero = ~np.any(B != 0, axis=0)
    return np.flatnonzero(zero & (norms > lam * (1 - alpha) * w * (1 + 1e-9) + 1e-12))


def _sgl_solve(data: TaskData, B: np.ndarray, lam: float, alpha: float, w: float, max_iter: int, tol: float):
    """FISTA on a working set of groups (the nonzero ones and the KKT violators), grown until no
    zero group violates its optimality condition, so the result solves the full problem; every
    restricted run starts at the current point, so the history never increases."""
    B = B.copy()
    hist = [stacked_loss(data, B) + sgl_penalty(B, lam, alpha, w)]
    work = np.union1d(np.flatnonzero(np.any(B != 0, axis=0)), _sgl_violators(data, B, lam, alpha, w))
    for _ in range(data.p + 1):
        if work.size:
            Bs, h = _sgl_fista(_restrict(data, work), B[:, work], lam, alpha, w, max_iter, tol)
            B[:, work] = Bs
            hist += h[1:]
        new = _sgl_violators(data, B, lam, alpha, w)
        if new.size == 0:
            break
        work = np.union1d(work, new)
    return B, hist


def _gel_sweep(data: TaskData, B, GB, wk, diag, groups, lam, tau, w) -> float:
    """One pass of tangent-majorised group updates over ``groups``; returns the largest change."""
    change = 0.0
    for j in groups:
        v = wk * diag[:, j]
        old = B[:, j].copy()
        pen = gel_derivative(np.abs(old).sum(), lam, tau, w) if lam > 0 else 0.0
        z = v * old + wk * (data.c[:, j] - GB[:, j])
        new = np.where(v > 0, soft_threshold(z, pen) / np.where(v > 0, v, 1.0), 0.0)
        delta = new - old
        if np.any(delta):
            B[:, j] = new
            GB += data.G[:, :, j] * delta[:, None]
            change = max(change, float(np.abs(delta).max()))
    return change


def _gel_solve(data: TaskData, B: np.ndarray, lam: float, tau: float, w: float, max_iter: int, tol: float):
    """Group coordinate descent with the tangent majoriser of each group, on an active set (as
    grpreg): a sweep over the candidates (the nonzero groups and the zero groups whose condition
    max_k |∂_jk L| <= ρ'(0) = λw fails; the others would stay zero), then sweeps over the nonzero
    groups until they settle, repeated until a candidate sweep moves nothing. Returns (B, the
    objective after each sweep)."""
    B = B.copy()
    wk = _weights(data)
    GB = np.einsum("kij,kj->ki", data.G, B)
    diag = np.einsum("kjj->kj", data.G)
    obj = lambda M: stacked_loss(data, M) + gel_penalty(M, lam, tau, w)  # noqa: E731
    settled = lambda change: change <= tol * max(1.0, float(np.abs(B).max()))  # noqa: E731
    hist = [obj(B)]
    sweeps = 0
    while sweeps < max_iter:
        zero = ~np.any(B != 0, axis=0)
        viol = zero & (np.abs(wk[:, None] * (data.c - GB)).max(axis=0) > lam * w)
        candidates = np.flatnonzero(~zero | viol)
        if candidates.size == 0:
            break
        change = _gel_sweep(data, B, GB, wk, diag, candidates, lam, tau, w)
        sweeps += 1
        hist.append(obj(B))
        if settled(change):
            break
        while sweeps < max_iter:
            active = np.flatnonzero(np.any(B != 0, axis=0))
            if active.size == 0:
                break
            change = _gel_sweep(data, B, GB, wk, diag, active, lam, tau, w)
            sweeps += 1
            hist.append(obj(B))
            if settled(change):
                break
    return B, hist


def sgl_lambda_max(data: TaskData, alpha: float, w: float) -> float:
    """Smallest λ whose SGL solution is B = 0 (bisection on the zero-subgradient condition)."""
    g = np.abs(_grad(data, np.zeros((data.K, data.p))))
    if not np.any(g):
        return 0.0
    zero = lambda lam: bool(np.all(np.sqrt((soft_threshold(g, lam * alpha) ** 2).sum(axis=0))  # noqa: E731
                                   <= lam * (1 - alpha) * w + 1e-14))
    hi = float(g.max() / alpha) if alpha > 0 else float(np.sqrt((g ** 2).sum(axis=0)).max() / max(w, 1e-300))
    lo = 0.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if zero(mid) else (mid, hi)
    return hi


def gel_lambda_max(data: TaskData, w: float) -> float:
    g = np.abs(_grad(data, np.zeros((data.K, data.p))))
    return float(g.max() / max(w, 1e-300))


class _GroupBase(BaseEstimator):
    """Shared fit/predict of the stacked group-penalised estimators."""

    def _prepare(self, Xs, ys):
        Xs, ys = check_tasks(Xs, ys)
        return prepare(Xs, ys, bool(self.scale))

    def penalised_objective(self, data: TaskData, B: np.ndarray) -> float:
        """Loss plus penalty at internal coefficients B of the prepared ``data``."""
        return stacked_loss(data, B) + self._penalty(B, _group_weight(self.group_weight, data.K))

    def _store(self, data: TaskData, B: np.ndarray, hist) -> None:
        self.coef_, self.intercept_ = data.to_original(B)
        self.support_ = np.abs(B) > 0
        self.objective_path_ = np.array(hist)
        self.objective_ = float(hist[-1])
        self.n_iter_ = len(hist) - 1

    def fit(self, Xs, ys, init_coef=None):
        data = self._prepare(Xs, ys)
        B0 = np.zeros((data.K, data.p)) if init_coef is None else data.to_internal(init_coef)
        B, hist = self._solve(data, B0)
        self._store(data, B, hist)
        return self

    def predict(self, Xs) -> list[np.ndarray]:
        if not hasattr(self, "coef_"):
            from sklearn.exceptions import NotFittedError
            raise NotFittedError(f"this {type(self).__name__} is not fitted; call fit first")
        return [np.asarray(X, dtype=float) @ b + b0 for X, b, b0 in zip(Xs, self.coef_, self.intercept_)]

    def score(self, Xs, ys) -> float:
        """Minus the multi-task RMSE."""
        return -multitask_rmse(Xs, ys, self.coef_, self.intercept_)


class SparseGroupLasso(_GroupBase):
    """Sparse group lasso across tasks (module docstring). ``lam`` λ >= 0, ``alpha`` α in [0, 1]
    (1: lasso, 0: group lasso), ``group_weight`` w (default √K), ``scale`` standardise each task's
    columns (as the scripts do), ``max_iter`` 5000, ``tol`` 1e-7 (relative change of B)."""

    def __init__(self, lam=0.1, alpha=0.5, group_weight=None, scale=True, max_iter=5000, tol=1e-7):
        self.lam = lam
        self.alpha = alpha
        self.group_weight = group_weight
        self.scale = scale
        self.max_iter = max_iter
        self.tol = tol

    def _solve(self, data, B0):
        lam = check_nonneg("lam", self.lam)
        alpha = check_nonneg("alpha", self.alpha)
        if alpha > 1:
            raise ReproError(f"alpha={alpha} must be in [0, 1] (1: lasso, 0: group lasso)")
        return _sgl_solve(data, B0, lam, alpha, _group_weight(self.group_weight, data.K), int(self.max_iter),
                          float(self.tol))

    def _penalty(self, B, w):
        return sgl_penalty(B, float(self.lam), float(self.alpha), w)


class GroupExponentialLasso(_GroupBase):
    """grpreg's group exponential lasso across tasks (module docstring). ``lam`` λ >= 0,
    ``tau`` τ > 0 (default 1/3), ``group_weight`` w (default √K), ``scale``, ``max_iter`` 1000
    sweeps, ``tol`` 1e-4 (as grpreg's default ``eps``, which bounds the change of the linear
    predictor; here the largest coefficient change of a sweep, relative)."""

    def __init__(self, lam=0.1, tau=GEL_TAU, group_weight=None, scale=True, max_iter=1000, tol=1e-4):
        self.lam = lam
        self.tau = tau
        self.group_weight = group_weight
        self.scale = scale
        self.max_iter = max_iter
        self.tol = tol

    def _solve(self, data, B0):
        lam = check_nonneg("lam", self.lam)
        tau = check_nonneg("tau", self.tau)
        if tau == 0:
            raise ReproError("tau must be > 0 (grpreg's default is 1/3)")
        return _gel_solve(data, B0, lam, tau, _group_weight(self.group_weight, data.K), int(self.max_iter),
                          float(self.tol))

    def _penalty(self, B, w):
        return gel_penalty(B, float(self.lam), float(self.tau), w)


def lambda_path(est: _GroupBase, data: TaskData, n_lambda: int, ratio: float) -> np.ndarray:
    w = _group_weight(est.group_weight, data.K)
    top = sgl_lambda_max(data, float(est.alpha), w) if isinstance(est, SparseGroupLasso) else gel_lambda_max(data, w)
    return top * np.geomspace(1.0, ratio, n_lambda)


def _path_fits(est: _GroupBase, data: TaskData, lambdas, s_max: float | None = None,
               patience: int = PATH_PATIENCE) -> list[np.ndarray]:
    """Warm-started fits along ``lambdas``; with ``s_max`` the path stops once ``patience``
    consecutive points exceed a mean support of s_max per task (the tuning never selects them)."""
    B = np.zeros((data.K, data.p))
    out, over = [], 0
    for lam in lambdas:
        B, _ = est.set_params(lam=float(lam))._solve(data, B)
        out.append(B.copy())
        if s_max is not None:
            over = over + 1 if (B != 0).sum(axis=1).mean() > s_max else 0
            if over >= patience:
                break
    return out


def tune_path(est: _GroupBase, Xs, ys, *, s_max: int, n_lambda: int = 100, ratio: float = 1e-3, n_folds: int = 5,
              seed=None) -> dict:
    """The scripts' tuning of a group-penalised baseline (module docstring). Returns dict with the
    refitted estimator ``best``, ``lam``, ``cv_rmse`` and ``path`` (λ, mean support size, CV RMSE)."""
    Xs, ys = check_tasks(Xs, ys)
    data = prepare(Xs, ys, bool(est.scale))
    lambdas = lambda_path(est, data, int(n_lambda), float(ratio))
    full_fits = _path_fits(est, data, lambdas, s_max=s_max)
    lambdas = lambdas[:len(full_fits)]
    sizes = np.array([(np.abs(B) > 0).sum(axis=1).mean() for B in full_fits])
    ns = [X.shape[0] for X in Xs]
    scores = np.zeros((n_folds, len(lambdas)))
    for f, held in enumerate(task_folds(ns, n_folds, seed)):
        keep = [np.setdiff1d(np.arange(n), h) for n, h in zip(ns, held)]
        tr = prepare([X[i] for X, i in zip(Xs, keep)], [y[i] for y, i in zip(ys, keep)], bool(est.scale))
        for i, B in enumerate(_path_fits(est, tr, lambdas)):
            coef, icpt = tr.to_original(B)
            scores[f, i] = multitask_rmse([X[h] for X, h in zip(Xs, held)], [y[h] for y, h in zip(ys, held)],
                                          coef, icpt)
    cv = scores.mean(axis=0)
    ok = np.flatnonzero(sizes <= s_max)
    if ok.size == 0:   # the scripts then take the sparsest available path point
        ok = np.flatnonzero(sizes == sizes.min())
    best = int(ok[np.argmin(cv[ok])])
    est.set_params(lam=float(lambdas[best]))
    est._store(data, full_fits[best], [est.penalised_objective(data, full_fits[best])])
    return dict(best=est, lam=float(lambdas[best]), cv_rmse=float(cv[best]),
                path=dict(lam=lambdas, support_size=sizes, cv_rmse=cv))


# --------------------------------------------------------------------------- ridge (closed form)

def ridge_coefs(data: TaskData, lambdas) -> np.ndarray:
    """(len(lambdas), K, p) ridge solutions ``(G_k + λI)⁻¹ c_k`` of every prepared task: the
    objective ``‖y_k − X_kβ_k‖²/(2n_k) + (λ/2)‖β_k‖²`` (glmnet's ``alpha = 0`` scaling, and
    :class:`~reprise.mtl.SparseMultiTask` with ``s = p``), by one eigendecomposition per task."""
    lambdas = np.asarray(lambdas, dtype=float)
    out = np.zeros((len(lambdas), data.K, data.p))
    for k in range(data.K):
        evals, V = np.linalg.eigh(data.G[k])
        proj = V.T @ data.c[k]
        out[:, k, :] = (proj[None, :] / (np.maximum(evals, 0.0)[None, :] + lambdas[:, None])) @ V.T
    return out


def ridge_cv(Xs, ys, lambdas, *, n_folds: int = 10, seed=None, scale: bool = True) -> dict:
    """Per-task ridge tuned by K-fold CV (within tasks, multi-task RMSE); returns ``coef``,
    ``intercept``, ``lam``, ``cv_rmse``. ``lambdas`` must be positive unless every task has n_k > p."""
    Xs, ys = check_tasks(Xs, ys)
    lambdas = np.asarray([check_nonneg("lambda", v) for v in lambdas])
    if lambdas.size == 0:
        raise ReproError("ridge_cv: the lambda grid is empty; give at least one value")
    ns = [X.shape[0] for X in Xs]
    scores = np.zeros((n_folds, lambdas.size))
    for f, held in enumerate(task_folds(ns, n_folds, seed)):
        keep = [np.setdiff1d(np.arange(n), h) for n, h in zip(ns, held)]
        tr = prepare([X[i] for X, i in zip(Xs, keep)], [y[i] for y, i in zip(ys, keep)], scale)
        for i, B in enumerate(ridge_coefs(tr, lambdas)):
            coef, icpt = tr.to_original(B)
            scores[f, i] = multitask_rmse([X[h] for X, h in zip(Xs, held)], [y[h] for y, h in zip(ys, held)],
                                          coef, icpt)
    cv = scores.mean(axis=0)
    best = int(np.argmin(cv))
    data = prepare(Xs, ys, scale)
    coef, icpt = data.to_original(ridge_coefs(data, lambdas[best:best + 1])[0])
    return dict(coef=coef, intercept=icpt, lam=float(lambdas[best]), cv_rmse=float(cv[best]))
