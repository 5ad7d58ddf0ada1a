"""The column sweep shared by GPTQ and SparseGPT: OBS updates with lazy block batching.

Columns are fixed one at a time, left to right. Fixing column ``k`` to ``q`` leaves an error
``e = (w_k − q) / U_kk`` that the OBS update spreads over the columns still free:
``W[:, j] −= e · U_kj`` for ``j > k``, where ``Uᵀ U = H⁻¹`` (upper Cholesky of the damped
inverse Gram). Applying this to every later column at once costs a rank-one update of the
whole matrix per column; the lazy form (GPTQ paper) applies it inside a block of
``block_size`` columns only, and pushes the block's errors to the rest of the matrix with one
matmul when the block is done. The result is the same up to rounding.
"""
from __future__ import annotations

from collections.abc import Callable

import torch


class ObsSweep:
    """One left-to-right sweep over the columns of ``W`` (the sweep works on its own copy)."""

    def __init__(self, W: torch.Tensor, U: torch.Tensor, block_size: int, error_feedback: bool = True):
        self.W = W.clone()
        self.U = U
        self.block_size = block_size
        self.error_feedback = error_feedback
        self.cols = W.shape[1]
        self.b0 = self.b1 = self.i = 0
        self._W1 = self._E1 = None

    def current(self, lo: int, hi: int) -> torch.Tensor:
        """Up-to-date values of columns ``[lo, hi)``, ``lo`` at or after the column being fixed.

        Inside the block they are the working copy; beyond it the block's pending errors are
        applied on the fly, so a selection (a group's grid, an N:M group) that reaches past the
        block sees exactly what an unbatched sweep would.
        """
        hi = min(hi, self.cols)
        parts = []
        if lo < self.b1:
            parts.append(self._W1[:, lo - self.b0:min(hi, self.b1) - self.b0])
        if hi > self.b1:
            start = max(lo, self.b1)
            outer = self.W[:, start:hi]
            if self.error_feedback and self.i > 0:
                outer = outer - self._E1[:, :self.i] @ self.U[self.b0:self.b0 + self.i, start:hi]
            parts.append(outer)
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    def run(self, fix_column: Callable[[ObsSweep, int, torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """Sweep; ``fix_column(sweep, k, w)`` returns the fixed value of column ``k`` (current ``w``)."""
        rows, cols = self.W.shape
        Q = torch.empty_like(self.W)
        for b0 in range(0, cols, self.block_size):
            b1 = min(b0 + self.block_size, cols)
            self.b0, self.b1, self.i = b0, b1, 0
            self._W1 = self.W[:, b0:b1].clone()
            self._E1 = torch.zeros_like(self._W1)
            U1 = self.U[b0:b1, b0:b1]
            for i in range(b1 - b0):
                self.i = i
                w = self._W1[:, i]
                q = fix_column(self, b0 + i, w)
                Q[:, b0 + i] = q
                if self.error_feedback:
                    e = (w - q) / U1[i, i]
                    self._W1[:, i + 1:].addr_(e, U1[i, i + 1:], alpha=-1)
                    self._E1[:, i] = e
            if self.error_feedback and b1 < cols:
                self.W[:, b1:] -= self._E1 @ self.U[b0:b1, b1:]
        return Q
