"""OSSCAR's vision study (spec §4.8): one-shot channel pruning, accuracy, FLOPs, parameters, latency.

``run_channel_study`` returns one row per ``(method, sparsity)`` plus a ``dense`` row (method
``"dense"``, sparsity 0) for one model:

- ``digits-resnet``: trained here first (deterministic for ``seed``), calibrated on the digits'
  calibration part, ``top1`` on the held-out test part (450 images).
- ``resnet50`` / ``mobilenet_v2``: torchvision's IMAGENET1K_V1 weights, calibration images drawn
  from ``<imagenet_dir>/train``, ``top1`` on ``<imagenet_dir>/val`` (all of it, or a seeded subset
  of ``eval_n``). With ``pretrained=False`` the weights are random (BN statistics recomputed on
  the calibration inputs) and every row says **"random weights: shape and speed checks only"**;
  without ``imagenet_dir`` the calibration inputs are seeded Gaussian images, ``top1`` is empty and
  the rows carry CPU latency instead.

Every pruned row is measured on the *shrunk* model (channels physically removed). Columns:
``model, method, sparsity, top1, params, flops, flops_kept, params_kept, prune_seconds,
mean_rel_err, latency_ms, latency_batch, threads, speedup, calib_n, eval_n, seed, input_size,
weights, label, note`` (``speedup`` = dense latency / this row's latency).
"""
from __future__ import annotations

import copy
import csv
import math
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from reprise.io import ReproError, atomic_path
from reprise.vision import data as vdata
from reprise.vision.models import (DIGITS, IMAGENET_MODELS, INPUT_SHAPES, MOBILENET_NOTE, MODELS, PRETRAINED,
                                   RANDOM_LABEL, build_model, reset_bn_statistics)
from reprise.vision.prune import (STRUCTURED_METHODS, count_flops, count_params, measure_latency, prune_channels,
                                  shrink_channels)
from reprise.vision.train import accuracy, loader_accuracy, train_digits

COLUMNS = ("model", "method", "sparsity", "top1", "params", "flops", "flops_kept", "params_kept", "prune_seconds",
           "mean_rel_err", "latency_ms", "latency_batch", "threads", "speedup", "calib_n", "eval_n", "seed",
           "input_size", "weights", "label", "note")
LAYER_COLUMNS = ("model", "method", "sparsity", "layer", "group_size", "channels", "kept", "objective", "rel_err",
                 "seconds")
DEFAULT_CALIB = {DIGITS: 256, "resnet50": 128, "mobilenet_v2": 128}
RANDOM_CALIB = 16  # Gaussian calibration images of a shape/speed-only run


def _check_args(model: str, methods: Sequence[str], sparsities: Sequence[float]) -> None:
    if model not in MODELS:
        raise ReproError(f"vision study: unknown model {model!r}; known: {', '.join(MODELS)}")
    bad = [m for m in methods if m not in STRUCTURED_METHODS]
    if bad:
        raise ReproError(f"vision study: method(s) {', '.join(map(repr, bad))} are not structured pruning methods; "
                         f"use {', '.join(STRUCTURED_METHODS)}")
    for s in sparsities:
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not 0 <= s < 1:
            raise ReproError(f"vision study: sparsity {s!r} must be a fraction of channels to remove, in [0, 1)")


def run_channel_study(model: str, methods: Sequence[str], sparsities: Sequence[float], *, seed: int = 0,
                      calib_n: int | None = None, imagenet_dir: str | os.PathLike | None = None,
                      pretrained: bool = True, threads: int | None = 1, progress: bool = True,
                      method_config: Mapping[str, Mapping[str, Any]] | None = None, eval_n: int | None = None,
                      input_size: int = 224, latency: bool | None = None, latency_batch: int = 1,
                      latency_repeats: int = 10, allow_download: bool = True,
                      layer_log: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Prune ``model`` with every method at every sparsity (fraction of each unit's channels
    removed); see the module docstring for the rows. ``method_config``: per-method solver settings
    (e.g. ``{"osscar": {"local_search": True}}``). ``latency``: measure CPU latency of the dense and
    shrunk models at ``latency_batch`` with ``threads`` threads (None: only when ``top1`` cannot be
    measured). ``layer_log``: a list that receives the per-layer solve rows (``LAYER_COLUMNS``)."""
    _check_args(model, methods, sparsities)
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        return _run(model, list(methods), [float(s) for s in sparsities], seed=seed, calib_n=calib_n,
                    imagenet_dir=imagenet_dir, pretrained=pretrained, progress=progress,
                    method_config=dict(method_config or {}), eval_n=eval_n, input_size=input_size, latency=latency,
                    latency_batch=latency_batch, latency_repeats=latency_repeats, allow_download=allow_download,
                    layer_log=layer_log)
    finally:
        torch.set_num_threads(old_threads)


def _run(model: str, methods: list[str], sparsities: list[float], *, seed: int, calib_n: int | None,
         imagenet_dir, pretrained: bool, progress: bool, method_config: dict, eval_n: int | None, input_size: int,
         latency: bool | None, latency_batch: int, latency_repeats: int, allow_download: bool,
         layer_log: list | None) -> list[dict[str, Any]]:
    notes: list[str] = []
    if model == DIGITS:
        calib_n = calib_n or DEFAULT_CALIB[model]
        splits = vdata.digits_splits(seed, calib_n)
        net, info = train_digits(seed, splits=splits)
        calib = splits.calib_x
        shape = INPUT_SHAPES[DIGITS]
        n_eval = len(splits.test_y)

        def top1(m: torch.nn.Module) -> float | None:
            return accuracy(m, splits.test_x, splits.test_y)

        weights = f"trained here (seed {seed}, {info['epochs']} epochs, {info['splits']['train']} images)"
        label = "digits"
        notes.append("top1 on the held-out digits test split")
    else:
        shape = (3, input_size, input_size)
        if imagenet_dir is None and pretrained:  # accuracy of pretrained weights needs the data
            try:
                vdata.check_imagenet_dir(None)
            except ReproError as exc:
                raise ReproError(f"{model}: {exc}; or run with pretrained=False (CLI: --random-weights) for a "
                                 f"shape and speed check on random weights and inputs") from None
        if imagenet_dir is not None:
            vdata.check_imagenet_dir(imagenet_dir)  # fail before loading weights
        net = build_model(model, pretrained, seed=seed, allow_download=allow_download)
        if imagenet_dir is not None:
            calib_n = calib_n or DEFAULT_CALIB[model]
            calib = vdata.imagenet_calibration(imagenet_dir, calib_n, seed, crop=input_size)
            loader = vdata.imagenet_val_loader(imagenet_dir, eval_n=eval_n, seed=seed, crop=input_size)
            n_eval = len(loader.dataset)

            def top1(m: torch.nn.Module) -> float | None:
                return loader_accuracy(m, loader, progress=progress)
        else:
            calib_n = calib_n or RANDOM_CALIB
            g = torch.Generator().manual_seed(seed)
            calib = torch.randn(calib_n, *shape, generator=g)
            n_eval = 0

            def top1(m: torch.nn.Module) -> float | None:
                return None

            notes.append(f"top1 not measured (no {vdata.IMAGENET_KEY}): calibration on Gaussian inputs, "
                         f"latency only.")
        if pretrained:
            weights, label = PRETRAINED[model].source, "pretrained"
        else:
            reset_bn_statistics(net, calib)
            weights, label = f"random (seed {seed})", RANDOM_LABEL
        if model == "mobilenet_v2":
            notes.append(MOBILENET_NOTE)
    if latency is None:
        latency = n_eval == 0
    net.eval()
    note = " ".join(notes)
    dense_params, dense_flops = count_params(net), count_flops(net, shape)
    dense_lat = measure_latency(net, shape, batch=latency_batch, repeats=latency_repeats) if latency else None
    base = {"model": model, "calib_n": calib_n, "eval_n": n_eval, "seed": seed, "input_size": shape[-1],
            "weights": weights, "label": label, "note": note, "threads": torch.get_num_threads()}

    def row(method: str, sparsity: float, m: torch.nn.Module, seconds: float, rel: float,
            lat: dict | None) -> dict[str, Any]:
        params, flops = count_params(m), count_flops(m, shape)
        r = {**base, "method": method, "sparsity": sparsity, "top1": top1(m), "params": params, "flops": flops,
             "flops_kept": flops / dense_flops, "params_kept": params / dense_params, "prune_seconds": seconds,
             "mean_rel_err": rel, "latency_ms": None, "latency_batch": None, "speedup": None}
        if lat is not None:
            r.update(latency_ms=lat["latency_ms"], latency_batch=lat["batch"],
                     speedup=dense_lat["latency_ms"] / lat["latency_ms"])
        return {k: r[k] for k in COLUMNS}

    rows = [row("dense", 0.0, net, 0.0, 0.0, dense_lat)]
    jobs = [(m, s) for m in methods for s in sparsities]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(jobs, desc=f"{model} channel pruning", leave=False)
    for method, sparsity in jobs:
        masked = copy.deepcopy(net)
        t0 = time.perf_counter()
        res = prune_channels(masked, calib, method, sparsity, config=method_config.get(method), progress=progress)
        shrunk = shrink_channels(masked, res.kept)  # in place: the masked copy is not needed afterwards
        seconds = time.perf_counter() - t0
        rels = [r["rel_err"] for r in res.log if not math.isnan(r["rel_err"])]
        lat = measure_latency(shrunk, shape, batch=latency_batch, repeats=latency_repeats) if latency else None
        rows.append(row(method, sparsity, shrunk, seconds, sum(rels) / len(rels) if rels else math.nan, lat))
        if layer_log is not None:
            layer_log.extend({"model": model, **{k: r[k] for k in LAYER_COLUMNS if k != "model"}} for r in res.log)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return rows


def write_csv(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike,
              columns: Sequence[str] = COLUMNS) -> None:
    """Write ``rows`` to ``path`` atomically (empty cells for None)."""
    with atomic_path(path, suffix=".csv") as tmp:
        with open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
            w.writeheader()
            for r in rows:
                w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in columns})


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """A small Markdown table of the headline columns."""
    cols = ("method", "sparsity", "top1", "params", "flops_kept", "prune_seconds", "latency_ms", "speedup")

    def fmt(v: Any) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return ""
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows]
    labels = dict.fromkeys(f"{r['label']}" for r in rows if r.get("label"))
    if RANDOM_LABEL in labels:
        lines.append(f"\n{RANDOM_LABEL}")
    return "\n".join(lines)


__all__ = ["COLUMNS", "LAYER_COLUMNS", "IMAGENET_MODELS", "format_table", "run_channel_study", "write_csv"]
