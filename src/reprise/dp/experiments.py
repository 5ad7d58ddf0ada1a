"""SPARTA (arXiv 2503.12822) experiment ``dp.sparta``: the main table's runs and the ablations of §3.8 items 2–3.

``fn(params, seed) -> DataFrame`` (see :mod:`reprise.experiments`), one row per fine-tuning run with the columns
``study, method, dataset, model, pretrained, epsilon, delta, sigma, seed, test_accuracy, test_error,
spent_epsilon, trainable_fraction, wall_s, density, mask_epoch, epochs, batch_size, steps, sample_rate, accountant``
(``study`` is ``main``, ``ablation`` or ``score``; ``private_mask`` is false for the non-private oracle arms;
``pretrained`` says where the starting weights come from).

The run list. ``main``: the launch script's grid in its array order [V-code] — task index
``method + M·(seed + S·(epsilon + E·(dataset + D·model)))`` over ``methods × seeds × epsilons × datasets × models``;
``ablation``: SPARTA over ``ablation_densities × ablation_mask_epochs × seeds`` on the first dataset and model at
the largest ε, appended after the whole launch grid (indices from ``M·S·E·D·len(models)`` on); ``score``: the
other mask rules (``score_methods`` × ``seeds``, same cell, default density and mask epoch) after those. With
``grid_job=false`` (smoke) one job runs every item of the list with the seed list ``[seed]`` and pretrains the
smoke model once; with ``grid_job=true`` (full) the workflow's ``seed`` is the task index and the job runs that
one item (the manifest lists the indices, leaving out the dropped WRN-28-10 model's).

Params (defaults = full scale, the launch script [V-code]): ``dataset_names=[cifar100, cifar10]``,
``models=[deit_tiny, deit_small, deit_base, resnet18_gn, wrn_28_10_gn]``, ``methods=[all_layers, lp_gn, dp_bitfit,
mp_weights, sparta, lora]``, ``seeds=[0, 16, 42]``, ``epsilons=[2, 4, 8]``, ``delta=1e-5``, ``max_grad_norm=1.0``,
``batch_size=500``, ``physical_batch=100``, ``epochs=50``, ``mask_epoch=10``, ``density=0.2``, ``lr=0.01``,
``classifier_lr=0.01``, ``momentum=0.9``, ``warm_up=0.02``, ``accountant="prv"``, ``ablation_densities=[]``,
``ablation_mask_epochs=[]``, ``score_methods=[]`` (of ``sparta_weighted``, ``random_rows``, ``mp_weights`` and
the unstructured ``optim_{averaged,weights}_{noisy,clipped}_grads``),
``grid_job=true``, ``data_dir="data/raw/cifar"`` (the ``fetch_cifar10`` /
``fetch_cifar100`` tarballs), ``resnet_checkpoint="runs/sparta/resnet18_gn_cifar100.pt"`` (rule
``sparta_pretrain_resnet18_gn``), ``device="auto"``; smoke only: ``pretrain_epochs=15``, ``pretrain_lr=0.05``,
``split_seed=0``.

Smoke (§3.10): scikit-learn's digits stand in for CIFAR. "Public pretraining": ``DigitsCNN`` trained
non-privately on digits 0–4; "private fine-tuning": digits 5–9 (75 % train, 25 % test) with a new 5-class head.
Measured (OMP_NUM_THREADS=1, the shared 2-core machine at load ≈ 4): the smoke job (pretraining, 7 main-table arms,
6 sparsity/mask-epoch arms, 4 score arms) 14 CPU-s with start-up (snakemake's benchmark: 7.8 CPU-s, 28 s wall); an arm ≈ 0.5–1 s, LoRA
≈ 3 s (importing peft). Full-scale ResNet-18-GN per-sample gradients on this CPU: ≈ 1.5 s per image, i.e. GPU only.

Everything that can be wrong (model/dataset pairs, the dropped WRN row, missing CIFAR archives or checkpoint, a
budget that cannot be met: ε ≤ 0, δ ≥ 1/n, σ calibration failing) raises a ReproError before any training.
"""
from __future__ import annotations

import logging
import math
from functools import partial
from itertools import product
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn as nn

from reprise.experiments import (boolean, check_seed, choice, experiment, integer, list_of, params as _validate, real)
from reprise.io import ReproError

log = logging.getLogger(__name__)

COLUMNS = ["study", "method", "dataset", "model", "pretrained", "epsilon", "delta", "sigma", "seed", "test_accuracy",
           "test_error", "spent_epsilon", "trainable_fraction", "wall_s", "density", "private_mask", "mask_epoch",
           "epochs", "batch_size", "steps", "sample_rate", "accountant"]
DATASETS = ("digits", "cifar10", "cifar100")
MODELS = ("digits_cnn", "resnet18_gn", "wrn_28_10_gn", "deit_tiny", "deit_small", "deit_base")
DEIT_HUB = {"deit_tiny": "facebook/deit-tiny-patch16-224", "deit_small": "facebook/deit-small-patch16-224",
            "deit_base": "facebook/deit-base-patch16-224"}
CIFAR_FILES = {"cifar10": "cifar-10-python.tar.gz", "cifar100": "cifar-100-python.tar.gz"}
LAUNCH_METHODS = ["all_layers", "lp_gn", "dp_bitfit", "mp_weights", "sparta", "lora"]


def _spec():
    from reprise.dp.finetune import METHODS

    pos = partial(integer, whole_floats=True)
    return {
        "dataset_names": (["cifar100", "cifar10"], list_of(choice(*DATASETS))),
        "models": (["deit_tiny", "deit_small", "deit_base", "resnet18_gn", "wrn_28_10_gn"], list_of(choice(*MODELS))),
        "methods": (list(LAUNCH_METHODS), list_of(choice(*METHODS))),
        "seeds": ([0, 16, 42], list_of(pos(0))),
        "epsilons": ([2.0, 4.0, 8.0], list_of(real(0.0, strict=True), scalar=True)),
        "delta": (1e-5, real(0.0, strict=True, high=1.0)),
        "max_grad_norm": (1.0, real(0.0, strict=True)),
        "batch_size": (500, pos(1)),
        "physical_batch": (100, pos(1)),
        "epochs": (50, pos(1)),
        "mask_epoch": (10, pos(0)),
        "density": (0.2, real(0.0, strict=True, high=1.0)),
        "lr": (0.01, real(0.0)),
        "classifier_lr": (0.01, real(0.0)),
        "momentum": (0.9, real(0.0, high=1.0)),
        "warm_up": (0.02, real(0.0, strict=True, high=1.0)),
        "accountant": ("prv", choice("prv", "rdp")),
        "ablation_densities": ([], list_of(real(0.0, strict=True, high=1.0), non_empty=False)),
        "ablation_mask_epochs": ([], list_of(pos(0), non_empty=False)),
        "score_methods": ([], list_of(choice("sparta_weighted", "random_rows", "mp_weights",
                                             "optim_averaged_noisy_grads", "optim_weights_noisy_grads",
                                             "optim_averaged_clipped_grads", "optim_weights_clipped_grads"),
                                      non_empty=False)),
        "grid_job": (True, boolean),
        "data_dir": ("data/raw/cifar", lambda where, v: str(v)),
        "resnet_checkpoint": ("runs/sparta/resnet18_gn_cifar100.pt", lambda where, v: str(v)),
        "device": ("auto", lambda where, v: str(v)),
        "pretrain_epochs": (15, pos(1)),
        "pretrain_lr": (0.05, real(0.0, strict=True)),
        "split_seed": (0, pos(0)),
    }


def run_list(p: Mapping[str, Any]) -> list[dict]:
    """Every run of the grid, in task-index order (module doc)."""
    runs = []
    for model, dataset, eps, seed, method in product(p["models"], p["dataset_names"], p["epsilons"], p["seeds"],
                                                     p["methods"]):
        runs.append(dict(study="main", model=model, dataset=dataset, epsilon=eps, seed=seed, method=method,
                         density=p["density"], mask_epoch=p["mask_epoch"]))
    for density, e0, seed in product(p["ablation_densities"], p["ablation_mask_epochs"], p["seeds"]):
        runs.append(dict(study="ablation", model=p["models"][0], dataset=p["dataset_names"][0],
                         epsilon=max(p["epsilons"]), seed=seed, method="sparta", density=density, mask_epoch=e0))
    for method, seed in product(p["score_methods"], p["seeds"]):
        runs.append(dict(study="score", model=p["models"][0], dataset=p["dataset_names"][0],
                         epsilon=max(p["epsilons"]), seed=seed, method=method, density=p["density"],
                         mask_epoch=p["mask_epoch"]))
    return runs


# ------------------------------------------------------------------------------------------------------------ data
def digits_split(split_seed: int = 0):
    """Public (digits 0–4, all) and private (digits 5–9 relabelled 0–4; 75/25 train/test) 8 × 8 images, normalised
    with the public images' mean and standard deviation."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target, dtype=torch.int64)
    public = y < 5
    mean, std = x[public].mean(), x[public].std()
    x = (x - mean) / std
    xp, yp = x[~public], y[~public] - 5
    order = torch.randperm(len(yp), generator=torch.Generator().manual_seed(split_seed))
    cut = int(0.75 * len(yp))
    tr, te = order[:cut], order[cut:]
    return (x[public], y[public]), (xp[tr], yp[tr]), (xp[te], yp[te])


def _cifar(data_dir: str, name: str):
    from reprise.vision.cifar import load_cifar

    path = Path(data_dir) / CIFAR_FILES[name]
    if not path.exists():
        raise ReproError(f"dp.sparta: params['data_dir']: {path} is missing; run `snakemake fetch_{name}` "
                         "(full scale needs the CIFAR archives)")
    return load_cifar(path, name, "train"), load_cifar(path, name, "test")


def _new_head(model: nn.Module, attr: str, num_classes: int, seed: int) -> nn.Module:
    old = getattr(model, attr)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        setattr(model, attr, nn.Linear(old.in_features, num_classes))
    return model


def _pretrained(model: str, num_classes: int, p, seed: int, cache: dict):
    """The starting model, a ``pretrained`` label, and the train/eval batch transforms."""
    if model == "digits_cnn":
        if "digits_cnn" not in cache:
            from reprise.dp.models import DigitsCNN
            from reprise.dp.pretrain import pretrain

            (xpub, ypub), _, _ = cache["digits"]
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                net = DigitsCNN(num_classes=5)
            cache["digits_cnn"] = pretrain(net, xpub, ypub, epochs=p["pretrain_epochs"], lr=p["pretrain_lr"],
                                           batch_size=64, seed=seed)
        import copy

        return _new_head(copy.deepcopy(cache["digits_cnn"]), "linear", num_classes, seed + 1), \
            "digits 0-4 (smoke, non-private)", None, None
    if model == "wrn_28_10_gn":
        raise ReproError("dp.sparta: model 'wrn_28_10_gn' is not run: its ImageNet-32 checkpoint is not released and "
                         "the DP-transfer JAX checkpoint was not converted (specs/other-papers.md §9.2); drop it")
    from reprise.vision.cifar import augment, normalise

    name = cache["dataset"]
    gen = torch.Generator().manual_seed(seed + 3)
    if model == "resnet18_gn":
        from reprise.vision.resnet_gn import resnet18

        ckpt = Path(p["resnet_checkpoint"])
        if not ckpt.exists():
            raise ReproError(f"dp.sparta: params['resnet_checkpoint']: {ckpt} is missing; run "
                             "`snakemake sparta_pretrain_resnet18_gn` first")
        net = resnet18(num_classes=100, norm="group")
        net.load_state_dict(torch.load(ckpt, map_location="cpu"))
        return _new_head(net, "fc", num_classes, seed + 1), "CIFAR-100 (re-pretrained, non-private)", \
            (lambda x: normalise(augment(x, gen), name)), (lambda x: normalise(x, name))
    from reprise.dp.models import deit

    resize = partial(nn.functional.interpolate, size=(224, 224), mode="bilinear", align_corners=False)
    return deit(DEIT_HUB[model], num_classes), "ImageNet-1k (facebook DeiT)", \
        (lambda x: resize(normalise(augment(x, gen), name))), (lambda x: resize(normalise(x, name)))


@experiment("dp.sparta")
def sparta(params: Mapping[str, Any], seed: int):
    """The main table's runs and the ablation (module doc)."""
    import pandas as pd

    from reprise.dp.engine import check_budget, noise_multiplier
    from reprise.dp.finetune import PHASED, FinetuneConfig, finetune
    from reprise.llm.models.blockwise import pick_device

    name = "dp.sparta"
    p = _validate(name, params, _spec())
    seed = check_seed(name, seed)
    device = pick_device(p["device"])
    if p["grid_job"]:
        runs = run_list(p)
        if seed >= len(runs):
            raise ReproError(f"{name}: seed (the task index) {seed} is outside the grid of {len(runs)} runs")
        runs = [runs[seed]]
    else:
        runs = run_list({**p, "seeds": [seed]})
    # everything that can be wrong is checked before any training (pretraining included): model/dataset pairs,
    # the WRN row, the data, every run's config and privacy budget (σ calibrated here, memoised for the runs)
    data, configs = {}, []
    for run in runs:
        ds = run["dataset"]
        if (ds == "digits") != (run["model"] == "digits_cnn"):
            raise ReproError(f"{name}: model {run['model']!r} does not go with dataset {ds!r} (digits_cnn is the "
                             "digits model, the others are CIFAR models)")
        if run["model"] == "wrn_28_10_gn":
            _pretrained("wrn_28_10_gn", 0, p, 0, {})  # raises: the row is dropped
        if run["model"] == "resnet18_gn" and not Path(p["resnet_checkpoint"]).exists():
            raise ReproError(f"{name}: params['resnet_checkpoint']: {p['resnet_checkpoint']} is missing; run "
                             "`snakemake sparta_pretrain_resnet18_gn` first")
        if ds not in data:
            if ds == "digits":
                public, train, test = digits_split(p["split_seed"])
                data[ds] = {"dataset": ds, "digits": (public, train, test), "train": train, "test": test}
            else:
                train, test = _cifar(p["data_dir"], ds)
                data[ds] = {"dataset": ds, "train": train, "test": test}
        cfg = FinetuneConfig(method=run["method"], epsilon=run["epsilon"], delta=p["delta"],
                             max_grad_norm=p["max_grad_norm"], batch_size=p["batch_size"],
                             physical_batch=p["physical_batch"], epochs=p["epochs"], mask_epoch=run["mask_epoch"],
                             density=run["density"], lr=p["lr"], classifier_lr=p["classifier_lr"],
                             momentum=p["momentum"], warm_up=p["warm_up"], accountant=p["accountant"], seed=run["seed"])
        n = len(data[ds]["train"][1])
        check_budget(cfg.epsilon, cfg.delta, n, f"{name}: params")
        if not 1 <= cfg.batch_size <= n:
            raise ReproError(f"{name}: params['batch_size']={cfg.batch_size} must be in [1, n={n}]")
        noise_multiplier(cfg.epsilon, cfg.delta, 1.0 / math.ceil(n / cfg.batch_size), cfg.epochs, cfg.accountant)
        configs.append(cfg)
    rows = []
    for i, (run, cfg) in enumerate(zip(runs, configs)):
        cache = data[run["dataset"]]
        num_classes = int(cache["train"][1].max()) + 1
        model, label, tr_tf, te_tf = _pretrained(run["model"], num_classes, p, run["seed"], cache)
        out = finetune(model, cache["train"], cache["test"], cfg, device, tr_tf, te_tf)
        m = out.metrics
        phased = run["method"] in PHASED
        rows.append(dict(
            study=run["study"], method=run["method"], dataset=run["dataset"], model=run["model"], pretrained=label,
            epsilon=run["epsilon"], delta=p["delta"], sigma=m["sigma"], seed=run["seed"],
            test_accuracy=m["test_accuracy"], test_error=m["test_error"], spent_epsilon=m["spent_epsilon"],
            trainable_fraction=m["trainable_fraction"], wall_s=m["wall_s"],
            density=run["density"] if phased or run["method"] == "mp_weights" else np.nan,
            private_mask=not run["method"].endswith("_clipped_grads"),
            mask_epoch=run["mask_epoch"] if phased else np.nan, epochs=p["epochs"], batch_size=p["batch_size"],
            steps=m["steps"], sample_rate=m["sample_rate"], accountant=p["accountant"]))
        log.info("%s run %d/%d %s: accuracy %.3f, epsilon %.3f", name, i + 1, len(runs), run["method"],
                 m["test_accuracy"], m["spent_epsilon"])
    return pd.DataFrame(rows)[COLUMNS]
