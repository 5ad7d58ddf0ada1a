"""Method objects and the name → method registry.

A method is a core function ``fn(W, G, config) -> SolveResult`` (weight, mask, quant, ...);
``Method.solve`` wraps it with the shared input checks and fills ``objective`` and
``ref_energy`` from the undamped G, so no solver computes them its own way.

Two optional extras, both off by default so a plain core function keeps its three arguments:

- ``needs_mean``: the core function also takes ``x_mean=`` (the per-input activation mean
  ``E[x_j]``, shape ``(in_features,)``); ``Method.solve`` refuses to run without it.
- ``layer_config(cfg, role) -> cfg``: lets a method adjust its config by the layer's role
  (``"attn"`` or ``"mlp"``, from the model adapter); the driver calls it through
  ``Method.config_for`` before each solve. DSnoT uses it to skip its refinement on one role.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import torch

from reprise.io import ReproError
from reprise.llm.methods.base import MethodConfig, SolveResult, check_inputs, check_mean, layer_objective

KINDS = ("quant", "prune", "none")

CoreFn = Callable[..., SolveResult]  # fn(W, G, cfg) or, with needs_mean, fn(W, G, cfg, *, x_mean)
LayerConfigFn = Callable[[MethodConfig, str], MethodConfig]
ROLES = ("attn", "mlp")


@dataclasses.dataclass(frozen=True)
class Method:
    name: str
    Config: type[MethodConfig]
    kind: str
    needs_gram: bool
    fn: CoreFn
    needs_mean: bool = False
    layer_config: LayerConfigFn | None = None

    def make_config(self, config: MethodConfig | Mapping[str, Any] | None = None) -> MethodConfig:
        if isinstance(config, self.Config):
            return config
        if config is None or isinstance(config, Mapping):
            try:
                return self.Config.from_dict(config or {})
            except ReproError as e:
                raise ReproError(f"method {self.name!r}: {e}") from None
        raise ReproError(f"{self.name}: config must be a {self.Config.__name__}, a mapping or None, "
                         f"got {type(config).__name__}")

    def config_for(self, config: MethodConfig | Mapping[str, Any] | None, role: str) -> MethodConfig:
        """The config to use on a layer of ``role`` (``"attn"`` or ``"mlp"``): ``config`` itself
        unless the method registered a ``layer_config`` hook."""
        cfg = self.make_config(config)
        if self.layer_config is None:
            return cfg
        if role not in ROLES:
            raise ReproError(f"{self.name}: layer role must be one of {ROLES}, got {role!r}")
        out = self.layer_config(cfg, role)
        if not isinstance(out, self.Config):
            raise ReproError(f"{self.name}: layer_config returned a {type(out).__name__}, not a {self.Config.__name__}")
        return out

    def solve(self, W: torch.Tensor, G: torch.Tensor | None = None,
              config: MethodConfig | Mapping[str, Any] | None = None,
              x_mean: torch.Tensor | None = None) -> SolveResult:
        """Check the inputs, run the core function, fill ``objective`` and ``ref_energy``.

        ``x_mean`` (the per-input activation mean, shape ``(in_features,)``) is required by
        methods registered with ``needs_mean`` and ignored by the others.
        """
        cfg = self.make_config(config)
        W_c, G_c = check_inputs(self.name, W, G, self.needs_gram)
        if self.needs_mean:
            res = self.fn(W_c, G_c, cfg, x_mean=check_mean(self.name, x_mean, W_c))
        else:
            res = self.fn(W_c, G_c, cfg)
        res.weight = res.weight.to(torch.float32)
        res.objective = layer_objective(W_c, res.weight, G_c)
        res.ref_energy = layer_objective(W_c, None, G_c)
        return res


REGISTRY: dict[str, Method] = {}


def register(name: str, *, Config: type[MethodConfig], kind: str, needs_gram: bool, needs_mean: bool = False,
             layer_config: LayerConfigFn | None = None) -> Callable[[CoreFn], CoreFn]:
    """Decorator registering a core solver function under ``name``.

    ``needs_mean``: the function takes the activation mean as keyword ``x_mean``.
    ``layer_config(cfg, role) -> cfg``: per-role config adjustment (see the module docstring).
    """
    if kind not in KINDS:
        raise ValueError(f"register({name!r}): kind must be one of {KINDS}, got {kind!r}")
    if layer_config is not None and not callable(layer_config):
        raise ValueError(f"register({name!r}): layer_config must be callable or None")

    def deco(fn: CoreFn) -> CoreFn:
        if name in REGISTRY:
            raise ValueError(f"method {name!r} is registered twice")
        REGISTRY[name] = Method(name=name, Config=Config, kind=kind, needs_gram=needs_gram, fn=fn,
                                needs_mean=needs_mean, layer_config=layer_config)
        return fn

    return deco


def get_method(name: str) -> Method:
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise ReproError(f"unknown method {name!r}; known methods: {', '.join(sorted(REGISTRY))}") from None


def solve(name: str, W: torch.Tensor, G: torch.Tensor | None = None, *, x_mean: torch.Tensor | None = None,
          **config: Any) -> SolveResult:
    """One-line form: ``solve("gptq", W, G, bits=3)``; ``solve("dsnot", W, G, x_mean=mu, sparsity=0.6)``."""
    return get_method(name).solve(W, G, config, x_mean=x_mean)
