"""Method objects and the name → method registry.

A method is a core function ``fn(W, G, config) -> SolveResult`` (weight, mask, quant, ...);
``Method.solve`` wraps it with the shared input checks and fills ``objective`` and
``ref_energy`` from the undamped G, so no solver computes them its own way.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import torch

from reprise.io import ReproError
from reprise.llm.methods.base import MethodConfig, SolveResult, check_inputs, layer_objective

KINDS = ("quant", "prune", "none")

CoreFn = Callable[[torch.Tensor, "torch.Tensor | None", Any], SolveResult]


@dataclasses.dataclass(frozen=True)
class Method:
    name: str
    Config: type[MethodConfig]
    kind: str
    needs_gram: bool
    fn: CoreFn

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

    def solve(self, W: torch.Tensor, G: torch.Tensor | None = None,
              config: MethodConfig | Mapping[str, Any] | None = None) -> SolveResult:
        cfg = self.make_config(config)
        W_c, G_c = check_inputs(self.name, W, G, self.needs_gram)
        res = self.fn(W_c, G_c, cfg)
        res.weight = res.weight.to(torch.float32)
        res.objective = layer_objective(W_c, res.weight, G_c)
        res.ref_energy = layer_objective(W_c, None, G_c)
        return res


REGISTRY: dict[str, Method] = {}


def register(name: str, *, Config: type[MethodConfig], kind: str, needs_gram: bool) -> Callable[[CoreFn], CoreFn]:
    """Decorator registering a core solver function under ``name``."""
    if kind not in KINDS:
        raise ValueError(f"register({name!r}): kind must be one of {KINDS}, got {kind!r}")

    def deco(fn: CoreFn) -> CoreFn:
        if name in REGISTRY:
            raise ValueError(f"method {name!r} is registered twice")
        REGISTRY[name] = Method(name=name, Config=Config, kind=kind, needs_gram=needs_gram, fn=fn)
        return fn

    return deco


def get_method(name: str) -> Method:
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise ReproError(f"unknown method {name!r}; known methods: {', '.join(sorted(REGISTRY))}") from None


def solve(name: str, W: torch.Tensor, G: torch.Tensor | None = None, **config: Any) -> SolveResult:
    """One-line form: ``solve("gptq", W, G, bits=3)``."""
    return get_method(name).solve(W, G, config)
