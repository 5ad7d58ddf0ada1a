"""Shared pieces of every layer-wise solver: result record, config base class, input checks,
and the one objective ``tr(ΔW G ΔWᵀ)``.

Solvers are pure tensor math (DESIGN.md, "Dependency rules"): no model, file, global RNG or
Snakemake object in here.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from reprise.io import ReproError
from reprise.llm.gram import DampingRecord


# --------------------------------------------------------------------------- objective

def layer_objective(W: torch.Tensor, W_hat: torch.Tensor | None, G: torch.Tensor | None) -> float:
    """``tr(ΔW G ΔWᵀ)`` with ``ΔW = W − W_hat``, in fp64; NaN when ``G`` is None.

    With ``G = XᵀX / n`` this is ``‖X ΔWᵀ‖_F² / n``: the mean squared output error per token.
    ``W_hat=None`` gives the reference energy ``tr(W G Wᵀ)``.
    """
    if G is None:
        return math.nan
    G64 = G.to(torch.float64)
    D = W.to(device=G64.device, dtype=torch.float64)
    if W_hat is not None:
        D = D - W_hat.to(device=G64.device, dtype=torch.float64)
    return float(((D @ G64) * D).sum())


# --------------------------------------------------------------------------- result

@dataclasses.dataclass
class SolveResult:
    """What a solver returns for one layer (weight is dense, W's shape, fp32)."""

    weight: torch.Tensor
    objective: float = math.nan  # tr(ΔW G ΔWᵀ), undamped G
    ref_energy: float = math.nan  # tr(W G Wᵀ)
    mask: torch.Tensor | None = None  # bool, True = kept
    quant: dict[str, torch.Tensor] | None = None  # scales, zeros, g_idx, bits, group_size
    damping: DampingRecord | None = None
    extras: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def rel_err(self) -> float:
        """``‖XΔWᵀ‖_F / ‖XWᵀ‖_F = sqrt(objective / ref_energy)``; 0 when the reference is 0."""
        if math.isnan(self.objective) or math.isnan(self.ref_energy):
            return math.nan
        if self.ref_energy == 0:
            return 0.0
        return math.sqrt(max(self.objective, 0.0) / self.ref_energy)

    def summary(self) -> dict[str, float | int]:
        """Scalars for a per-layer log line (solve_log.csv)."""
        out: dict[str, float | int] = {"objective": self.objective, "ref_energy": self.ref_energy,
                                       "rel_err": self.rel_err}
        if self.mask is not None:
            out["density"] = float(self.mask.float().mean())
        if self.damping is not None:
            out.update(self.damping.to_dict())
        return out


# --------------------------------------------------------------------------- configs

def _fail(cfg: MethodConfig, field: str, value: Any, fix: str) -> None:
    raise ReproError(f"{type(cfg).__name__}: {field}={value!r} is invalid; {fix}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def parse_nm(pattern: str) -> tuple[int, int]:
    """``"2:4"`` → ``(2, 4)``: N weights kept out of every M consecutive inputs, ``0 < N < M``."""
    fix = 'write it as "N:M" with integers 0 < N < M, N kept of every M (e.g. "2:4")'
    if not isinstance(pattern, str):
        raise ReproError(f"nm={pattern!r} is not a string; {fix}")
    parts = pattern.split(":")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ReproError(f"nm={pattern!r} is not an N:M pattern; {fix}")
    n, m = (int(p) for p in parts)
    if not 0 < n < m:
        raise ReproError(f"nm={pattern!r} needs 0 < N < M; {fix}")
    return n, m


@dataclasses.dataclass(frozen=True)
class MethodConfig:
    """Base of every method config: frozen, JSON-serialisable, validated on construction.

    Subclasses declare fields with defaults and extend ``validate``; bump ``version`` when a
    field's meaning changes so old run records are refused rather than misread.
    """

    version: ClassVar[int] = 1

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:  # overridden; each check names the field and the fix
        pass

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)  # normalising a frozen field (e.g. int → float)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {"version": self.version, **d}

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MethodConfig:
        if not isinstance(d, Mapping):
            raise ReproError(f"{cls.__name__}: expected a mapping of settings, got {type(d).__name__}")
        d = dict(d)
        version = d.pop("version", cls.version)
        if version != cls.version:
            raise ReproError(f"{cls.__name__}: config version {version!r} is not the current version "
                             f"{cls.version}; re-create the config with the current settings")
        valid = cls.field_names()
        unknown = sorted(set(d) - set(valid))
        if unknown:
            raise ReproError(f"{cls.__name__}: unknown key(s) {', '.join(map(repr, unknown))}; "
                             f"valid keys: {', '.join(valid) or '(none)'}")
        return cls(**d)

    # ---- shared field checks (used by subclasses' validate)
    def _check_bool(self, name: str) -> None:
        if not isinstance(getattr(self, name), bool):
            _fail(self, name, getattr(self, name), "use true or false")

    def _check_pos_int(self, name: str) -> None:
        v = getattr(self, name)
        if not _is_int(v) or v < 1:
            _fail(self, name, v, "use a positive integer")

    def _float_field(self, name: str) -> Any:
        """The field's value, an integer normalised to a float (YAML writes 1 for 1.0)."""
        v = getattr(self, name)
        if _is_int(v):
            v = float(v)
            self._set(name, v)
        return v

    def _check_fraction(self, name: str, fix: str) -> None:
        """A float in [0, 1); NaN and infinities fall outside the range."""
        v = self._float_field(name)
        if not isinstance(v, float) or not 0 <= v < 1:
            _fail(self, name, v, fix)

    def _check_rel_damp(self, name: str = "rel_damp") -> None:
        v = self._float_field(name)
        if not isinstance(v, float) or not math.isfinite(v) or v < 0:
            _fail(self, name, v, "use a finite number >= 0 (relative to mean(diag G); 0.01 is the usual value)")


@dataclasses.dataclass(frozen=True)
class NoConfig(MethodConfig):
    """For methods without settings."""


@dataclasses.dataclass(frozen=True)
class QuantConfig(MethodConfig):
    """Uniform min/max grid: ``bits`` per weight, groups of ``group_size`` inputs (-1: per row)."""

    bits: int = 4
    group_size: int = -1
    sym: bool = False

    def validate(self) -> None:
        if not _is_int(self.bits) or not 2 <= self.bits <= 8:
            _fail(self, "bits", self.bits, "use an integer from 2 to 8")
        if not _is_int(self.group_size) or not (self.group_size == -1 or self.group_size > 0):
            _fail(self, "group_size", self.group_size, "use -1 (one grid per output row) or a positive integer")
        self._check_bool("sym")


@dataclasses.dataclass(frozen=True)
class PruneConfig(MethodConfig):
    """Unstructured ``sparsity`` (fraction pruned) or an ``nm`` pattern such as ``"2:4"``.

    Give one of the two; with neither, sparsity 0.5.
    """

    sparsity: float | None = None
    nm: str | None = None

    def validate(self) -> None:
        if self.nm is not None:
            try:
                parse_nm(self.nm)
            except ReproError as e:
                raise ReproError(f"{type(self).__name__}: {e}") from None
            if self.sparsity is not None:
                _fail(self, "sparsity", self.sparsity, f"give either sparsity or nm, not both (nm={self.nm!r})")
            return
        if self.sparsity is None:
            self._set("sparsity", 0.5)
        self._check_fraction("sparsity", "use a fraction of weights to prune in [0, 1)")

    @property
    def nm_pair(self) -> tuple[int, int] | None:
        return None if self.nm is None else parse_nm(self.nm)


# --------------------------------------------------------------------------- inputs

def check_inputs(method: str, W: Any, G: Any, needs_gram: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Validate (W, G) once for every method; return them in the compute dtype.

    The compute dtype is fp32, or fp64 when either input is fp64.
    """
    if not isinstance(W, torch.Tensor):
        raise ReproError(f"{method}: W must be a torch.Tensor, got {type(W).__name__}")
    if W.ndim != 2 or W.numel() == 0:
        raise ReproError(f"{method}: W must be a non-empty 2-D weight (out_features, in_features), "
                         f"got shape {tuple(W.shape)}")
    if not W.is_floating_point():
        raise ReproError(f"{method}: W must be floating point, got {W.dtype}")
    if not bool(torch.isfinite(W).all()):
        raise ReproError(f"{method}: W has NaN/Inf entries")
    if G is None:
        if needs_gram:
            raise ReproError(f"{method}: needs the Gram matrix G = XᵀX/n of the layer inputs, got None")
        return W.to(torch.promote_types(W.dtype, torch.float32)), None
    if not isinstance(G, torch.Tensor):
        raise ReproError(f"{method}: G must be a torch.Tensor or None, got {type(G).__name__}")
    p = W.shape[1]
    if G.ndim != 2 or G.shape[0] != G.shape[1]:
        raise ReproError(f"{method}: G must be square, got shape {tuple(G.shape)}")
    if G.shape[0] != p:
        raise ReproError(f"{method}: G has size {G.shape[0]} but W has in_features={p} "
                         f"(W shape {tuple(W.shape)}); G must be in_features × in_features")
    if not G.is_floating_point():
        raise ReproError(f"{method}: G must be floating point, got {G.dtype}")
    if G.device != W.device:
        raise ReproError(f"{method}: G is on {G.device} but W is on {W.device}; put them on one device")
    if not bool(torch.isfinite(G).all()):
        raise ReproError(f"{method}: G (the Gram matrix) has NaN/Inf entries; check the calibration activations")
    dtype = torch.promote_types(torch.promote_types(W.dtype, G.dtype), torch.float32)
    return W.to(dtype), G.to(dtype)


def check_mean(method: str, x_mean: Any, W: torch.Tensor) -> torch.Tensor:
    """Validate the per-input activation mean ``E[x_j]`` (shape ``(in_features,)``) for methods
    that need it (DSnoT); return it in W's dtype. ``W`` is the already-checked weight."""
    p = W.shape[1]
    if x_mean is None:
        raise ReproError(f"{method}: needs the activation mean of the layer inputs: the driver must pass "
                         f"x_mean (E[x_j] over the calibration tokens, shape ({p},)), e.g. "
                         f"GramAccumulator.mean(); got None")
    if not isinstance(x_mean, torch.Tensor):
        raise ReproError(f"{method}: x_mean must be a torch.Tensor of shape ({p},), got {type(x_mean).__name__}")
    if tuple(x_mean.shape) != (p,):
        raise ReproError(f"{method}: x_mean has shape {tuple(x_mean.shape)} but W has in_features={p}; "
                         f"x_mean must be the per-input mean, shape ({p},)")
    if not x_mean.is_floating_point():
        raise ReproError(f"{method}: x_mean must be floating point, got {x_mean.dtype}")
    if x_mean.device != W.device:
        raise ReproError(f"{method}: x_mean is on {x_mean.device} but W is on {W.device}; put them on one device")
    if not bool(torch.isfinite(x_mean).all()):
        raise ReproError(f"{method}: x_mean (the activation mean) has NaN/Inf entries; "
                         "check the calibration activations")
    return x_mean.to(W.dtype)
