"""scikit-learn estimators of Skinny Trees: ``SkinnyTreesClassifier`` and ``SkinnyTreesRegressor``.

Params (defaults): ``n_trees=20, depth=4`` (ensemble shape), ``kernel_l2=0.1`` (λ₂ = kernel_l2 / (T(2^d−1))),
``kernel_constraint=100.0`` (λ₀ = kernel_constraint / p; 0 trains the dense ensemble), ``temperature=0.01`` (τ of
the schedule), ``anneal=True`` (λ₀(t) = λ₀(1 − e^{−τt}); False: constant λ₀), ``learning_rate=0.1`` (plain SGD),
``batch_size=16``, ``epochs=100``, ``random_state=None``, ``device="auto"`` (CUDA when available).
The defaults are the repository's toy breast-cancer example except for epochs (1000 there).

Fitted attributes: ``model_`` (:class:`reprise.trees.model.SoftTreeEnsemble`), ``selected_features_`` (indices of
the input columns with ``‖W_j‖₂ > 0``), ``feature_history_`` (#selected at the start and after every epoch),
``loss_history_``, ``n_features_in_``; the classifier also ``classes_``. The constructor only stores its params;
inputs are used as given (standardise them first, as the paper's pipeline does).
Measured: breast cancer (364 rows × 30), T=10, d=3, 60 epochs, batch 16: about 1.5 s on one CPU thread.
"""
from __future__ import annotations

import logging
import math

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

from reprise.io import ReproError

log = logging.getLogger(__name__)


def _check_params(est) -> None:
    name = type(est).__name__
    for key in ("n_trees", "depth", "batch_size", "epochs"):
        v = getattr(est, key)
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ReproError(f"{name}: {key}={v!r} must be an integer ≥ 1")
    for key, strict in (("learning_rate", True), ("kernel_l2", False), ("kernel_constraint", False),
                        ("temperature", False)):
        v = getattr(est, key)
        if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)) or not math.isfinite(v) \
                or (v <= 0 if strict else v < 0):
            raise ReproError(f"{name}: {key}={v!r} must be a finite number {'>' if strict else '≥'} 0")
    if est.anneal and est.kernel_constraint > 0 and est.temperature <= 0:
        raise ReproError(f"{name}: temperature={est.temperature!r} must be > 0 when anneal=True "
                         "(λ₀(t) would stay 0); give a positive temperature or anneal=False")
    if est.random_state is not None and (isinstance(est.random_state, bool)
                                         or not isinstance(est.random_state, (int, np.integer))
                                         or est.random_state < 0):
        raise ReproError(f"{name}: random_state={est.random_state!r} must be None or an integer ≥ 0")


def check_X(X, name: str, n_features: int | None = None, arg: str = "X") -> np.ndarray:
    """``X`` as a finite 2-D float array (with ``n_features`` columns when given), or a ReproError naming it."""
    try:
        X = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ReproError(f"{name}: {arg} must be a numeric 2-D array ({exc})") from None
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise ReproError(f"{name}: {arg} must be a non-empty 2-D array (rows × features), got shape {X.shape}")
    if not np.isfinite(X).all():
        bad = np.argwhere(~np.isfinite(X))[0]
        raise ReproError(f"{name}: {arg} has a non-finite value at row {bad[0]}, column {bad[1]}; "
                         "impute or drop it first")
    if n_features is not None and X.shape[1] != n_features:
        raise ReproError(f"{name}: {arg} has {X.shape[1]} features but the model was fitted on {n_features}")
    return X


def _check_y(y, n_rows: int, name: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y.ravel()
    if y.ndim != 1 or y.shape[0] != n_rows:
        raise ReproError(f"{name}: y must be 1-D with one value per row of X ({n_rows}), got shape {y.shape}")
    return y


class _SkinnyTreesBase(BaseEstimator):
    def __init__(self, n_trees=20, depth=4, kernel_l2=0.1, kernel_constraint=100.0, temperature=0.01, anneal=True,
                 learning_rate=0.1, batch_size=16, epochs=100, random_state=None, device="auto"):
        self.n_trees = n_trees
        self.depth = depth
        self.kernel_l2 = kernel_l2
        self.kernel_constraint = kernel_constraint
        self.temperature = temperature
        self.anneal = anneal
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.epochs = epochs
        self.random_state = random_state
        self.device = device

    def _fit(self, X: np.ndarray, target, n_outputs: int, loss_fn, target_dtype):
        import torch

        from reprise.llm.models.blockwise import pick_device
        from reprise.trees.model import SoftTreeEnsemble, train_ensemble

        seed = int(self.random_state) if self.random_state is not None else int(np.random.SeedSequence().entropy % 2**63)
        gen = torch.Generator().manual_seed(seed)
        device = pick_device(self.device)
        model = SoftTreeEnsemble(X.shape[1], n_outputs, self.n_trees, self.depth, generator=gen).to(device)
        Xt = torch.as_tensor(X, dtype=torch.float32, device=device)
        yt = torch.as_tensor(target, dtype=target_dtype, device=device)

        def progress(epoch, n_selected):
            if (epoch + 1) % max(1, self.epochs // 5) == 0:
                log.debug("%s epoch %d/%d: %d features selected", type(self).__name__, epoch + 1, self.epochs,
                          n_selected)

        res = train_ensemble(model, Xt, yt, loss_fn, learning_rate=float(self.learning_rate),
                             batch_size=int(self.batch_size), epochs=int(self.epochs),
                             kernel_l2=float(self.kernel_l2), kernel_constraint=float(self.kernel_constraint),
                             temperature=float(self.temperature), anneal=bool(self.anneal), generator=gen,
                             epoch_callback=progress)
        self.model_ = model
        self.n_features_in_ = X.shape[1]
        self.selected_features_ = np.flatnonzero(model.selected().cpu().numpy())
        self.feature_history_ = res.feature_history
        self.loss_history_ = res.loss_history
        return self

    def _raw(self, X) -> np.ndarray:
        import torch

        if not hasattr(self, "model_"):
            raise ReproError(f"{type(self).__name__}: call fit before predicting")
        X = check_X(X, type(self).__name__, self.n_features_in_)
        device = self.model_.kernel.device
        with torch.no_grad():
            return self.model_(torch.as_tensor(X, dtype=torch.float32, device=device)).double().cpu().numpy()


class SkinnyTreesClassifier(ClassifierMixin, _SkinnyTreesBase):
    """Soft oblique tree ensemble with group-ℓ0 feature selection, trained on softmax cross-entropy
    (one logit per class, as the official code)."""

    def fit(self, X, y):
        from reprise.trees.model import classification_loss
        import torch

        name = type(self).__name__
        _check_params(self)
        X = check_X(X, name)
        y = _check_y(y, X.shape[0], name)
        self.classes_, codes = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ReproError(f"{name}: y has a single class ({self.classes_[0]!r}); need at least two")
        return self._fit(X, codes, len(self.classes_), classification_loss, torch.long)

    def decision_function(self, X) -> np.ndarray:
        return self._raw(X)

    def predict_proba(self, X) -> np.ndarray:
        z = self._raw(X)
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, X) -> np.ndarray:
        return self.classes_[np.argmax(self._raw(X), axis=1)]


class SkinnyTreesRegressor(RegressorMixin, _SkinnyTreesBase):
    """Soft oblique tree ensemble with group-ℓ0 feature selection, trained on mean squared error."""

    def fit(self, X, y):
        from reprise.trees.model import regression_loss
        import torch

        name = type(self).__name__
        _check_params(self)
        X = check_X(X, name)
        y = _check_y(y, X.shape[0], name).astype(np.float64)
        if not np.isfinite(y).all():
            raise ReproError(f"{name}: y has non-finite values")
        return self._fit(X, y, 1, regression_loss, torch.float32)

    def predict(self, X) -> np.ndarray:
        return self._raw(X)[:, 0]
