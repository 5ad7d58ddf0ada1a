"""scikit-learn estimators of Skinny Trees: ``SkinnyTreesClassifier`` and ``SkinnyTreesRegressor``.

Params (defaults): ``n_trees=20, depth=4`` (ensemble shape), ``kernel_l2=0.1`` (λ₂ = kernel_l2 / (T(2^d−1))),
``kernel_constraint=100.0`` (λ₀ = kernel_constraint / p; 0 trains the dense ensemble), ``temperature=0.01`` (τ of
the schedule), ``anneal=True`` (λ₀(t) = λ₀(1 − e^{−τt}); False: constant λ₀), ``learning_rate=0.1`` (plain SGD),
``batch_size=16``, ``epochs=100``, ``random_state=None``, ``device="auto"`` (CUDA when available).
The defaults are the repository's toy breast-cancer example except for epochs (1000 there).

Fitted attributes: ``model_`` (:class:`reprise.trees.model.SoftTreeEnsemble`), ``selected_features_`` (indices of
the input columns with ``‖W_j‖₂ > 0``), ``feature_history_`` (#selected at the start and after every epoch),
``loss_history_``, ``n_features_in_``; the classifier also ``classes_``. The constructor only stores its params;
inputs are used as given (standardise them first, as the paper's pipeline does). Passes scikit-learn's
``check_estimator``; bad input raises ``TreesInputError`` (a ReproError and a ValueError) naming it.
Measured: breast cancer (364 rows × 30), T=10, d=3, 60 epochs, batch 16: about 0.7 s on one CPU thread.
"""
from __future__ import annotations

import logging
import math

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from reprise.io import ReproError

log = logging.getLogger(__name__)


class TreesInputError(ReproError, ValueError):
    """Bad data or params given to an estimator: a ReproError (names the argument and the fix) that is also the
    ValueError scikit-learn's conventions expect."""


def _check_params(est) -> None:
    name = type(est).__name__
    for key in ("n_trees", "depth", "batch_size", "epochs"):
        v = getattr(est, key)
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise TreesInputError(f"{name}: {key}={v!r} must be an integer ≥ 1")
    for key, strict in (("learning_rate", True), ("kernel_l2", False), ("kernel_constraint", False),
                        ("temperature", False)):
        v = getattr(est, key)
        if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)) or not math.isfinite(v) \
                or (v <= 0 if strict else v < 0):
            raise TreesInputError(f"{name}: {key}={v!r} must be a finite number {'>' if strict else '≥'} 0")
    if est.anneal and est.kernel_constraint > 0 and est.temperature <= 0:
        raise TreesInputError(f"{name}: temperature={est.temperature!r} must be > 0 when anneal=True "
                         "(λ₀(t) would stay 0); give a positive temperature or anneal=False")
    if est.random_state is not None and (isinstance(est.random_state, bool)
                                         or not isinstance(est.random_state, (int, np.integer))
                                         or est.random_state < 0):
        raise TreesInputError(f"{name}: random_state={est.random_state!r} must be None or an integer ≥ 0")


def validated(est, X, y=None, reset: bool = True, y_numeric: bool = False):
    """``X`` (and ``y``) through scikit-learn's ``validate_data`` (finite, 2-D, float64, dense; the feature count
    recorded at fit and checked after), its ValueError re-raised as a TreesInputError naming the estimator."""
    from sklearn.utils.validation import validate_data

    try:
        if y is None and not reset:
            return validate_data(est, X, reset=False, dtype=np.float64)
        return validate_data(est, X, y, reset=reset, dtype=np.float64, y_numeric=y_numeric)
    except ValueError as exc:
        raise TreesInputError(f"{type(est).__name__}: {exc}") from None


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

        seed = (int(self.random_state) if self.random_state is not None
                else int(np.random.SeedSequence().entropy % 2**63))
        gen = torch.Generator().manual_seed(seed)
        device = pick_device(self.device)
        model = SoftTreeEnsemble(X.shape[1], n_outputs, self.n_trees, self.depth, generator=gen).to(device)
        Xt = torch.tensor(X, dtype=torch.float32, device=device)
        yt = torch.tensor(target, dtype=target_dtype, device=device)

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
        self.selected_features_ = np.flatnonzero(model.selected().cpu().numpy())
        self.feature_history_ = res.feature_history
        self.loss_history_ = res.loss_history
        return self

    def _raw(self, X) -> np.ndarray:
        import torch

        check_is_fitted(self, "model_")
        X = validated(self, X, reset=False)
        device = self.model_.kernel.device
        # evaluated in float64 (weights upcast): predictions do not depend on the rows' order or batching
        weights = {k: v.detach().double() for k, v in self.model_.named_parameters()}
        with torch.no_grad():
            out = torch.func.functional_call(self.model_, weights, (torch.tensor(X, device=device),))
        return out.cpu().numpy()


class SkinnyTreesClassifier(ClassifierMixin, _SkinnyTreesBase):
    """Soft oblique tree ensemble with group-ℓ0 feature selection, trained on softmax cross-entropy
    (one logit per class, as the official code)."""

    def fit(self, X, y):
        from reprise.trees.model import classification_loss
        import torch

        name = type(self).__name__
        _check_params(self)
        X, y = validated(self, X, y)
        try:
            check_classification_targets(y)
        except ValueError as exc:
            raise TreesInputError(f"{name}: y: {exc}") from None
        self.classes_, codes = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise TreesInputError(f"{name}: y has 1 class ({self.classes_[0]!r}); need at least two")
        return self._fit(X, codes, len(self.classes_), classification_loss, torch.long)

    def decision_function(self, X) -> np.ndarray:
        """Logits (n × classes); for two classes, as scikit-learn, the margin of ``classes_[1]`` (n,)."""
        z = self._raw(X)
        return z[:, 1] - z[:, 0] if z.shape[1] == 2 else z

    def predict_proba(self, X) -> np.ndarray:
        z = self._raw(X)
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, X) -> np.ndarray:
        z = self._raw(X)
        return self.classes_[np.argmax(z, axis=1)]


class SkinnyTreesRegressor(RegressorMixin, _SkinnyTreesBase):
    """Soft oblique tree ensemble with group-ℓ0 feature selection, trained on mean squared error."""

    def fit(self, X, y):
        from reprise.trees.model import regression_loss
        import torch

        name = type(self).__name__
        _check_params(self)
        X, y = validated(self, X, y, y_numeric=True)
        return self._fit(X, y, 1, regression_loss, torch.float32)

    def predict(self, X) -> np.ndarray:
        return self._raw(X)[:, 0]
