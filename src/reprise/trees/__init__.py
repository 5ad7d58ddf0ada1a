"""Skinny Trees (Ibrahim, Behdin, Mazumder; arXiv 2310.18542): soft oblique tree ensembles with group-ℓ0
feature selection and the dense-to-sparse penalty schedule (specs/other-papers.md §1).

``SkinnyTreesClassifier`` / ``SkinnyTreesRegressor`` (scikit-learn estimators, :mod:`reprise.trees.estimators`),
the model and its proximal SGD (:mod:`reprise.trees.model`), the random-search tuning and the notebook's model
selection (:mod:`reprise.trees.tuning`), the importance-selection baselines (:mod:`reprise.trees.baselines`) and the
data (:mod:`reprise.trees.datasets`); the experiments of the ``skinny`` manifest in :mod:`reprise.trees.experiments`.
"""
from reprise.trees.estimators import SkinnyTreesClassifier, SkinnyTreesRegressor
from reprise.trees.model import SoftTreeEnsemble, group_hard_threshold_, train_ensemble

__all__ = ["SkinnyTreesClassifier", "SkinnyTreesRegressor", "SoftTreeEnsemble", "group_hard_threshold_",
           "train_ensemble"]
