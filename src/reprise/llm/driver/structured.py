"""The structured-pruning driver (OSSCAR, spec §4.4): per block, prune attention units and FFN
neurons as input groups of their consumer linears, then propagate through the pruned block.

As OSSCAR's ``opt_prune.py`` does, only the two consumers are solved (``out_proj``/``o_proj`` and
``fc2``/``down_proj``), both from the Grams of one dense forward of the block (the FFN Gram is not
refreshed after the attention is pruned), and the pruned block is re-run to give the next block
its inputs. Zeroing a unit's consumer columns makes its producer rows irrelevant; the keep-set
returned here is what ``reprise.llm.export.shrink_model`` removes physically.

The unit layout (consumer name, columns per unit, units per block, for ``"heads"`` and
``"neurons"``) comes from the caller (``reprise.llm.export.unit_layout``), so the driver keeps to
its dependencies (methods and models only).

The block loop (capture, iterate, propagate, per-block resume) is the layer-wise driver's
``drive_blocks``; this module supplies only the per-block solve.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn as nn

from reprise.io import ReproError
from reprise.llm.driver.config import DriverConfig
from reprise.llm.driver.sequential import drive_blocks
from reprise.llm.gram import GramAccumulator
from reprise.llm.methods import get_method
from reprise.llm.models.adapters import get_submodule
from reprise.llm.models.blockwise import BlockInputs, run_block

log = logging.getLogger("reprise.driver")
KINDS = ("heads", "neurons")


@dataclass
class StructuredResult:
    rows: list[dict[str, Any]]  # per block and kind: objective, rel_err, units kept, seconds
    keep: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)  # kept units per block
    seconds: float = 0.0
    fingerprint: str = ""  # the resume fingerprint (see ``reprise.llm.driver.sequential.run_fingerprint``)
    resumed_blocks: list[int] = field(default_factory=list)  # blocks restored from the resume state


def is_structured(method) -> bool:
    """Structured solvers (OSSCAR, MP, MP+, ZipLM) prune input groups of the consumer linears."""
    from reprise.llm.methods.osscar import StructuredConfig

    return issubclass(method.Config, StructuredConfig)


def check_config(method, config: Mapping[str, Any]) -> None:
    """Validate a structured run's config (the solver's keys plus ``heads_sparsity`` /
    ``neurons_sparsity``) before any model is loaded."""
    for kind in KINDS:
        _kind_config(method, config, kind, 1)


def _kind_config(method, config: Mapping[str, Any], kind: str, width: int) -> Any:
    """The method's config for one kind: ``config`` with ``<kind>_sparsity`` (if given) as the
    sparsity and the unit width as the group size."""
    cfg = {k: v for k, v in config.items() if k not in {f"{kk}_sparsity" for kk in KINDS}}
    if f"{kind}_sparsity" in config:
        cfg["sparsity"] = config[f"{kind}_sparsity"]
    cfg["group_size"] = width
    return method.make_config(cfg)


def _solve_block(b: int, block: nn.Module, inputs: BlockInputs, method, cfgs: Mapping[str, Any],
                 layout: Mapping[str, Mapping[str, Any]], kinds: tuple[str, ...], gram_dtype: torch.dtype,
                 device: torch.device) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], list[dict[str, Any]]]:
    """Prune one block in place: both consumer Grams from one dense pass, then one solve per kind.

    Returns the consumer weights (block-local names), the kept units as extras ``"<b>.<kind>"``,
    and the log rows."""
    consumers = {k: get_submodule(block, layout[k]["consumer"]) for k in kinds}
    accs = {k: GramAccumulator(lin.in_features, dtype=gram_dtype, device=device) for k, lin in consumers.items()}
    handles = [lin.register_forward_hook(lambda _m, inp, _o, acc=accs[k]: acc.add(inp[0].detach()))
               for k, lin in consumers.items()]
    try:
        run_block(block, inputs, device, keep=False)  # one dense pass gives both Grams (no refresh in between)
    finally:
        for h in handles:
            h.remove()
    tensors, keep, rows = {}, {}, []
    for kind in kinds:
        lin, G = consumers[kind], accs[kind].gram()
        W = lin.weight.data.to(torch.float32)
        t0 = time.perf_counter()
        try:
            res = method.solve(W, G, cfgs[kind])
        except ReproError as exc:
            raise ReproError(f"block {b} {layout[kind]['consumer']}: {exc}") from exc
        seconds = time.perf_counter() - t0
        kept = res.extras.get("kept_groups")
        if kept is None:
            raise ReproError(f"{method.name} returned no kept_groups; it is not a structured solver")
        lin.weight.data.copy_(res.weight.to(lin.weight.dtype))
        tensors[f"{layout[kind]['consumer']}.weight"] = lin.weight.data
        keep[f"{b}.{kind}"] = torch.as_tensor(kept, dtype=torch.long).cpu()
        row = {"block": b, "layer": layout[kind]["consumer"], "kind": kind, "method": method.name,
               "units": int(layout[kind]["units"]), "kept": int(len(kept)),
               "objective": float(res.objective), "ref_energy": float(res.ref_energy),
               "rel_err": float(res.rel_err), "seconds": round(seconds, 4), "device": str(device)}
        rows.append(row)
        log.info("block %2d %-18s %s kept %d/%d rel_err=%.4f t=%.2fs", b, row["layer"], kind, row["kept"],
                 row["units"], row["rel_err"], seconds)
    return tensors, keep, rows


@torch.no_grad()
def prune_structured(model: nn.Module, calib_ids: torch.Tensor, method_name: str, config: Mapping[str, Any],
                     layout: Mapping[str, Mapping[str, Any]], driver: DriverConfig | None = None,
                     kinds: tuple[str, ...] = KINDS, resume_dir: str | Path | None = None,
                     data_fingerprint: Any = None, progress: bool = False) -> StructuredResult:
    """Prune ``model`` in place: every block's attention units and FFN neurons by ``method_name``
    (``osscar``, ``mp``, ``mp-plus``, ``ziplm``: registered structured solvers taking ``group_size``).

    ``config`` is the solver's config; ``heads_sparsity``/``neurons_sparsity`` override its
    ``sparsity`` per kind (OSSCAR's ``sp_out``/``sp``). Returns the per-block log and keep-set.
    ``resume_dir`` enables per-block resume through the layer-wise driver's loop and
    ``ResumeState``: each finished block's consumer weights, kept units and log rows are saved, and
    a restart with the same fingerprint (model, calibration, method, per-kind configs, kinds,
    layout, driver, code; ``data_fingerprint`` as in ``compress_model``) restores them.
    """
    driver = driver or DriverConfig()
    method = get_method(method_name)
    unknown = [k for k in kinds if k not in KINDS or k not in layout]
    if unknown:
        raise ReproError(f"prune_structured: unknown unit kind(s) {unknown}; use {list(KINDS)} from the layout")
    kinds = tuple(kinds)
    cfgs = {k: _kind_config(method, config, k, int(layout[k]["width"])) for k in kinds}
    if calib_ids.ndim != 2:
        raise ReproError(f"calibration tokens must be [n, L], got shape {tuple(calib_ids.shape)}")
    gram_dtype = getattr(torch, driver.gram_dtype)
    used_layout = {k: {f: layout[k][f] for f in ("consumer", "width", "units")} for k in kinds}

    def step(b: int, block: nn.Module, inputs: BlockInputs, device: torch.device):
        return _solve_block(b, block, inputs, method, cfgs, layout, kinds, gram_dtype, device)

    run = drive_blocks(model, calib_ids, driver, step, data_fingerprint=data_fingerprint, resume_dir=resume_dir,
                       fingerprint_parts={"driver_kind": "structured", "method": method.name, "kinds": list(kinds),
                                          "config": {k: c.to_dict() for k, c in cfgs.items()},
                                          "layout": used_layout},
                       desc=f"{method.name} (structured)", progress=progress)
    keep: dict[int, dict[str, torch.Tensor]] = {}
    for name, kept in run.extras.items():
        b, kind = name.split(".", 1)
        keep.setdefault(int(b), {})[kind] = kept.to(torch.long)
    keep = {b: {k: keep[b][k] for k in kinds} for b in sorted(keep)}
    rows = sorted(run.rows, key=lambda r: (r["block"], kinds.index(r["kind"])))
    return StructuredResult(rows=rows, keep=keep, seconds=run.seconds, fingerprint=run.fingerprint,
                            resumed_blocks=run.resumed_blocks)
