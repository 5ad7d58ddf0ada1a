"""The one Gram accumulator: running ``Σ = XᵀX`` over calibration tokens, read out as ``Σ / n``.

Every solver takes ``G = XᵀX / n_tokens`` (DESIGN.md, "Interfaces"). Dividing by the token count
makes ``G`` independent of how many calibration tokens were used, so the per-layer objective
``tr(ΔW G ΔWᵀ)`` is a mean squared output error per token and relative damping means the
same thing at every scale.

The accumulator also keeps the running sum of the activations themselves (``in_features``
floats), read out as the per-input mean ``E[x_j] = Σ_t x_tj / n_tokens``: DSnoT needs it and
the Gram cannot give it back.
"""
from __future__ import annotations

import torch

from reprise.io import ReproError


class GramAccumulator:
    """Accumulate ``Σ = Σ_t x_t x_tᵀ`` for one linear layer's inputs.

    ``add`` takes activations of shape ``(..., in_features)`` in any float dtype; they are cast
    to the accumulator dtype (fp32 by default, fp64 on request) before the matmul, so fp16/bf16
    activations do not lose precision in the sum.
    """

    def __init__(self, in_features: int, dtype: torch.dtype = torch.float32, device=None):
        if isinstance(in_features, bool) or not isinstance(in_features, int) or in_features < 1:
            raise ReproError(f"GramAccumulator: in_features must be a positive integer, got {in_features!r}")
        if dtype not in (torch.float32, torch.float64):
            raise ReproError(f"GramAccumulator: dtype must be torch.float32 or torch.float64, got {dtype}")
        self.in_features = in_features
        self.dtype = dtype
        self.sum = torch.zeros(in_features, in_features, dtype=dtype, device=device)
        self.x_sum = torch.zeros(in_features, dtype=dtype, device=device)  # Σ_t x_t
        self.n_tokens = 0

    @property
    def device(self) -> torch.device:
        return self.sum.device

    def add(self, x: torch.Tensor) -> None:
        """Add every token (row over the leading dims) of ``x`` to the running sum."""
        if not isinstance(x, torch.Tensor):
            raise ReproError(f"GramAccumulator.add: expected a torch.Tensor, got {type(x).__name__}")
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ReproError(
                f"GramAccumulator.add: activations have shape {tuple(x.shape)}, but the last "
                f"dimension must equal in_features={self.in_features}"
            )
        if not (x.is_floating_point()):
            raise ReproError(f"GramAccumulator.add: activations must be floating point, got {x.dtype}")
        flat = x.detach().reshape(-1, self.in_features).to(device=self.device, dtype=self.dtype)
        if flat.shape[0] == 0:
            return
        self.sum.addmm_(flat.T, flat)
        self.x_sum += flat.sum(dim=0)
        self.n_tokens += flat.shape[0]

    def gram(self) -> torch.Tensor:
        """Return ``G = Σ / n_tokens`` (a new tensor; the accumulator keeps running)."""
        if self.n_tokens == 0:
            raise ReproError("GramAccumulator.gram: no tokens were added; run the calibration forward pass first")
        return self.sum / self.n_tokens

    def mean(self) -> torch.Tensor:
        """Return the per-input activation mean ``Σ_t x_t / n_tokens``, shape ``(in_features,)``."""
        if self.n_tokens == 0:
            raise ReproError("GramAccumulator.mean: no tokens were added; run the calibration forward pass first")
        return self.x_sum / self.n_tokens

    def __repr__(self) -> str:
        return (f"GramAccumulator(in_features={self.in_features}, dtype={self.dtype}, "
                f"device={self.device}, n_tokens={self.n_tokens})")
