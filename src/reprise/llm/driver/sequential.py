"""The one sequential block driver: capture, Gram hooks, per-linear solves, propagation, resume.

For each block in order: accumulate the Gram of every linear's inputs over the calibration
tokens (per true-sequential group, or all linears from one pass of the uncompressed block),
solve each linear through ``reprise.llm.methods``, write the result into the block, then run
the calibration inputs through the *compressed* block so the next block sees what the
compressed model produces (llm-compression spec §1.6).
"""
from __future__ import annotations

import logging
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from reprise.io import ReproError
from reprise.llm.driver.checkpoint import ResumeState
from reprise.llm.driver.config import DriverConfig
from reprise.llm.gram import DampingRecord, GramAccumulator
from reprise.llm.methods import get_method
from reprise.llm.models.adapters import adapter_for, blocks_of, get_submodule
from reprise.llm.models.blockwise import BlockInputs, capture_inputs, pick_device, run_block
from reprise.provenance import code_fingerprint, fingerprint

log = logging.getLogger("reprise.driver")

LOG_COLUMNS = ("block", "layer", "method", "out_features", "in_features", "n_tokens", "objective", "ref_energy",
               "rel_err", "damping_rel", "damping_retries", "dead_inputs", "zero_frac", "seconds", "peak_mem_mb",
               "device")


@dataclass
class CompressionResult:
    rows: list[dict[str, Any]]  # the per-layer solve log
    extras: dict[str, torch.Tensor] = field(default_factory=dict)  # masks (bit-packed) and quantization metadata
    seconds: float = 0.0
    fingerprint: str = ""
    resumed_blocks: list[int] = field(default_factory=list)


def _peak_mem_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def pack_mask(mask: torch.Tensor, name: str = "mask") -> dict[str, torch.Tensor]:
    """``{name: packed bits, name_shape: shape}``: a boolean tensor at one bit per entry."""
    bits = np.packbits(mask.detach().to("cpu", torch.bool).numpy().reshape(-1))
    return {name: torch.from_numpy(bits), f"{name}_shape": torch.tensor(list(mask.shape), dtype=torch.int64)}


def unpack_mask(packed: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
    n = int(torch.prod(shape))
    return torch.from_numpy(np.unpackbits(packed.numpy())[:n].astype(bool)).reshape(*shape.tolist())


def _result_extras(prefix: str, res: Any) -> dict[str, torch.Tensor]:
    """What a layer's solve adds to compression.safetensors: its keep-mask and any other boolean
    tensor of ``extras`` (e.g. QuantEase's ``outlier_mask``) bit-packed, and the quantization record."""
    out: dict[str, torch.Tensor] = {}
    if getattr(res, "mask", None) is not None:
        out.update({f"{prefix}.{k}": v for k, v in pack_mask(res.mask).items()})
    for name, v in (getattr(res, "extras", None) or {}).items():
        if isinstance(v, torch.Tensor) and v.dtype == torch.bool:
            out.update({f"{prefix}.{k}": t for k, t in pack_mask(v, name).items()})
    for k, v in (getattr(res, "quant", None) or {}).items():
        if isinstance(v, torch.Tensor):
            out[f"{prefix}.{k}"] = v.detach().to("cpu").contiguous()
    return out


def _damping_fields(damping: DampingRecord | None) -> dict[str, Any]:
    if damping is None:  # methods that factor no Gram (rtn, magnitude, wanda, identity)
        return {"damping_rel": None, "damping_retries": 0, "dead_inputs": 0}
    return {"damping_rel": damping.relative, "damping_retries": damping.retries, "dead_inputs": len(damping.dead)}


def _input_grams(block: nn.Module, linears: dict[str, nn.Linear], adapter, inputs: BlockInputs,
                 device: torch.device, gram_dtype: torch.dtype, keep: bool = False
                 ) -> tuple[dict[str, tuple[torch.Tensor, int, torch.Tensor]], list[torch.Tensor]]:
    """One pass of ``block`` over ``inputs`` that accumulates the input Gram of each linear.

    Linears reading the same tensor (``adapter.shared_inputs``: q/k/v, gate/up) share one
    accumulator. Returns ``{name: (G, n_tokens, x_mean)}`` (``x_mean`` the per-input activation
    mean from the same accumulator) and the block outputs when ``keep``.
    """
    sources = {name: adapter.gram_source(name) if adapter.gram_source(name) in linears else name for name in linears}
    accs = {src: GramAccumulator(linears[src].in_features, dtype=gram_dtype, device=device)
            for src in set(sources.values())}
    handles = [linears[src].register_forward_hook(lambda _m, inp, _o, acc=acc: acc.add(inp[0].detach()))
               for src, acc in accs.items()]
    try:
        outs = run_block(block, inputs, device, keep=keep)
    finally:
        for h in handles:
            h.remove()
    grams = {src: acc.gram() for src, acc in accs.items()}
    means = {src: acc.mean() for src, acc in accs.items()}
    return {name: (grams[src], accs[src].n_tokens, means[src]) for name, src in sources.items()}, outs


def _compress_block(b: int, block: nn.Module, inputs: BlockInputs, adapter, groups: list[list[str]], method, cfg,
                    driver: DriverConfig, device: torch.device) -> tuple[list[dict], dict[str, torch.Tensor]]:
    rows, extras = [], {}
    gram_dtype = getattr(torch, driver.gram_dtype)
    for group in groups:
        linears = {name: get_submodule(block, name) for name in group}
        grams, _ = _input_grams(block, linears, adapter, inputs, device, gram_dtype)
        for name, lin in linears.items():
            G, n_tokens, x_mean = grams[name]
            W = lin.weight.data.to(torch.float32)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            t0 = time.perf_counter()
            try:
                layer_cfg = cfg if method.layer_config is None else method.config_for(cfg, adapter.role(name))
                res = method.solve(W, G, layer_cfg, x_mean=x_mean if method.needs_mean else None)
            except ReproError as exc:
                raise ReproError(f"block {b} {name}: {exc}") from exc
            seconds = time.perf_counter() - t0
            new_w = res.weight.to(lin.weight.dtype)
            if not torch.isfinite(new_w).all():
                raise ReproError(f"block {b} {name}: method {method.name} returned non-finite weights")
            lin.weight.data.copy_(new_w)
            row = {
                "block": b, "layer": name, "method": method.name, "out_features": lin.out_features,
                "in_features": lin.in_features, "n_tokens": n_tokens, "objective": float(res.objective),
                "ref_energy": float(res.ref_energy), "rel_err": float(res.rel_err),
                **_damping_fields(getattr(res, "damping", None)),
                "zero_frac": float((new_w == 0).float().mean()), "seconds": round(seconds, 4),
                "peak_mem_mb": round(_peak_mem_mb(device), 1), "device": str(device),
            }
            rows.append(row)
            extras.update(_result_extras(f"{b}.{name}", res))
            log.info("block %2d %-22s obj=%.4g rel_err=%.4f damp=%s t=%.2fs peak=%.0fMB", b, name, row["objective"],
                     row["rel_err"], row["damping_rel"], seconds, row["peak_mem_mb"])
        del grams
    return rows, extras


def compress_model(model: nn.Module, calib_ids: torch.Tensor, method_name: str, method_config: dict[str, Any],
                   driver: DriverConfig | None = None, resume_dir: str | Path | None = None,
                   data_fingerprint: Any = None, progress: bool = True) -> CompressionResult:
    """Compress ``model`` in place, block by block, with the registered method ``method_name``.

    ``calib_ids`` is the calibration token tensor [n, L]. ``resume_dir`` enables per-block resume;
    ``data_fingerprint`` identifies model weights and data for it (hashes from provenance).
    """
    driver = driver or DriverConfig()
    method = get_method(method_name)
    cfg = method.Config.from_dict(method_config)
    if calib_ids.ndim != 2 or calib_ids.dtype not in (torch.int64, torch.int32):
        raise ReproError(f"calibration tokens must be an integer tensor [n, L], got {tuple(calib_ids.shape)} {calib_ids.dtype}")
    adapter = adapter_for(model)
    device = pick_device(driver.device)
    blocks = blocks_of(model, adapter)
    start, stop = driver.blocks or (0, len(blocks))
    if stop > len(blocks):
        raise ReproError(f"driver.blocks {list(driver.blocks)} exceeds the model's {len(blocks)} blocks")
    fp = fingerprint({"method": method.name, "config": cfg.to_dict(), "driver": driver.to_dict(),
                      "data": data_fingerprint, "code": code_fingerprint(), "calib_shape": list(calib_ids.shape)})
    state = ResumeState(resume_dir, fp)
    resumed = list(state.finished)
    t_start = time.perf_counter()
    inputs = capture_inputs(model, adapter, calib_ids, driver.batch_size, device,
                            store_device="cpu" if driver.offload else device)
    groups = adapter.groups(driver.true_sequential)
    all_extras: dict[str, torch.Tensor] = {}
    bar = tqdm(range(stop), desc=f"{method.name}", unit="block", disable=not progress)
    for b in bar:
        block = blocks[b].to(device)
        if b >= start:
            if b in state.finished:
                tensors, extras = state.block_tensors(b)
                block.load_state_dict({k: v.to(device) for k, v in tensors.items()})
                all_extras.update(extras)
            else:
                rows, extras = _compress_block(b, block, inputs, adapter, groups, method, cfg, driver, device)
                state.save_block(b, block, extras, rows)
                all_extras.update(extras)
                bar.set_postfix(rel_err=f"{max(r['rel_err'] for r in rows):.3f}")
        if b + 1 < stop:  # the last compressed block's outputs are not needed
            inputs = BlockInputs(run_block(block, inputs, device, store_device=inputs.hidden[0].device), inputs.kwargs)
        if driver.offload and device.type != "cpu":
            blocks[b].to("cpu")
    rows = sorted(state.rows, key=lambda r: (r["block"], adapter.linear_names.index(r["layer"])))
    return CompressionResult(rows=rows, extras=all_extras, seconds=time.perf_counter() - t_start,
                             fingerprint=fp, resumed_blocks=resumed)


@torch.no_grad()
def collect_layer_grams(model: nn.Module, calib_ids: torch.Tensor, blocks: list[int],
                        driver: DriverConfig | None = None) -> dict[tuple[int, str], dict[str, Any]]:
    """Weights and input Grams of every linear of ``blocks`` in the *uncompressed* model.

    The layer experiments and benchmarks solve these one layer at a time, outside the driver.
    Returns ``{(block, layer): {"W": weight fp32, "G": Gram, "n_tokens": int, "x_mean": activation
    mean (in_features,), "role": "attn" | "mlp" (or None when the adapter declares no roles)}}``,
    all tensors on the CPU. A method with a ``layer_config`` hook (DSnoT) takes
    ``method.config_for(cfg, role)``, as the driver does.
    """
    driver = driver or DriverConfig()
    adapter = adapter_for(model)
    device = pick_device(driver.device)
    all_blocks = blocks_of(model, adapter)
    if not blocks or max(blocks) >= len(all_blocks) or min(blocks) < 0:
        raise ReproError(f"blocks {blocks} out of range for a model with {len(all_blocks)} blocks")
    inputs = capture_inputs(model, adapter, calib_ids, driver.batch_size, device)
    gram_dtype = getattr(torch, driver.gram_dtype)
    out: dict[tuple[int, str], dict[str, Any]] = {}
    last = max(blocks)
    for b in range(last + 1):
        block = all_blocks[b].to(device)
        more = b < last  # the last collected block's outputs are not needed
        if b in blocks:  # weights stay as they are, so one pass gives both the Grams and the outputs
            linears = {name: get_submodule(block, name) for name in adapter.linear_names}
            grams, outs = _input_grams(block, linears, adapter, inputs, device, gram_dtype, keep=more)
            for name, lin in linears.items():
                G, n_tokens, x_mean = grams[name]
                out[(b, name)] = {"W": lin.weight.data.to("cpu", torch.float32).clone(), "G": G.cpu(),
                                  "n_tokens": n_tokens, "x_mean": x_mean.cpu(),
                                  "role": adapter.role(name) if adapter.group_roles else None}
        elif more:
            outs = run_block(block, inputs, device)
        if more:
            inputs = BlockInputs(outs, inputs.kwargs)
        if driver.offload and device.type != "cpu":
            all_blocks[b].to("cpu")
    return out
