"""Single-layer experiments (a manifest's ``layer_studies``): the registered methods solved directly
on one linear's W and input Gram, outside the driver. ``reprise.papers.layer_study`` renders the rows.

The layer file comes from the ``layer_gram`` rule (``reprise.pipeline.extract_layer``). Every
number is derived from the raw quantities the solvers return (objective ``tr(ΔW G ΔWᵀ)``,
reference energy ``tr(W G Wᵀ)``, seconds, the ADMM trace), so the paper's form of the error is a
choice of the manifest (``error: rel_err | rel_err_sq``), not of the code. ``spec`` is the
manifest's ``LayerStudy`` record (read by attribute only).
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from reprise.io import ReproError

log = logging.getLogger(__name__)

LAYER_KEYS = ("W", "G", "x_mean", "n_tokens", "block", "layer")


def load_layer(path: str | Path) -> dict[str, Any]:
    """The layer record written by ``extract_layer``; fails naming the file and the fix."""
    path = Path(path)
    if not path.is_file():
        raise ReproError(f"layer file {path} not found; build it with the layer_gram rule (snakemake {path})")
    rec = torch.load(path, map_location="cpu", weights_only=True)
    missing = [k for k in LAYER_KEYS if k not in rec]
    if missing:
        raise ReproError(f"{path}: missing {missing}; delete it and rerun the layer_gram rule")
    return rec


def _error(objective: float, ref: float, form: str) -> float:
    ratio = max(objective, 0.0) / ref if ref > 0 else 0.0
    return math.sqrt(ratio) if form == "rel_err" else ratio


def _column(setting: float | str) -> str:
    return setting if isinstance(setting, str) else f"{setting:g}"


def _prune_cfg(setting: float | str) -> dict[str, Any]:
    return {"nm": setting} if isinstance(setting, str) else {"sparsity": float(setting)}


@dataclass(frozen=True)
class Layer:
    """One linear on the solve device: weight, input Gram and mean, its role ("attn" or "mlp") and
    its reference energy ``tr(W G Wᵀ)`` (the denominator of every error in a study)."""

    W: torch.Tensor
    G: torch.Tensor
    x_mean: torch.Tensor | None
    role: str | None
    ref_energy: float


def _solve(method: str, L: Layer, cfg: Mapping[str, Any]):
    """The registered method on the layer, with the per-role config the driver would use (DSnoT
    skips its refinement on MLP linears) and the input mean for methods that need it."""
    from reprise.llm.methods import get_method

    m = get_method(method)
    config = m.make_config(dict(cfg))
    if L.role is not None:
        config = m.config_for(config, L.role)
    t0 = time.perf_counter()
    res = m.solve(L.W, L.G, config, x_mean=L.x_mean) if m.needs_mean else m.solve(L.W, L.G, config)
    if L.W.device.type == "cuda":
        torch.cuda.synchronize(L.W.device)
    return res, time.perf_counter() - t0


def _record(rows: list[dict], row: str, column: str, objective: float, ref: float, form: str,
            seconds: float | None = None, value: float | None = None, **extra) -> None:
    rows.append({"row": row, "column": column, "value": _error(objective, ref, form) if value is None else value,
                 "objective": objective, "ref_energy": ref, "seconds": seconds, **extra})


# --------------------------------------------------------------------------- studies


def _support_refit(spec, L: Layer) -> list[dict]:
    """Error of the exact least-squares weights on the support each method picks."""
    from reprise.llm.methods import layer_objective
    from reprise.llm.methods.refit import exact_refit

    W, G, ref, rows = L.W, L.G, L.ref_energy, []
    for method in spec.methods:
        for setting in (*spec.sparsities, *spec.patterns):
            res, _ = _solve(method, L, {**spec.configs.get(method, {}), **_prune_cfg(setting)})
            mask = res.mask if res.mask is not None else res.weight != 0
            t0 = time.perf_counter()
            best = exact_refit(G, W, mask, ridge=0.0)
            seconds = time.perf_counter() - t0
            _record(rows, spec.label(method), _column(setting), layer_objective(W, best, G), ref, spec.error,
                    seconds, method=method, own_objective=res.objective)
    return rows


def _refit_time(spec, L: Layer) -> list[dict]:
    """For ``support``'s masks: no refit, the PCG refit (ALPS's post-processing) and the exact backsolve."""
    ref, rows = L.ref_energy, []
    labels = {"none": "no refit", "pcg": "PCG refit", "exact": "exact backsolve"}
    for refit, label in labels.items():
        for setting in (*spec.sparsities, *spec.patterns):
            cfg = {**spec.configs.get("backsolve", {}), "support": spec.support, "refit": refit, **_prune_cfg(setting)}
            res, seconds = _solve("backsolve", L, cfg)
            _record(rows, label, _column(setting), res.objective, ref, spec.error, seconds, method="backsolve", refit=refit)
    return rows


def _method_error(spec, L: Layer) -> list[dict]:
    """Each method's own error (its weights as returned) per sparsity."""
    ref, rows = L.ref_energy, []
    for method in spec.methods:
        for setting in (*spec.sparsities, *spec.patterns):
            res, seconds = _solve(method, L, {**spec.configs.get(method, {}), **_prune_cfg(setting)})
            _record(rows, spec.label(method), _column(setting), res.objective, ref, spec.error, seconds, method=method)
    return rows


def _schedules(spec) -> list[tuple[str, dict[str, Any]]]:
    base = {**spec.configs.get("alps", {}), **_prune_cfg(spec.sparsities[0]), "trace": True}
    out = [("ALPS (adaptive ρ)", {**base, "rho_schedule": "adaptive"})]
    out += [(f"ADMM, fixed ρ = {rho:g}", {**base, "rho_schedule": "fixed", "rho0": rho}) for rho in spec.fixed_rhos]
    return out


def admm_traces(spec, L: Layer) -> list[tuple[str, Any, torch.Tensor]]:
    """(label, result, trace) of ALPS with the adaptive penalty and with each fixed penalty."""
    out = []
    for label, cfg in _schedules(spec):
        res, _ = _solve("alps", L, cfg)
        trace = res.extras.get("admm_trace")
        if trace is None:
            raise ReproError("alps returned no admm_trace with trace: true; the solver and this study disagree")
        out.append((label, res, trace))
    return out


def _rho_schedule(spec, L: Layer) -> list[dict]:
    """Support change (% of the kept weights) at chosen ADMM iterations, adaptive versus fixed ρ."""
    ref, rows = L.ref_energy, []
    for label, res, trace in admm_traces(spec, L):
        by_iter = {int(r[0]): float(r[2]) for r in trace.tolist()}
        for it in spec.iterations:
            v = by_iter.get(it)
            rows.append({"row": label, "column": f"iter {it}", "value": None if v is None else 100 * v,
                         "objective": None, "ref_energy": None, "seconds": None})
        _record(rows, label, "iterations", res.objective, ref, spec.error, value=float(res.extras.get("admm_iterations", len(by_iter))))
        _record(rows, label, "final error", res.objective, ref, spec.error)
    return rows


STUDIES = {"support_refit": _support_refit, "refit_time": _refit_time, "method_error": _method_error,
           "rho_schedule": _rho_schedule}


def run_layer_study(spec, layer_path: str | Path, device: str = "auto") -> dict[str, Any]:
    """Solve the study on the layer file: ``{"rows": [...]}`` for a table, ``{"traces": [(label, rows)]}``
    (rows of [iteration, rho, support change, objective]) for ``admm_convergence``."""
    from reprise.llm.methods import layer_objective
    from reprise.llm.models.blockwise import pick_device

    rec = load_layer(layer_path)
    if (rec["block"], rec["layer"]) != (spec.block, spec.layer):
        raise ReproError(f"{layer_path} holds block {rec['block']} {rec['layer']}, but study {spec.id} needs "
                         f"block {spec.block} {spec.layer}; delete the file and rerun the layer_gram rule")
    dev = pick_device(device)
    W, G = rec["W"].to(dev), rec["G"].to(dev)
    x_mean = rec["x_mean"].to(dev) if rec.get("x_mean") is not None else None
    L = Layer(W, G, x_mean, rec.get("role"), layer_objective(W, None, G))
    log.info("layer study %s: block %d %s (W %s, %s) on %s", spec.id, spec.block, spec.layer, tuple(W.shape), L.role, dev)
    info = {"shape": list(W.shape), "n_tokens": int(rec["n_tokens"]), "device": str(dev)}
    if spec.kind == "admm_convergence":
        return {**info, "traces": [(label, trace.tolist()) for label, _res, trace in admm_traces(spec, L)]}
    return {**info, "rows": STUDIES[spec.kind](spec, L)}
