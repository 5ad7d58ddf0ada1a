"""GPTQ: quantize columns one at a time, compensating each rounding error on the free columns.

Facts from the GPTQ paper and spec §2.9 (blocksize 128, percdamp 0.01). Two choices to know:

- Dead inputs (``G_jj = 0``) have their weight columns zeroed before the sweep, as GPTQ does;
  they cannot change the layer output on the calibration data.
- With groups, a group's grid is fit when its first column is reached, on the weights as they
  are then (error compensation included, also for columns past the current lazy block). The
  reference code fits on the block-start weights when groups are smaller than the block; ours
  equals the unbatched algorithm for every block size. With ``act_order`` groups follow the
  processing order and ``g_idx`` maps each original column to its grid; ``static_groups`` fits
  the grids on the original consecutive columns before the sweep instead.
- ``error_feedback=False`` skips the OBS update: the result is then RTN's, bit for bit
  (without act_order), which is how the tests tie the two together.
"""
from __future__ import annotations

import dataclasses

import torch

from reprise.llm.gram import damped_inverse_cholesky
from reprise.llm.methods.base import QuantConfig, SolveResult
from reprise.llm.methods.obs_sweep import ObsSweep
from reprise.llm.methods.quant_grid import fit_grid, quant_record, quantize
from reprise.llm.methods.registry import register
from reprise.llm.methods.rtn import rtn_quantize


@dataclasses.dataclass(frozen=True)
class GptqConfig(QuantConfig):
    act_order: bool = False
    block_size: int = 128
    rel_damp: float = 0.01
    static_groups: bool = False
    error_feedback: bool = True

    def validate(self) -> None:
        super().validate()
        for name in ("act_order", "static_groups", "error_feedback"):
            self._check_bool(name)
        self._check_pos_int("block_size")
        self._check_rel_damp()


@register("gptq", Config=GptqConfig, kind="quant", needs_gram=True)
def _gptq(W: torch.Tensor, G: torch.Tensor, cfg: GptqConfig) -> SolveResult:
    rows, cols = W.shape
    gs = cfg.group_size if cfg.group_size > 0 else cols
    order = (torch.argsort(torch.diagonal(G), descending=True, stable=True) if cfg.act_order
             else torch.arange(cols, device=W.device))  # order[k]: original column fixed k-th
    U, damping = damped_inverse_cholesky(G[order][:, order] if cfg.act_order else G, cfg.rel_damp)
    Wp = W[:, order].clone()
    if damping.dead:
        Wp[:, list(damping.dead)] = 0
        damping = dataclasses.replace(damping, dead=tuple(sorted(order[list(damping.dead)].tolist())))

    scales: list[torch.Tensor] = []
    zeros: list[torch.Tensor] = []
    if cfg.static_groups:
        W0 = torch.empty_like(Wp)
        W0[:, order] = Wp
        _, s, z = rtn_quantize(W0, cfg.bits, gs, cfg.sym)
        scales, zeros = list(s.unbind(1)), list(z.unbind(1))
        group_of = (order // gs).tolist()
    else:
        group_of = (torch.arange(cols) // gs).tolist()

    def fix_column(sweep: ObsSweep, k: int, w: torch.Tensor) -> torch.Tensor:
        if not cfg.static_groups and k % gs == 0:
            s, z = fit_grid(sweep.current(k, k + gs), cfg.bits, cfg.sym)
            scales.append(s)
            zeros.append(z)
        g = group_of[k]
        return quantize(w, scales[g], zeros[g], cfg.bits)

    Q = ObsSweep(Wp, U, cfg.block_size, cfg.error_feedback).run(fix_column)
    weight = torch.empty_like(Q)
    weight[:, order] = Q
    g_idx = torch.empty(cols, dtype=torch.long, device=W.device)
    g_idx[order] = torch.tensor(group_of, dtype=torch.long, device=W.device)
    extras = {"perm": order.cpu()} if cfg.act_order else {}
    quant = quant_record(torch.stack(scales, 1), torch.stack(zeros, 1), g_idx, cfg.bits, cfg.group_size)
    return SolveResult(weight=weight, quant=quant, damping=damping, extras=extras)
