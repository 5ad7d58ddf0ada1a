"""OSSCAR (spec §4) and its structured baselines MP, MP+ and ZipLM: pruning whole input groups.

What is pruned (spec §4.1). The inputs of a consumer layer (``nn.Linear`` layout, ``W`` is
outputs × inputs) are split into ``g = in_features / group_size`` groups of ``group_size``
consecutive columns: an attention head is ``head_dim`` columns of ``out_proj``/``o_proj``, an
FFN neuron one column of ``fc2``/``down_proj``. Removing a group zeroes its columns.

Problem (spec §4.2). With ``λ = rel_damp · mean(diag G)`` and ``H = G + λI`` (dead inputs, with
``G_jj = 0``, get ``H_jj = 1`` and their columns of ``W₀`` are zeroed, as in the shared damping
policy), the solvers minimise the *ridge* objective

    f(W) = tr((W − W₀) H (W − W₀)ᵀ)     s.t. at most ``s`` groups of columns nonzero,

which is twice the spec's ``½tr((W − W₀)ᵀ H (W − W₀))`` in the transposed layout. With
``C = W₀ H`` the best weights on a kept set ``S`` are ``W_S = C_S (H_SS)⁻¹`` (one solve for every
output row: all rows share the support). ``Method.solve`` reports the undamped
``tr(ΔW G ΔWᵀ)``; ``extras["objective_trace"]`` holds values of the ridge ``f``.
Budget (spec §4.2, [CODE]): ``s = int(g·(1 − sparsity))`` groups kept (a 1e-9 guard absorbs
float error in the product), so ``g − s`` are removed; groups whose columns of ``W₀`` are already
all zero count as removed first (spec §4.3, reimplemented as an all-zero test, not the official
code's signed-sum quirk), so when more than ``g − s`` groups are zero all of them stay removed.

``osscar`` (spec §4.3). Stage 1, greedy backward elimination: with ``Hinv = H⁻¹`` (fp64, spec
§4.4: the post-publication code; the paper used fp32) and ``B`` the best weights on the current
kept set (``B = W₀`` at the start), the exact increase of ``f`` from removing group ``u`` and
re-optimising the rest is ``cost_u = tr(B_u (Hinv_uu)⁻¹ B_uᵀ)`` (block OBS). Each round removes
the ``t'`` cheapest kept groups ``U`` jointly, ``B ← B − B_U (Hinv_UU)⁻¹ Hinv_U,:``,
``Hinv ← Hinv − Hinv_:,U (Hinv_UU)⁻¹ Hinv_U,:`` (rank ``κt'`` Schur downdate, no refactorisation),
in ``T = max(1, ⌊R/t⌋)`` rounds for ``R`` removals, the remainder spread over the first rounds;
``t = per_round`` (spec defaults: 10 for neurons, 2 for heads, so ``None`` resolves by
``group_size``). Then the exact refit on the surviving support. Stage 2 (``local_search``, off
by default as in the official CLI): per iteration, (i) remove the ``r = swap_size`` cheapest kept
groups by the same cost and downdate, (ii) for every removed group ``a`` compute the exact
decrease of ``f`` from adding it back, ``gain_a = tr(ρ_a C_a⁻¹ ρ_aᵀ)`` with the Schur complement
``C_a = H_aa − H_a,S (H_SS)⁻¹ H_S,a`` and ``ρ_a = (W₀H − BH)_a``, and add back the ``r`` with the
largest gains, (iii) refit exactly on the new support, (iv) accept if ``f`` fell by more than
1e-9 relative (the spec's test on its negative ``f``, rewritten for this nonnegative one),
otherwise stop. At most ``local_iter`` iterations; ``swap_size`` defaults to 10 for neurons and
5 for heads. Every accepted iteration appends its ``f`` to ``objective_trace``, so the trace is
strictly decreasing after its first entry (the Stage-1 result).

``ziplm``: the ZipLM-style structured OBS baseline (Kurtic et al. 2023, spec §4.7 [INF]): one
group removed per step, the group of smallest saliency ``tr(W_u ((H⁻¹)_uu)⁻¹ W_uᵀ)``, then the
full OBS update of the remaining weights and the inverse. In exact arithmetic this is *the same
greedy* as OSSCAR's Stage 1 with ``per_round=1``; the differences from ``osscar`` are only that
OSSCAR removes ``per_round`` groups per downdate (cheaper, possibly slightly worse) and may run
the swap local search. What is not reproduced here of ZipLM: its inference-aware (latency
table) search over per-layer sparsity levels, its handling of several structure types in one
layer, and any fine-tuning; this is the layer-wise one-shot core only.

``mp`` (spec §4.7 [CODE]): rank groups by the ℓ1 norm of their columns of ``W₀`` (``norm="l1"``,
the official code) or by the Frobenius norm (``norm="fro"``), zero the smallest, no update.
``mp-plus``: MP's support, then the exact refit ``W_S = C_S (H_SS)⁻¹``.

Outputs: the weight (removed columns exactly zero), ``mask`` (True = kept, whole columns) and
``extras`` ``kept_groups`` / ``removed_groups`` (int64 group indices, ascending), ``swaps``
(accepted local-search iterations) and ``objective_trace`` (list of ridge ``f`` values).
Everything runs on the device of ``W``/``G``, in fp64; the weight is returned in W's dtype.
"""
from __future__ import annotations

import dataclasses
import math

import torch

from reprise.io import ReproError
from reprise.llm.gram import DampingRecord, damped_cholesky
from reprise.llm.methods.base import MethodConfig, SolveResult, _fail, _is_int
from reprise.llm.methods.registry import register

F64 = torch.float64
#: relative improvement an accepted swap must reach (spec §4.3 (iv))
ACCEPT_RTOL = 1e-9
#: group scores of the MP baseline
NORMS = ("l1", "fro")


# --------------------------------------------------------------------------- configs

@dataclasses.dataclass(frozen=True)
class StructuredConfig(MethodConfig):
    """Remove ``sparsity`` of the input groups of ``group_size`` consecutive columns.

    ``rel_damp``: the ridge ``λ = rel_damp · mean(diag G)`` of the refit and the greedy (spec
    §4.2's λ₂ = 0.01).
    """

    group_size: int = 1
    sparsity: float = 0.5
    rel_damp: float = 0.01

    def validate(self) -> None:
        self._check_pos_int("group_size")
        self._check_fraction("sparsity", "use the fraction of input groups to remove, in [0, 1)")
        self._check_rel_damp()


@dataclasses.dataclass(frozen=True)
class MpConfig(StructuredConfig):
    """``norm``: ``"l1"`` (the official code's group magnitude) or ``"fro"``."""

    norm: str = "l1"

    def validate(self) -> None:
        super().validate()
        if self.norm not in NORMS:
            _fail(self, "norm", self.norm, f"use one of {', '.join(map(repr, NORMS))}")


@dataclasses.dataclass(frozen=True)
class OsscarConfig(StructuredConfig):
    """``per_round``: groups removed per greedy round (None: 10 for ``group_size`` 1, else 2);
    ``local_search``: run Stage 2; ``swap_size``: groups swapped per local-search iteration
    (None: 10 for ``group_size`` 1, else 5); ``local_iter``: at most this many iterations."""

    per_round: int | None = None
    local_search: bool = False
    swap_size: int | None = None
    local_iter: int = 30

    def validate(self) -> None:
        super().validate()
        for name in ("per_round", "swap_size"):
            v = getattr(self, name)
            if v is not None and (not _is_int(v) or v < 1):
                _fail(self, name, v, "use a positive integer, or null for the spec default by group_size")
        self._check_bool("local_search")
        v = self.local_iter
        if not _is_int(v) or v < 0:
            _fail(self, "local_iter", v, "use an integer >= 0 (30 is the official default)")

    @property
    def round_size(self) -> int:
        return self.per_round if self.per_round is not None else (10 if self.group_size == 1 else 2)

    @property
    def swap_count(self) -> int:
        return self.swap_size if self.swap_size is not None else (10 if self.group_size == 1 else 5)


# --------------------------------------------------------------------------- the problem

def kept_count(units: int, sparsity: float) -> int:
    """Groups kept at ``sparsity``: ``⌊units·(1 − sparsity)⌋`` (the tolerance absorbs float error,
    so 0.3 of 10 keeps 7)."""
    return math.floor(units * (1.0 - sparsity) + 1e-9)


class GroupProblem:
    """The ridge problem of one layer in fp64: ``H``, ``C = W₀H``, the group layout and the budget."""

    def __init__(self, W: torch.Tensor, G: torch.Tensor, cfg: StructuredConfig, method: str):
        m, p = W.shape
        k = cfg.group_size
        if p % k:
            raise ReproError(f"{method}: group_size={k} does not divide in_features={p}; use a group_size "
                             f"that divides the layer's inputs (head_dim for attention heads, 1 for neurons)")
        self.m, self.p, self.k, self.g = m, p, k, p // k
        L, rec = damped_cholesky(G.to(F64), cfg.rel_damp)
        self.damping: DampingRecord = rec
        H = G.to(F64).clone()
        diag = H.diagonal()
        dead = diag == 0
        diag[dead] = 1.0
        diag.add_(rec.absolute)
        self.H = H
        self.L = L
        W0 = W.to(F64).clone()
        if rec.dead:
            W0[:, list(rec.dead)] = 0
        self.W0 = W0
        self.C = W0 @ H
        self.energy = float((self.C * W0).sum())  # tr(W₀ H W₀ᵀ) = f(0)
        self.zero_groups = (W0.reshape(m, self.g, k) == 0).all(dim=2).all(dim=0)
        kept = kept_count(self.g, cfg.sparsity)
        self.n_remove = max(self.g - kept, int(self.zero_groups.sum()))

    def cols(self, groups: torch.Tensor) -> torch.Tensor:
        """Column indices of the given groups (int64, group order kept)."""
        ar = torch.arange(self.k, device=self.H.device)
        return (groups[:, None] * self.k + ar[None, :]).reshape(-1)

    def col_mask(self, kept: torch.Tensor) -> torch.Tensor:
        return kept.repeat_interleave(self.k)

    def objective(self, B: torch.Tensor) -> float:
        """The ridge objective ``f(B) = tr((W₀ − B) H (W₀ − B)ᵀ)``."""
        D = self.W0 - B
        return float(((D @ self.H) * D).sum())

    def refit(self, kept: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, Hinv)``: the best weights on the kept groups and ``(H_SS)⁻¹`` embedded in p × p
        (zero outside S), both fp64."""
        S = torch.nonzero(self.col_mask(kept)).flatten()
        B = torch.zeros_like(self.W0)
        Hinv = torch.zeros_like(self.H)
        if S.numel() == 0:
            return B, Hinv
        L = torch.linalg.cholesky(self.H[S[:, None], S[None, :]])
        inv = torch.cholesky_inverse(L)
        B[:, S] = self.C[:, S] @ inv
        Hinv[S[:, None], S[None, :]] = inv
        return B, Hinv

    def full_inverse(self) -> torch.Tensor:
        return torch.cholesky_inverse(self.L)

    # ---- closed forms
    def removal_costs(self, B: torch.Tensor, Hinv: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
        """``cost_u = tr(B_u (Hinv_uu)⁻¹ B_uᵀ)`` for every group (``inf`` for removed groups)."""
        g, k, m = self.g, self.k, self.m
        if k == 1:  # neurons: cost_u = ‖B_:,u‖² / Hinv_uu (spec §4.3, vectorised)
            d = torch.where(kept, Hinv.diagonal(), torch.ones_like(Hinv.diagonal()))
            return ((B * B).sum(0) / d).masked_fill(~kept, math.inf)
        idx = torch.arange(self.p, device=B.device).reshape(g, k)
        blocks = Hinv[idx[:, :, None], idx[:, None, :]].clone()  # (g, k, k)
        eye = torch.eye(k, dtype=F64, device=B.device)
        blocks[~kept] = eye
        Bt = B.reshape(m, g, k).permute(1, 2, 0)  # (g, k, m)
        X = torch.linalg.solve(blocks, Bt)
        cost = (Bt * X).sum(dim=(1, 2))
        return cost.masked_fill(~kept, math.inf)

    def addition_gains(self, B: torch.Tensor, Hinv: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
        """``gain_a = tr(ρ_a C_a⁻¹ ρ_aᵀ)``: the exact decrease of ``f`` from adding group ``a`` back
        (``-inf`` for kept groups), with ``C_a = H_aa − H_a,: Hinv H_:,a`` and ``ρ = W₀H − BH``.
        Only the removed groups' columns are formed: ``O(p²·|removed|·κ + m·p·|removed|·κ)``."""
        k, m = self.k, self.m
        gain = torch.full((self.g,), -math.inf, dtype=F64, device=B.device)
        removed = torch.nonzero(~kept).flatten()
        if removed.numel() == 0:
            return gain
        cols = self.cols(removed)  # (r·k,)
        Hc = self.H[:, cols]  # (p, r·k)
        Schur = Hc[cols, :] - Hc.T @ (Hinv @ Hc)  # (r·k, r·k); only its diagonal blocks are used
        r = removed.numel()
        ar = torch.arange(r * k, device=B.device).reshape(r, k)
        blocks = Schur[ar[:, :, None], ar[:, None, :]]
        blocks = 0.5 * (blocks + blocks.transpose(1, 2))
        R = self.C[:, cols] - B @ Hc  # (m, r·k)
        Rt = R.reshape(m, r, k).permute(1, 2, 0)  # (r, k, m)
        X = torch.linalg.solve(blocks, Rt)
        gain[removed] = (Rt * X).sum(dim=(1, 2))
        return gain

    def remove(self, B: torch.Tensor, Hinv: torch.Tensor, kept: torch.Tensor, groups: torch.Tensor,
               inplace: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Remove ``groups`` jointly: the OBS update of ``B`` and the Schur downdate of ``Hinv``
        (``inplace``: overwrite ``B`` and ``Hinv`` instead of copying them)."""
        U = self.cols(groups)
        HUU = Hinv[U[:, None], U[None, :]]
        HUU = 0.5 * (HUU + HUU.T)
        L = torch.linalg.cholesky(HUU)
        rows = Hinv[U, :]  # (|U|, p)
        Bnew = B if inplace else B.clone()
        Hnew = Hinv if inplace else Hinv.clone()
        # addmm_ writes the rank-|U| update straight into the p × p matrix: a product followed by
        # sub_ would allocate a fresh p × p temporary every round (page faults dominated ZipLM's
        # one-group rounds, 8 ms each at p = 1536).
        Bnew.addmm_(torch.cholesky_solve(B[:, U].T, L).T, rows, alpha=-1)
        Hnew.addmm_(rows.T, torch.cholesky_solve(rows, L), alpha=-1)
        Bnew[:, U] = 0
        Hnew[U, :] = 0
        Hnew[:, U] = 0
        kept = kept.clone()
        kept[groups] = False
        return Bnew, Hnew, kept


def _cheapest(cost: torch.Tensor, n: int) -> torch.Tensor:
    """The ``n`` lowest finite costs' group indices (ties by position)."""
    return torch.argsort(cost, stable=True)[:n]


def round_sizes(n_remove: int, per_round: int) -> list[int]:
    """``T = max(1, ⌊R/t⌋)`` rounds of ``⌊R/T⌋`` groups, the remainder spread over the first ones."""
    if n_remove <= 0:
        return []
    T = max(1, n_remove // per_round)
    base, extra = divmod(n_remove, T)
    return [base + (1 if i < extra else 0) for i in range(T)]


def greedy_eliminate(P: GroupProblem, per_round: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Stage 1: the kept-group mask after backward elimination, and the groups of each round."""
    kept = ~P.zero_groups
    B = P.W0.clone()
    Hinv = P.full_inverse()
    if bool(P.zero_groups.any()):
        B, Hinv = P.refit(kept)
    rounds: list[torch.Tensor] = []
    for size in round_sizes(P.n_remove - int(P.zero_groups.sum()), per_round):
        U = _cheapest(P.removal_costs(B, Hinv, kept), size)
        B, Hinv, kept = P.remove(B, Hinv, kept, U, inplace=True)
        rounds.append(U)
    return kept, rounds


def local_search(P: GroupProblem, kept: torch.Tensor, swap_size: int, max_iter: int,
                 trace: list[float]) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Stage 2: block swaps, each accepted only when it lowers ``f``; returns ``(kept, B, swaps)``."""
    B, Hinv = P.refit(kept)
    f_cur = P.objective(B)
    swaps = 0
    for _ in range(max_iter):
        n_kept = int(kept.sum())
        if n_kept == 0 or n_kept == P.g:
            break
        r = min(swap_size, n_kept)
        U = _cheapest(P.removal_costs(B, Hinv, kept), r)
        B1, H1, kept1 = P.remove(B, Hinv, kept, U)
        add = torch.argsort(P.addition_gains(B1, H1, kept1), descending=True, stable=True)[:r]
        cand = kept1.clone()
        cand[add] = True
        B2, H2 = P.refit(cand)
        f_new = P.objective(B2)
        if not f_new < f_cur - ACCEPT_RTOL * (P.energy - f_cur):
            break
        kept, B, Hinv, f_cur = cand, B2, H2, f_new
        swaps += 1
        trace.append(f_new)
    return kept, B, swaps


def _result(P: GroupProblem, W: torch.Tensor, kept: torch.Tensor, B: torch.Tensor,
            extras: dict) -> SolveResult:
    cm = P.col_mask(kept)
    weight = B.clone()
    weight[:, ~cm] = 0
    mask = cm[None, :].expand(P.m, P.p).clone()
    ar = torch.arange(P.g, device=W.device)
    extras = {"kept_groups": ar[kept], "removed_groups": ar[~kept], **extras}
    return SolveResult(weight=weight.to(W.dtype), mask=mask, damping=P.damping, extras=extras)


# --------------------------------------------------------------------------- methods

@register("osscar", Config=OsscarConfig, kind="prune", needs_gram=True)
def _osscar(W: torch.Tensor, G: torch.Tensor, cfg: OsscarConfig) -> SolveResult:
    P = GroupProblem(W, G, cfg, "osscar")
    kept, _ = greedy_eliminate(P, cfg.round_size)
    B, _ = P.refit(kept)
    trace = [P.objective(B)]
    swaps = 0
    if cfg.local_search and cfg.local_iter > 0:
        kept, B, swaps = local_search(P, kept, cfg.swap_count, cfg.local_iter, trace)
    return _result(P, W, kept, B, {"swaps": swaps, "objective_trace": trace})


@register("ziplm", Config=StructuredConfig, kind="prune", needs_gram=True)
def _ziplm(W: torch.Tensor, G: torch.Tensor, cfg: StructuredConfig) -> SolveResult:
    P = GroupProblem(W, G, cfg, "ziplm")
    kept, _ = greedy_eliminate(P, 1)
    B, _ = P.refit(kept)
    return _result(P, W, kept, B, {"swaps": 0, "objective_trace": [P.objective(B)]})


def magnitude_groups(P: GroupProblem, norm: str) -> torch.Tensor:
    """Kept-group mask of MP: the ``n_remove`` groups of smallest column norm removed."""
    Wg = P.W0.reshape(P.m, P.g, P.k)
    score = Wg.abs().sum(dim=(0, 2)) if norm == "l1" else (Wg * Wg).sum(dim=(0, 2)).sqrt()
    kept = torch.ones(P.g, dtype=torch.bool, device=P.W0.device)
    kept[_cheapest(score, P.n_remove)] = False
    return kept


@register("mp", Config=MpConfig, kind="prune", needs_gram=False)
def _mp(W: torch.Tensor, G: torch.Tensor | None, cfg: MpConfig) -> SolveResult:
    no_gram = G is None
    if no_gram:  # magnitude needs no Gram; a unit one keeps the shared bookkeeping
        G = torch.eye(W.shape[1], dtype=W.dtype, device=W.device)
    P = GroupProblem(W, G, cfg, "mp")
    kept = magnitude_groups(P, cfg.norm)
    res = _result(P, W, kept, P.W0, {"swaps": 0})
    if no_gram:
        res.damping = None
    return res


@register("mp-plus", Config=MpConfig, kind="prune", needs_gram=True)
def _mp_plus(W: torch.Tensor, G: torch.Tensor, cfg: MpConfig) -> SolveResult:
    P = GroupProblem(W, G, cfg, "mp-plus")
    kept = magnitude_groups(P, cfg.norm)
    B, _ = P.refit(kept)
    return _result(P, W, kept, B, {"swaps": 0, "objective_trace": [P.objective(B)]})
