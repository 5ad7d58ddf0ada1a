"""DSnoT: training-free prune-and-grow on top of an initial mask (Zhang et al., ICLR 2024).

Facts from the official code (zyxxmu/DSnoT, ``lib/prune.py: prune_DSnoT``,
``lib/prune_opt.py``, ``lib/layerwrapper.py``, defaults in ``main.py``); the code here is our
own. No weight is updated: the result is ``W ⊙ mask``.

1. **Initial mask** (``initial``): Wanda ``|W_ij|·‖X_j‖`` (default), magnitude ``|W_ij|``, or
   the SparseGPT saliency ``W_ij² / [U_jj]²`` (``U`` the upper Cholesky factor of the damped
   inverse Gram, ``rel_damp`` 0.01 as the official ``percdamp``), ranked within each output
   row: every row prunes the same count (unstructured), or N:M within the row.
2. **Error signal** per row: ``e_i = Σ_{j pruned} W_ij · μ_j · T`` with ``μ = E[x]`` the
   activation mean (``x_mean``) and ``T = threshold_tokens``; ``e_i`` is the expected output
   lost in row ``i``. The official metric is ``W_ij · Σ_tokens x_j / n_sequences``, i.e.
   ``μ_j`` times the sequence length 2048, and ``update_threshold`` 0.1 is on that scale:
   ``threshold_tokens: 2048`` keeps the threshold's meaning at any calibration length.
3. **Cycles** (at most ``max_cycles``, default 50), all rows at once: a row with
   ``|e_i| > update_threshold`` regrows the pruned weight that reduces ``e_i`` the most per unit
   of input variance (largest / smallest ``W_ij μ_j / Var(x_j)^pow_of_var_regrowing``, by the
   sign of ``e_i``) and prunes a kept weight in exchange, so the row's count (or its N:M
   pattern) is unchanged:

   - unstructured: the kept weight with the smallest Wanda score among those whose ``W μ``
     has the sign opposite to ``e_i`` (so pruning it also moves ``e_i`` towards 0);
   - N:M: the kept weight with the smallest *initial* score in the regrown weight's M-group.

   A row stops for good the first cycle it does not swap. With ``same_sign`` the swap must also
   leave ``e_i`` with its initial sign; then ``|e_i|`` only decreases (unstructured). The
   official code checks the sign in N:M mode only (``without_same_sign=True`` by default
   turns it off in the unstructured branch; the N:M branch ignores that flag): ``same_sign:
   null`` (the default) does exactly that; true / false force it for both.
4. **Skipped layers** (``skip_layer``, default ``"mlp"`` as officially): linears of that role
   keep the plain initial mask. Solvers do not see layer names, so this goes through the
   registry's ``layer_config`` hook: the driver asks ``Method.config_for(cfg, role)`` with the
   adapter's role of the linear (``"attn"`` or ``"mlp"``) and gets ``max_cycles=0`` for the
   skipped role. Calling the solver directly applies no skipping.

Departures from the official code:

- ``Var(x_j)`` is the variance pooled over all calibration tokens, ``G_jj − μ_j²``; the
  official code averages the within-sequence variances (the accumulator here keeps no
  per-sequence statistics). Zero variances are clamped to the smallest positive float.
- The pruned count per row is ``round(sparsity · in_features)`` (the repository's rule, so
  ``max_cycles=0`` equals ``wanda`` exactly); the official code floors.
- A row whose candidate lists run out (no pruned weight of the needed sign left, or, in N:M,
  no original kept weight left in the group) stops; the official index walk would run into
  kept entries and change the row's count. This only happens on very narrow layers.
- ``initial: sparsegpt`` uses the real Gram; the official wrapper never accumulates its
  ``H``, so its SparseGPT initial score degenerates to per-row magnitude.
"""
from __future__ import annotations

import dataclasses
import math

import torch

from reprise.llm.gram import damped_inverse_cholesky
from reprise.llm.methods.base import PruneConfig, SolveResult, _fail, _is_int
from reprise.llm.methods.masks import nm_keep, select_mask
from reprise.llm.methods.registry import register

INITIAL = ("wanda", "magnitude", "sparsegpt")
SKIP = ("mlp", "attn", "none")


@dataclasses.dataclass(frozen=True)
class DsnotConfig(PruneConfig):
    initial: str = "wanda"  # official --initial_method
    max_cycles: int = 50  # official --max_cycle_time
    update_threshold: float = 0.1  # official --update_threshold (on the threshold_tokens scale)
    pow_of_var_regrowing: float = 1.0  # official --pow_of_var_regrowing
    same_sign: bool | None = None  # None: as officially (off unstructured, on N:M)
    threshold_tokens: int = 2048  # official calibration sequence length (scale of the error signal)
    skip_layer: str = "mlp"  # official --skip_layer ("self_attn" there is "attn" here, "no_skip" is "none")
    rel_damp: float = 0.01  # damping of the SparseGPT initial score (official percdamp)

    def validate(self) -> None:
        super().validate()
        if self.initial not in INITIAL:
            _fail(self, "initial", self.initial, f"use one of {', '.join(INITIAL)}")
        if not _is_int(self.max_cycles) or self.max_cycles < 0:
            _fail(self, "max_cycles", self.max_cycles, "use an integer >= 0 (0 keeps the initial mask; official 50)")
        for name in ("update_threshold", "pow_of_var_regrowing"):
            v = self._float_field(name)
            if not isinstance(v, float) or not math.isfinite(v) or v < 0:
                _fail(self, name, v, "use a finite number >= 0")
        if self.same_sign is not None and not isinstance(self.same_sign, bool):
            _fail(self, "same_sign", self.same_sign, "use true, false or null (null: as the official code)")
        self._check_pos_int("threshold_tokens")
        if self.skip_layer not in SKIP:
            _fail(self, "skip_layer", self.skip_layer, f"use one of {', '.join(SKIP)}")
        self._check_rel_damp()

    @property
    def sign_check(self) -> bool:
        return self.nm is not None if self.same_sign is None else self.same_sign


def _layer_config(cfg: DsnotConfig, role: str) -> DsnotConfig:
    """The skipped role keeps its initial mask: no refinement cycles."""
    if cfg.skip_layer == role and cfg.max_cycles:
        return dataclasses.replace(cfg, max_cycles=0)
    return cfg


def _initial_score(W: torch.Tensor, G: torch.Tensor, wanda_score: torch.Tensor, cfg: DsnotConfig):
    if cfg.initial == "wanda":
        return wanda_score, None
    if cfg.initial == "magnitude":
        return W.abs(), None
    U, damping = damped_inverse_cholesky(G, cfg.rel_damp)
    score = W ** 2 / torch.diagonal(U)[None, :] ** 2
    if damping.dead:
        score[:, list(damping.dead)] = 0  # as SparseGPT: dead inputs are pruned first
    return score, damping


def _split_by_mask(keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Column indices of the pruned and the kept entries of each row (every row has the same counts)."""
    k = int((~keep[0]).sum())
    idx = torch.argsort(keep.to(torch.int8), dim=1, stable=True)  # pruned (False) first, by position
    return idx[:, :k], idx[:, k:]


class _Walk:
    """A per-row list with one pointer at each end, walked inwards (vectorised over rows)."""

    def __init__(self, cols: torch.Tensor, values: torch.Tensor):
        self.cols, self.values = cols, values
        rows, n = cols.shape
        self.lo = torch.zeros(rows, dtype=torch.long, device=cols.device)
        self.hi = torch.full((rows,), n - 1, dtype=torch.long, device=cols.device)

    def peek(self, from_hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(column, value, valid) at the high end where ``from_hi`` else the low end."""
        ptr = torch.where(from_hi, self.hi, self.lo)
        valid = self.lo <= self.hi
        ptr = ptr.clamp(0, max(self.cols.shape[1] - 1, 0))[:, None]
        return self.cols.gather(1, ptr)[:, 0], self.values.gather(1, ptr)[:, 0], valid

    def advance(self, from_hi: torch.Tensor) -> None:
        self.hi = torch.where(from_hi, self.hi - 1, self.hi)
        self.lo = torch.where(from_hi, self.lo, self.lo + 1)


@register("dsnot", Config=DsnotConfig, kind="prune", needs_gram=True, needs_mean=True, layer_config=_layer_config)
def _dsnot(W: torch.Tensor, G: torch.Tensor, cfg: DsnotConfig, *, x_mean: torch.Tensor) -> SolveResult:
    rows, cols = W.shape
    nm = cfg.nm_pair
    if nm is not None:
        nm_keep(W[:1], *nm)  # fails early, with the message, when cols is not a multiple of M
    diag = torch.diagonal(G)
    wanda_score = W.abs() * diag.clamp(min=0).sqrt()[None, :]  # the very score of `wanda`
    init_score, damping = _initial_score(W, G, wanda_score, cfg)
    keep = select_mask(init_score, cfg, per_row=True)

    D = W * (x_mean * cfg.threshold_tokens)[None, :]  # official DSnoT_metric: W_ij · Σ_t x_j / n_seq
    pruned_idx, kept_idx = _split_by_mask(keep)
    err = D.gather(1, pruned_idx).sum(dim=1)
    err_initial = err.clone()
    cycles = swaps = 0
    if cfg.max_cycles > 0 and pruned_idx.shape[1] > 0 and kept_idx.shape[1] > 0:
        var = (diag - x_mean ** 2).clamp(min=torch.finfo(W.dtype).tiny)
        R = D / var[None, :] ** cfg.pow_of_var_regrowing if cfg.pow_of_var_regrowing else D
        r_vals = R.gather(1, pruned_idx)
        order = torch.argsort(r_vals, dim=1, stable=True)
        regrow = _Walk(pruned_idx.gather(1, order), r_vals.gather(1, order))  # most negative … most positive
        if nm is None:
            # kept weights by Wanda score ascending, then: negative W·μ in that order, zeros, positive
            # W·μ in reverse order, so both ends offer the lowest-Wanda weight of one sign
            by_wanda = kept_idx.gather(1, torch.argsort(wanda_score.gather(1, kept_idx), dim=1, stable=True))
            d = D.gather(1, by_wanda)
            n = by_wanda.shape[1]
            pos = torch.arange(n, device=W.device).expand_as(d)
            key = torch.where(d < 0, pos, torch.where(d > 0, 3 * n - pos, n + pos))
            by_key = torch.argsort(key, dim=1, stable=True)
            prune = _Walk(by_wanda.gather(1, by_key), d.gather(1, by_key))
        else:
            m = nm[1]
            group_score = init_score.masked_fill(~keep, math.inf)  # originally pruned never re-pruned
            offsets = torch.arange(m, device=W.device)
        sign0 = torch.sign(err)
        active = torch.ones(rows, dtype=torch.bool, device=W.device)
        r_ar = torch.arange(rows, device=W.device)
        while cycles < cfg.max_cycles and bool(active.any()):
            cycles += 1
            up = err > 0
            g_col, g_val, g_ok = regrow.peek(up)
            g_ok &= torch.where(up, g_val > 0, g_val < 0)
            regrow.advance(up)
            if nm is None:
                down = err < 0
                p_col, p_val, p_ok = prune.peek(down)
                p_ok &= torch.where(down, p_val > 0, p_val < 0)
                prune.advance(down)
            else:
                start = g_col - g_col % m
                block = start[:, None] + offsets[None, :]
                block_vals = group_score.gather(1, block)
                arg = torch.argsort(block_vals, dim=1, stable=True)[:, :1]
                p_col = (start[:, None] + arg)[:, 0]
                p_ok = torch.isfinite(block_vals.gather(1, arg)[:, 0])
            g_d, p_d = D[r_ar, g_col], D[r_ar, p_col]
            after = err + p_d - g_d
            upd = active & g_ok & p_ok & (err.abs() > cfg.update_threshold)
            if cfg.sign_check:
                upd &= torch.sign(after) == sign0
            r = r_ar[upd]
            keep[r, p_col[upd]] = False
            keep[r, g_col[upd]] = True
            if nm is not None:
                group_score[r, p_col[upd]] = math.inf
            err = torch.where(upd, after, err)
            swaps += int(upd.sum())
            active = upd
    extras = {"cycles": cycles, "swaps": swaps,
              "recon_error_initial": err_initial / cfg.threshold_tokens,  # Σ_pruned W_ij μ_j per row
              "recon_error": err / cfg.threshold_tokens}
    return SolveResult(weight=W * keep, mask=keep, damping=damping, extras=extras)
