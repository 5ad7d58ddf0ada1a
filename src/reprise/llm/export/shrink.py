"""Physically remove pruned attention units and FFN neurons (OSSCAR's structure, spec §4.1).

A *keep-set* says, per block index, which structured units survive::

    keep = {0: {"heads": LongTensor([...]), "neurons": LongTensor([...])}, 1: {...}, ...}

A block, or a key inside a block, that is absent keeps every unit of that kind. Indices must be
integers in range, without duplicates, and at least one unit of each kind must stay.

- ``mask_model(model, keep)`` is the reference: it zeroes the dropped structure without changing any
  shape — the consumer's input columns (``fc2`` / ``down_proj`` columns, ``out_proj`` / ``o_proj``
  column blocks) *and* the producer rows with their biases (``fc1`` / ``gate_proj`` + ``up_proj``
  rows, the unit's q/k/v rows). The consumer's bias is untouched (its output size does not change).
- ``shrink_model(model, keep)`` works **in place** and returns the same model object: it masks as
  above, then slices the removable structure out of the weights and rewrites the config
  (``ffn_dim`` / ``intermediate_size``, ``num_attention_heads`` / ``num_key_value_heads`` /
  ``head_dim``), so that ``save_pretrained`` + ``AutoModelForCausalLM.from_pretrained`` reload it
  with the masked model's logits. What could not be removed stays in the weights, zeroed.
- ``save_shrunk(model, tokenizer, out_dir)`` writes it through ``save_compressed`` (atomic
  directory) with a ``compression.json`` describing what was removed and what stays masked.

What each family can physically remove (transformers 5.x; facts read from modeling_{opt,llama}.py):

- **OPT** — *FFN neurons only*. A neuron is a row of ``fc1`` (+ bias) and a column of ``fc2``; the
  config has one ``ffn_dim`` for every layer, so every block must keep the same number of neurons.
  *Heads stay masked*: ``OPTAttention`` builds q/k/v/out_proj as ``hidden_size × hidden_size`` and
  derives ``head_dim = hidden_size // num_attention_heads`` from the config, so fewer heads with the
  same hidden size cannot be expressed (reducing ``num_attention_heads`` would change ``head_dim``).
  A dropped OPT head (``head_dim`` rows of q/k/v and ``head_dim`` input columns of ``out_proj``) is
  zeroed, and the counts of kept heads may differ across blocks.
- **Llama family** (Llama-2/3, SmolLM2, Mistral, Qwen2: ``model.model.layers``) — *FFN neurons and
  whole key-value groups*. A neuron is a row of ``gate_proj`` and ``up_proj`` and a column of
  ``down_proj`` (one ``intermediate_size`` for all layers: equal counts per block). An attention
  unit is one **key-value group** — its ``head_dim`` rows of ``k_proj`` and ``v_proj``, the
  ``group·head_dim`` rows of ``q_proj`` of its query heads and the matching ``o_proj`` input
  columns — so the shrunk layer is still a valid GQA layer with the same group size. Llama reads
  ``head_dim`` from the config, so ``num_attention_heads``/``num_key_value_heads`` shrink with an
  explicit ``head_dim``. Every block must keep the same number of groups. One caveat: the strict
  ``LlamaConfig`` still checks ``hidden_size % num_attention_heads == 0`` (``save_pretrained``
  refuses otherwise), so when ``kept_groups · group_size`` does not divide ``hidden_size`` the
  kept set is **padded** to the smallest count the config validates with, using dropped groups
  (lowest indices first), which stay in the weights zeroed; ``ShrinkPlan.padded_heads`` lists them. In the
  worst case (e.g. Llama-2-7B, MHA with 4096 = 2¹² and 32 heads, keeping 20) nothing can be removed
  and every dropped head stays masked.

BLOOM and Falcon (fused query_key_value) are not supported (ReproError).
"""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn as nn

from reprise.io import ReproError
from reprise.llm.models.adapters import StructuredUnits, adapter_for, blocks_of, get_submodule


KINDS = ("heads", "neurons")


def _structure(model: nn.Module) -> tuple[str, StructuredUnits]:
    adapter = adapter_for(model)
    if adapter.structure is None:
        raise ReproError(f"structured shrinking is not declared for family {adapter.family!r} (fused "
                         "query_key_value); add structure=StructuredUnits(...) to its Adapter in "
                         "src/reprise/llm/models/adapters.py")
    return adapter.family, adapter.structure


def _geometry(model: nn.Module, s: StructuredUnits) -> dict[str, int]:
    c = model.config
    heads = c.num_attention_heads
    if s.gqa:
        kv = getattr(c, "num_key_value_heads", None) or heads
        head_dim = getattr(c, "head_dim", None) or c.hidden_size // heads
    else:
        kv = heads
        head_dim = c.hidden_size // heads
    if heads % kv:
        raise ReproError(f"num_attention_heads {heads} is not a multiple of num_key_value_heads {kv}")
    return {"heads": heads, "kv": kv, "group": heads // kv, "head_dim": head_dim,
            "units": kv if s.gqa else heads, "ffn": getattr(c, s.ffn_config), "hidden": c.hidden_size}


def structure_units(model: nn.Module) -> dict[str, int]:
    """How many units of each kind one block has: ``{"heads": attention units, "neurons": FFN width}``.
    For the Llama family an attention unit is a key-value group (``num_key_value_heads`` of them)."""
    _, s = _structure(model)
    g = _geometry(model, s)
    return {"heads": g["units"], "neurons": g["ffn"]}


def unit_layout(model: nn.Module) -> dict[str, dict[str, Any]]:
    """Where each kind of unit is pruned: ``{"heads" | "neurons": {"consumer": dotted linear name,
    "width": input columns per unit, "units": units per block}}``. A Llama attention unit is one
    key-value group, ``group · head_dim`` contiguous ``o_proj`` columns (its query heads)."""
    _, s = _structure(model)
    g = _geometry(model, s)
    heads_width = g["group"] * g["head_dim"] if s.gqa else g["head_dim"]
    return {"heads": {"consumer": s.o, "width": heads_width, "units": g["units"]},
            "neurons": {"consumer": s.ffn_consumer, "width": 1, "units": g["ffn"]}}


def _as_index(value: Any, n: int, where: str) -> torch.Tensor:
    t = torch.as_tensor(value)
    if t.dim() != 1 or (t.numel() and (t.is_floating_point() or t.is_complex() or t.dtype == torch.bool)):
        raise ReproError(f"{where}: expected a 1-D tensor of integer indices, got dtype {t.dtype} shape {tuple(t.shape)}")
    t = t.to(torch.long)
    if t.numel() == 0:
        raise ReproError(f"{where}: keeps no unit; at least one must stay")
    bad = t[(t < 0) | (t >= n)]
    if bad.numel():
        raise ReproError(f"{where}: indices {bad.tolist()} out of range [0, {n})")
    uniq, counts = torch.unique(t, return_counts=True)
    if (counts > 1).any():
        raise ReproError(f"{where}: duplicated indices {uniq[counts > 1].tolist()}")
    return uniq  # sorted: the original order of the units is kept


def normalize_keep(model: nn.Module, keep: Mapping[int, Mapping[str, Any]]) -> dict[int, dict[str, torch.Tensor]]:
    """A checked, complete keep-set: every block, both kinds, sorted unique LongTensors."""
    _, s = _structure(model)
    n_blocks = len(blocks_of(model, adapter_for(model)))
    units = structure_units(model)
    for b, entry in keep.items():
        if not isinstance(b, int) or isinstance(b, bool) or not 0 <= b < n_blocks:
            raise ReproError(f"keep-set block {b!r} out of range: the model has blocks 0..{n_blocks - 1}")
        unknown = set(entry) - set(KINDS)
        if unknown:
            raise ReproError(f"keep-set block {b}: unknown keys {sorted(unknown)}; use {list(KINDS)}")
    out = {}
    for b in range(n_blocks):
        entry = keep.get(b, {})
        out[b] = {kind: (_as_index(entry[kind], units[kind], f"keep-set block {b} {kind!r}") if kind in entry
                         else torch.arange(units[kind])) for kind in KINDS}
    return out


def _rows(unit_idx: torch.Tensor, width: int) -> torch.Tensor:
    """Row indices of units ``unit_idx`` that are ``width`` contiguous rows each."""
    return (unit_idx[:, None] * width + torch.arange(width)[None, :]).reshape(-1)


def _attn_rows(units: torch.Tensor, g: dict[str, int], s: StructuredUnits) -> tuple[torch.Tensor, torch.Tensor]:
    """(q and o rows/columns, k and v rows) of attention units."""
    if s.gqa:
        return _rows(units, g["group"] * g["head_dim"]), _rows(units, g["head_dim"])
    r = _rows(units, g["head_dim"])
    return r, r


def _complement(kept: torch.Tensor, n: int) -> torch.Tensor:
    m = torch.ones(n, dtype=torch.bool)
    m[kept] = False
    return torch.nonzero(m).flatten()


@dataclass
class ShrinkPlan:
    family: str
    keep: dict[int, dict[str, torch.Tensor]]
    units: dict[str, int]  # units per block of each kind, before
    heads_physical: bool
    # attention units kept in the weights per block (kept ∪ padding); equals ``units["heads"]`` when
    # heads cannot be removed
    stored_heads: dict[int, torch.Tensor] = field(default_factory=dict)
    padded_heads: dict[int, list[int]] = field(default_factory=dict)  # dropped units kept (zeroed) for the config
    removed_parameters: int = 0
    new_config: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "family": self.family, "units_per_block": self.units,
            "kept": {str(b): {k: int(v.numel()) for k, v in e.items()} for b, e in self.keep.items()},
            "heads_removed_physically": self.heads_physical,
            # dropped attention units that stay in the weights, zeroed
            "masked_heads": {str(b): sorted(set(self.stored_heads[b].tolist()) - set(self.keep[b]["heads"].tolist()))
                             for b in self.keep},
            "padded_heads": {str(b): v for b, v in self.padded_heads.items() if v},
            "removed_parameters": self.removed_parameters, "new_config": self.new_config,
        }


def _equal_counts(keep: dict[int, dict[str, torch.Tensor]], kind: str, why: str) -> int:
    counts = {b: int(e[kind].numel()) for b, e in keep.items()}
    first = counts[0]
    for b, c in counts.items():
        if c != first:
            raise ReproError(f"keep-set block {b} keeps {c} {kind} but block 0 keeps {first}: {why}, so every "
                             f"block must keep the same number of {kind} (OSSCAR prunes the same fraction per block)")
    return first


def _attn_config(kv_groups: int, g: dict[str, int]) -> dict[str, int]:
    return {"num_attention_heads": kv_groups * g["group"], "num_key_value_heads": kv_groups, "head_dim": g["head_dim"]}


def _config_accepts(config: Any, changes: dict[str, int]) -> bool:
    """Whether the (strict) transformers config validates with ``changes`` applied — e.g. LlamaConfig
    still demands ``hidden_size % num_attention_heads == 0`` even with an explicit ``head_dim``."""
    if config.hidden_size % changes["num_attention_heads"]:
        return False
    trial = copy.deepcopy(config)
    try:
        for key, value in changes.items():
            setattr(trial, key, value)
        if hasattr(trial, "validate"):
            trial.validate()
    except Exception:  # noqa: BLE001 - any validator refusal means "not expressible"
        return False
    return True


def plan_shrink(model: nn.Module, keep: Mapping[int, Mapping[str, Any]]) -> ShrinkPlan:
    """Check the keep-set and work out what ``shrink_model`` will remove, without touching the model."""
    family, s = _structure(model)
    g = _geometry(model, s)
    norm = normalize_keep(model, keep)
    plan = ShrinkPlan(family=family, keep=norm, units=structure_units(model), heads_physical=s.heads_physical)
    n_neurons = _equal_counts(norm, "neurons", f"the {family} config has one {s.ffn_config} for every layer")
    new_cfg = {s.ffn_config: n_neurons}
    block0 = blocks_of(model, adapter_for(model))[0]
    hidden = g["hidden"]

    def has_bias(path: str) -> int:
        return int(get_submodule(block0, path).bias is not None)

    per_neuron = sum(hidden + has_bias(p) for p in s.ffn_producers) + hidden
    removed = len(norm) * (g["ffn"] - n_neurons) * per_neuron
    if s.heads_physical:
        n_heads = _equal_counts(norm, "heads", f"the {family} config has one num_key_value_heads for every layer")
        stored = next(k for k in range(n_heads, g["units"] + 1)
                      if k == g["units"] or _config_accepts(model.config, _attn_config(k, g)))
        for b, e in norm.items():
            pad = _complement(e["heads"], g["units"])[: stored - n_heads]
            plan.stored_heads[b] = torch.sort(torch.cat([e["heads"], pad])).values
            plan.padded_heads[b] = pad.tolist()
        qo, kv = g["group"] * g["head_dim"], g["head_dim"]
        per_unit = (qo * (hidden + has_bias(s.q)) + kv * (hidden + has_bias(s.k)) + kv * (hidden + has_bias(s.v))
                    + qo * hidden)
        removed += len(norm) * (g["units"] - stored) * per_unit
        new_cfg.update(_attn_config(stored, g))
    else:
        plan.stored_heads = {b: torch.arange(g["units"]) for b in norm}
    plan.removed_parameters = removed
    plan.new_config = new_cfg
    return plan


def _zero_rows(lin: nn.Linear, rows: torch.Tensor) -> None:
    lin.weight.data[rows.to(lin.weight.device)] = 0
    if lin.bias is not None:
        lin.bias.data[rows.to(lin.bias.device)] = 0


def _zero_cols(lin: nn.Linear, cols: torch.Tensor) -> None:
    lin.weight.data[:, cols.to(lin.weight.device)] = 0


@torch.no_grad()
def mask_model(model: nn.Module, keep: Mapping[int, Mapping[str, Any]]) -> nn.Module:
    """Zero the dropped heads/groups and neurons in place (shapes unchanged); returns ``model``."""
    _, s = _structure(model)
    g = _geometry(model, s)
    norm = normalize_keep(model, keep)
    blocks = blocks_of(model, adapter_for(model))
    for b, e in norm.items():
        block = blocks[b]
        drop = _complement(e["neurons"], g["ffn"])
        if drop.numel():
            for p in s.ffn_producers:
                _zero_rows(get_submodule(block, p), drop)
            _zero_cols(get_submodule(block, s.ffn_consumer), drop)
        drop = _complement(e["heads"], g["units"])
        if drop.numel():
            qo, kv = _attn_rows(drop, g, s)
            _zero_rows(get_submodule(block, s.q), qo)
            _zero_rows(get_submodule(block, s.k), kv)
            _zero_rows(get_submodule(block, s.v), kv)
            _zero_cols(get_submodule(block, s.o), qo)
    return model


def _keep_rows(lin: nn.Linear, rows: torch.Tensor) -> None:
    rows = rows.to(lin.weight.device)
    lin.weight = nn.Parameter(lin.weight.data.index_select(0, rows).contiguous(), requires_grad=lin.weight.requires_grad)
    if lin.bias is not None:
        lin.bias = nn.Parameter(lin.bias.data.index_select(0, rows).contiguous(), requires_grad=lin.bias.requires_grad)
    lin.out_features = int(rows.numel())


def _keep_cols(lin: nn.Linear, cols: torch.Tensor) -> None:
    cols = cols.to(lin.weight.device)
    lin.weight = nn.Parameter(lin.weight.data.index_select(1, cols).contiguous(), requires_grad=lin.weight.requires_grad)
    lin.in_features = int(cols.numel())


@torch.no_grad()
def shrink_model(model: nn.Module, keep: Mapping[int, Mapping[str, Any]]) -> nn.Module:
    """Remove the dropped structure in place and rewrite the config; returns the same ``model``.

    Whatever the family cannot express in its config (OPT heads, Llama padding groups) stays zeroed,
    so the result equals ``mask_model(copy, keep)`` numerically. The plan (see ``plan_shrink``) is
    attached as ``model.reprise_shrink`` (its ``summary()`` goes into ``save_shrunk``'s metadata).
    """
    _, s = _structure(model)
    g = _geometry(model, s)
    plan = plan_shrink(model, keep)  # validates everything before the first change
    mask_model(model, plan.keep)
    blocks = blocks_of(model, adapter_for(model))
    for b, e in plan.keep.items():
        block = blocks[b]
        if e["neurons"].numel() != g["ffn"]:
            for p in s.ffn_producers:
                _keep_rows(get_submodule(block, p), e["neurons"])
            _keep_cols(get_submodule(block, s.ffn_consumer), e["neurons"])
            mlp = get_submodule(block, s.ffn_consumer.rpartition(".")[0], optional=True) if "." in s.ffn_consumer else None
            if mlp is not None and hasattr(mlp, "intermediate_size"):
                mlp.intermediate_size = int(e["neurons"].numel())
        if s.heads_physical and plan.stored_heads[b].numel() != g["units"]:
            qo, kv = _attn_rows(plan.stored_heads[b], g, s)
            _keep_rows(get_submodule(block, s.q), qo)
            _keep_rows(get_submodule(block, s.k), kv)
            _keep_rows(get_submodule(block, s.v), kv)
            _keep_cols(get_submodule(block, s.o), qo)
    for key, value in plan.new_config.items():
        setattr(model.config, key, value)
    model.reprise_shrink = plan
    return model


def parameter_count(model: nn.Module) -> int:
    """Distinct parameters (a tied embedding/head counts once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def save_shrunk(model: nn.Module, tokenizer: Any, out_dir: str | os.PathLike,
                info: dict[str, Any] | None = None) -> Path:
    """Write a shrunk model as a plain transformers directory (``save_compressed``'s layout) whose
    ``compression.json`` carries ``{"method": "shrink", "shrink": plan summary, **info}``."""
    from reprise.llm.export.checkpoint import save_compressed

    plan = getattr(model, "reprise_shrink", None)
    if plan is None:
        raise ReproError("save_shrunk needs a model returned by shrink_model (no reprise_shrink plan attached)")
    return save_compressed(model, tokenizer, out_dir, {"method": "shrink", "shrink": plan.summary(), **(info or {})})
