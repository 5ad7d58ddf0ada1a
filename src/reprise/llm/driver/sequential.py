"""The one sequential block driver: capture, Gram hooks, per-linear solves, propagation, resume.

For each block in order: accumulate the Gram of every linear's inputs over the calibration
tokens (per true-sequential group, or all linears from one pass of the uncompressed block),
solve each linear through ``reprise.llm.methods``, write the result into the block, then run
the calibration inputs through the *compressed* block so the next block sees what the
compressed model produces (llm-compression spec §1.6).

``drive_blocks`` is that block loop (capture, iterate, restore or solve, propagate, resume
bookkeeping), shared with the structured driver (``reprise.llm.driver.structured``).
"""
from __future__ import annotations

import hashlib
import logging
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

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
    extras: dict[str, torch.Tensor] = field(default_factory=dict)  # packed masks, quantization, S + BA parts
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


def _float_matrix(v: Any) -> bool:
    return isinstance(v, torch.Tensor) and v.is_floating_point() and v.ndim == 2


def _lowrank_extras(prefix: str, res: Any, extras: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """A sparse + low-rank result (HASSLE-free, OATS): ``lora_A`` (r × in), ``lora_B`` (out × r) as
    solved, and ``sparse_values``, S at the mask's positions in row-major order (with the packed
    mask that is all of S, at one float per kept weight). Rank 0 keeps only the sparse values."""
    A, B, S, mask = extras["A"], extras["B"], extras.get("sparse"), getattr(res, "mask", None)
    if A.shape[0] != B.shape[1]:
        raise ReproError(f"{prefix}: low-rank factors do not chain: A is {tuple(A.shape)}, B is {tuple(B.shape)}")
    out: dict[str, torch.Tensor] = {}
    if A.shape[0] > 0:
        out[f"{prefix}.lora_A"] = A.detach().to("cpu", torch.float32).contiguous()
        out[f"{prefix}.lora_B"] = B.detach().to("cpu", torch.float32).contiguous()
    if _float_matrix(S) and mask is not None:
        S, keep = S.detach().to("cpu", torch.float32), mask.detach().to("cpu", torch.bool)
        if S.shape != keep.shape or bool((S[~keep] != 0).any()):
            # values outside the mask would be lost by the compact form: refuse rather than drift
            raise ReproError(f"{prefix}: the sparse part is not supported on the result's mask")
        out[f"{prefix}.sparse_values"] = S[keep].contiguous()  # boolean indexing walks row-major
    return out


def _result_extras(prefix: str, res: Any) -> dict[str, torch.Tensor]:
    """What a layer's solve adds to compression.safetensors: its keep-mask and any other boolean
    tensor of ``extras`` (e.g. QuantEase's ``outlier_mask``) bit-packed, the quantization record,
    and for a sparse + low-rank result its factors and sparse values (``_lowrank_extras``)."""
    out: dict[str, torch.Tensor] = {}
    if getattr(res, "mask", None) is not None:
        out.update({f"{prefix}.{k}": v for k, v in pack_mask(res.mask).items()})
    extras = getattr(res, "extras", None) or {}
    for name, v in extras.items():
        if isinstance(v, torch.Tensor) and v.dtype == torch.bool:
            out.update({f"{prefix}.{k}": t for k, t in pack_mask(v, name).items()})
    if _float_matrix(extras.get("A")) and _float_matrix(extras.get("B")):
        out.update(_lowrank_extras(prefix, res, extras))
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


BlockStep = Callable[[int, nn.Module, BlockInputs, torch.device],
                     tuple[Mapping[str, torch.Tensor], dict[str, torch.Tensor], list[dict[str, Any]]]]


@dataclass
class BlockRun:
    """What ``drive_blocks`` returns: the log rows and extras of every block in the slice (solved or
    resumed, in block order), the run's fingerprint and the blocks taken from the resume state."""
    rows: list[dict[str, Any]]
    extras: dict[str, torch.Tensor]
    fingerprint: str
    resumed_blocks: list[int]
    seconds: float


def _tensor_bytes(t: torch.Tensor) -> memoryview:
    t = t.detach().to("cpu").contiguous().reshape(-1)
    return memoryview(t.view(torch.uint8).numpy()) if t.numel() else memoryview(b"")


def model_identity(model: nn.Module, data_fingerprint: Any = None) -> str | None:
    """What identifies the model's weights in a resume fingerprint: nothing extra when
    ``data_fingerprint`` carries a ``weights`` hash (the pipeline's, from the model's source record),
    else a sha256 over the model's class, parameter names, dtypes, shapes and bytes."""
    if isinstance(data_fingerprint, Mapping) and data_fingerprint.get("weights"):
        return None
    h = hashlib.sha256(type(model).__name__.encode())
    for name, t in model.state_dict().items():
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(_tensor_bytes(t))
    return h.hexdigest()[:16]


def run_fingerprint(model: nn.Module, calib_ids: torch.Tensor, data_fingerprint: Any = None,
                    **parts: Any) -> str:
    """The resume fingerprint of one solve: ``parts`` (method, config, driver settings, ...), the model
    (``model_identity``), the calibration tokens (shape and bytes), ``data_fingerprint`` and the code."""
    calib_sha = hashlib.sha256(_tensor_bytes(calib_ids)).hexdigest()[:16]
    return fingerprint({**parts, "data": data_fingerprint, "model": model_identity(model, data_fingerprint),
                        "calib_shape": list(calib_ids.shape), "calib_sha256": calib_sha, "code": code_fingerprint()})


def _restore_block(block: nn.Module, tensors: Mapping[str, torch.Tensor], b: int) -> None:
    """Write a finished block's saved tensors (block-local state-dict names) back into ``block``."""
    state = block.state_dict()
    unknown = sorted(set(tensors) - set(state))
    if unknown:
        raise ReproError(f"resume state of block {b} holds tensors {unknown} the block does not have; "
                         "delete the resume directory to start afresh")
    for name, t in tensors.items():
        if state[name].shape != t.shape:
            raise ReproError(f"resume state of block {b}: {name} has shape {tuple(t.shape)}, the block's is "
                             f"{tuple(state[name].shape)}; delete the resume directory to start afresh")
        state[name].copy_(t)


def drive_blocks(model: nn.Module, calib_ids: torch.Tensor, driver: DriverConfig, step: BlockStep, *,
                 fingerprint_parts: Mapping[str, Any], data_fingerprint: Any = None,
                 resume_dir: str | Path | None = None, desc: str = "", progress: bool = True) -> BlockRun:
    """The one block loop of both drivers: capture the inputs of block 0, then for every block up to
    ``driver.blocks``' stop: solve it with ``step`` (blocks of the slice only) or restore it from the
    resume state, and propagate the calibration inputs through the block as it now is.

    ``step(b, block, inputs, device)`` compresses ``block`` (on ``device``) in place and returns the
    tensors to persist for it (block-local state-dict names; on resume they are written back), its
    extras and its log rows. Each finished block is saved through ``ResumeState`` under the
    fingerprint of ``fingerprint_parts`` (see ``run_fingerprint``), so a restarted run with the same
    fingerprint restores the finished blocks and recomputes their outputs by one plain forward.
    """
    if calib_ids.ndim != 2 or calib_ids.dtype not in (torch.int64, torch.int32):
        raise ReproError(f"calibration tokens must be an integer tensor [n, L], got {tuple(calib_ids.shape)} {calib_ids.dtype}")
    adapter = adapter_for(model)
    device = pick_device(driver.device)
    blocks = blocks_of(model, adapter)
    start, stop = driver.blocks or (0, len(blocks))
    if stop > len(blocks):
        raise ReproError(f"driver.blocks {list(driver.blocks)} exceeds the model's {len(blocks)} blocks")
    fp = run_fingerprint(model, calib_ids, data_fingerprint, driver=driver.to_dict(), **fingerprint_parts)
    state = ResumeState(resume_dir, fp)
    resumed = sorted(state.finished)
    t_start = time.perf_counter()
    inputs = capture_inputs(model, adapter, calib_ids, driver.batch_size, device,
                            store_device="cpu" if driver.offload else device)
    all_extras: dict[str, torch.Tensor] = {}
    bar = tqdm(range(stop), desc=desc, unit="block", disable=not progress)
    for b in bar:
        block = blocks[b].to(device)
        if b >= start:
            if b in state.finished:
                tensors, extras = state.block_tensors(b)
                _restore_block(block, tensors, b)
                log.info("block %2d restored from the resume state (not solved again)", b)
            else:
                tensors, extras, rows = step(b, block, inputs, device)
                state.save_block(b, tensors, extras, rows)
                if rows:
                    bar.set_postfix(rel_err=f"{max(r['rel_err'] for r in rows):.3f}")
            all_extras.update(extras)
        if b + 1 < stop:  # the last compressed block's outputs are not needed
            inputs = BlockInputs(run_block(block, inputs, device, store_device=inputs.hidden[0].device), inputs.kwargs)
        if driver.offload and device.type != "cpu":
            blocks[b].to("cpu")
    return BlockRun(rows=list(state.rows), extras=all_extras, fingerprint=fp, resumed_blocks=resumed,
                    seconds=time.perf_counter() - t_start)


def compress_model(model: nn.Module, calib_ids: torch.Tensor, method_name: str, method_config: dict[str, Any],
                   driver: DriverConfig | None = None, resume_dir: str | Path | None = None,
                   data_fingerprint: Any = None, progress: bool = True) -> CompressionResult:
    """Compress ``model`` in place, block by block, with the registered method ``method_name``.

    ``calib_ids`` is the calibration token tensor [n, L]. ``resume_dir`` enables per-block resume;
    ``data_fingerprint`` identifies model weights and data for it (hashes from provenance; without
    a weights hash the model's own weights are hashed).
    """
    driver = driver or DriverConfig()
    method = get_method(method_name)
    cfg = method.Config.from_dict(method_config)
    adapter = adapter_for(model)
    groups = adapter.groups(driver.true_sequential)

    def step(b: int, block: nn.Module, inputs: BlockInputs, device: torch.device):
        rows, extras = _compress_block(b, block, inputs, adapter, groups, method, cfg, driver, device)
        return block.state_dict(), extras, rows

    run = drive_blocks(model, calib_ids, driver, step, data_fingerprint=data_fingerprint, resume_dir=resume_dir,
                       fingerprint_parts={"method": method.name, "config": cfg.to_dict()}, desc=method.name,
                       progress=progress)
    rows = sorted(run.rows, key=lambda r: (r["block"], adapter.linear_names.index(r["layer"])))
    return CompressionResult(rows=rows, extras=run.extras, seconds=run.seconds, fingerprint=run.fingerprint,
                             resumed_blocks=run.resumed_blocks)


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
