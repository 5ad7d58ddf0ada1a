"""SAM and mSAM: the shared optimizer and the SAM-statistics library (specs/other-papers.md §4–§5).

- :class:`SAM` (``reprise.sam.optim``): ``SAM(params, base_optimizer, rho=0.05, micro_batches=1, adaptive=False,
  unnormalised=False, **base_kwargs)``, a ``torch.optim.Optimizer``; ``micro_batches > 1`` is mSAM;
- :mod:`reprise.sam.theory`: closed-form bias/variance of GD and un-normalised SAM on least squares and kernel
  regression (pure numpy);
- :mod:`reprise.sam.simulate`: Monte-Carlo GD/SAM runs (un-normalised and normalised ascent, full or mini-batch);
- :mod:`reprise.sam.network`: teacher–student ReLU networks, Hessian power iteration, the digits MLP;
- :mod:`reprise.sam.experiments`: ``sam.fig1`` … ``sam.fig5`` for :mod:`reprise.experiments`.

``reprise.sam.SAM`` is imported lazily so that ``reprise.sam.theory`` works without torch.
"""
from __future__ import annotations

__all__ = ["SAM", "top_hessian_eigenvalue"]


def __getattr__(name: str):
    if name == "SAM":
        from reprise.sam.optim import SAM

        return SAM
    if name == "top_hessian_eigenvalue":
        from reprise.sam.network import top_hessian_eigenvalue

        return top_hessian_eigenvalue
    raise AttributeError(f"module 'reprise.sam' has no attribute {name!r}")
