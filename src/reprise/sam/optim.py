"""The shared SAM / mSAM optimizer (specs/other-papers.md §4.2, §5.2; DESIGN.md "Interfaces of the other papers").

``SAM(params, base_optimizer, rho=0.05, micro_batches=1, adaptive=False, unnormalised=False, **kwargs)`` wraps a base
optimizer class (``torch.optim.SGD``, ``torch.optim.AdamW``, ...; ``kwargs`` such as ``lr`` or ``momentum`` pass
through to it). One :meth:`SAM.step` does, for every micro-batch ``k`` (``m = micro_batches``; ``m = 1`` is SAM):

1. ``closure(k)`` (``closure()`` when ``m = 1``) computes the micro-batch loss and its gradient ``g_k`` at ``w``;
2. the ascent ``ε_k = ρ g_k/‖g_k‖₂`` (default, Foret et al.) or ``ε_k = ρ g_k`` (``unnormalised=True``, the
   variant of the least-squares closed form in :mod:`reprise.sam.theory`); with ``adaptive=True`` (ASAM) both use
   the element-wise scaling ``T = |w|``: ``ε = ρT²g/‖Tg‖`` or ``ε = ρT²g``;
3. ``closure(k)`` again at ``w + ε_k`` gives ``g̃_k``; ``w`` is restored;

then the base optimizer steps with ``g = (1/m) Σ_k g̃_k`` (mSAM: each shard is perturbed by its own gradient). The
default is the normalised ascent because that is SAM as PyTorch users know it (Foret et al., the davda54 package)
and what the mSAM paper builds on; the un-normalised ascent is offered for comparison with the theory.

The closure zeroes the gradients, recomputes the loss, calls ``backward()`` and returns the loss, as for
``torch.optim.LBFGS`` (``step`` also clears the gradients before each call, so a closure that forgets is safe).
``step`` returns the mean of the first-pass losses, i.e. the loss at ``w`` (the full-batch loss for equal shards).
The norm ``‖g_k‖`` runs over all parameter groups; ``rho`` and ``adaptive`` may differ per group. The ascent, restore
and averaging use foreach kernels (one call per group), which keeps SAM near 2x SGD even on small models.
"""
from __future__ import annotations

from typing import Callable

import torch

from reprise.io import ReproError

__all__ = ["SAM"]

_EPS = 1e-12


class SAM(torch.optim.Optimizer):
    """Sharpness-aware minimization over a base optimizer; ``micro_batches > 1`` is mSAM."""

    def __init__(self, params, base_optimizer: type[torch.optim.Optimizer], rho: float = 0.05, micro_batches: int = 1,
                 adaptive: bool = False, unnormalised: bool = False, **kwargs):
        if not isinstance(base_optimizer, type) or not issubclass(base_optimizer, torch.optim.Optimizer):
            raise ReproError(f"base_optimizer must be a torch.optim.Optimizer class (e.g. torch.optim.SGD), "
                             f"got {base_optimizer!r}")
        if not rho >= 0:
            raise ReproError(f"rho = {rho!r} must be >= 0")
        if int(micro_batches) != micro_batches or micro_batches < 1:
            raise ReproError(f"micro_batches = {micro_batches!r} must be a positive integer")
        defaults = dict(rho=float(rho), adaptive=bool(adaptive), unnormalised=bool(unnormalised), **kwargs)
        super().__init__(params, defaults)
        self.micro_batches = int(micro_batches)
        self.base_optimizer = base_optimizer(self.param_groups, **kwargs)
        self.param_groups = self.base_optimizer.param_groups
        self.defaults.update(self.base_optimizer.defaults)

    def _params(self):
        for group in self.param_groups:
            for p in group["params"]:
                yield group, p

    @torch.no_grad()
    def _grad_norm(self) -> torch.Tensor:
        norms = []
        for group in self.param_groups:
            ps = [p for p in group["params"] if p.grad is not None]
            if not ps:
                continue
            grads = [p.grad for p in ps]
            # foreach kernels: one call per group instead of one per tensor (SAM's overhead on small models)
            norms += torch._foreach_norm(torch._foreach_mul(torch._foreach_abs(ps), grads) if group["adaptive"]
                                         else grads)
        if not norms:
            raise ReproError("SAM.step: the closure produced no gradients (did it call loss.backward()?)")
        return torch.linalg.vector_norm(torch.stack([n.to(norms[0].device) for n in norms]), ord=2)

    @torch.no_grad()
    def _perturb(self) -> list[tuple[list[torch.Tensor], list[torch.Tensor]]]:
        """Move ``w`` to ``w + ε`` and return (params, saved ``w``) per group to restore it exactly."""
        normalised = any(not group["unnormalised"] for group in self.param_groups)
        norm = self._grad_norm() if normalised else None
        moved = []
        for group in self.param_groups:
            ps = [p for p in group["params"] if p.grad is not None]
            if not ps or group["rho"] == 0:
                continue
            scale = group["rho"] if group["unnormalised"] else group["rho"] / (norm + _EPS)
            grads = [p.grad for p in ps]
            e = torch._foreach_mul(torch._foreach_mul(ps, ps), grads) if group["adaptive"] else grads
            e = torch._foreach_mul(e, scale)
            moved.append((ps, [p.detach().clone() for p in ps]))
            torch._foreach_add_(ps, e)
        return moved

    def _call(self, closure, k: int | None):
        self.zero_grad(set_to_none=True)
        with torch.enable_grad():
            loss = closure() if k is None else closure(k)
        return loss

    @torch.no_grad()
    def step(self, closure: Callable | None = None):
        if closure is None:
            raise ReproError("SAM.step needs a closure that zeroes the gradients, recomputes the loss, calls "
                             "backward() and returns the loss (with micro_batches > 1 it takes the micro-batch index)")
        m = self.micro_batches
        accumulated: dict[torch.Tensor, torch.Tensor] = {}
        losses = []
        for k in range(m):
            index = None if m == 1 else k
            losses.append(self._call(closure, index))
            moved = self._perturb()
            self._call(closure, index)
            for ps, saved in moved:
                torch._foreach_copy_(ps, saved)
            if m == 1:  # SAM: the perturbed gradients are the update's, nothing to average
                break
            live = [p for _, p in self._params() if p.grad is not None]
            seen = [p for p in live if p in accumulated]  # dict membership is by identity
            if seen:
                torch._foreach_add_([accumulated[p] for p in seen], [p.grad for p in seen])
            for p in live:
                if p not in accumulated:
                    accumulated[p] = p.grad.clone()
        if m > 1:
            for _, p in self._params():
                p.grad = accumulated[p] if p in accumulated else None
            torch._foreach_div_(list(accumulated.values()), m)
        self.base_optimizer.step()
        first = losses[0]
        if first is None:
            return None
        return sum(torch.as_tensor(l).detach() for l in losses) / m

    def zero_grad(self, set_to_none: bool = True):
        self.base_optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self):
        return self.base_optimizer.state_dict()

    def load_state_dict(self, state_dict):
        self.base_optimizer.load_state_dict(state_dict)
        self.param_groups = self.base_optimizer.param_groups
