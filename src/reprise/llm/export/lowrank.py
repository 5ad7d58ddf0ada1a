"""Sparse + low-rank checkpoints (HASSLE-free, OATS): S and BA kept apart beside the dense model.

A sparse + low-rank solve leaves, per compressed linear ``<block>.<layer>``, the effective weight
``S + B·A`` in the dense ``model.safetensors`` (so ``AutoModelForCausalLM.from_pretrained`` loads
the directory as a plain model) and, in ``compression.safetensors``, the parts themselves:

- ``<prefix>.mask`` / ``<prefix>.mask_shape``: S's support, bit-packed;
- ``<prefix>.sparse_values``: S at the mask's positions in row-major order (fp32), so S is exact;
- ``<prefix>.lora_A`` (r × in) and ``<prefix>.lora_B`` (out × r), fp32, as solved (rank 0: none).

``write_lora_adapter`` adds ``<model>/lora/``, the low-rank part as a peft 0.21 LoRA adapter
(spec §5.2 "Storage": ``lora_alpha = 16``, dropout 0, per-layer ranks through ``rank_pattern``).
peft computes ``scaling·lora_B·lora_A`` with ``scaling = alpha/r``, so the adapter's ``lora_B`` is
``B/scaling``; ``lora_A`` is ``A`` unchanged. ``load_sparse_lowrank`` puts S alone in every
compressed linear and attaches that adapter: a ``peft.PeftModel`` with the dense model's logits
(up to round-off), whose ``merge_and_unload()`` gives the dense weights back.
"""
from __future__ import annotations

import copy
import os
from collections import Counter
from pathlib import Path
from typing import Any, Mapping

import torch

from reprise.io import ReproError, read_json

LORA_DIR = "lora"
LORA_ALPHA = 16  # the scripts' lora_alpha (spec §5.2)
_ADAPTER_CONFIG, _ADAPTER_WEIGHTS = "adapter_config.json", "adapter_model.safetensors"
_PEFT_PREFIX = "base_model.model."  # peft's saved key prefix for a PeftModel's adapter weights


def lowrank_ranks(extras: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """``{<block>.<layer>: rank}`` of every sparse + low-rank layer in ``extras`` (rank 0 included:
    a layer with sparse values and no factors)."""
    prefixes = {k.rsplit(".", 1)[0] for k in extras if k.endswith((".sparse_values", ".lora_A", ".lora_B"))}
    ranks = {}
    for p in sorted(prefixes):
        A, B = extras.get(f"{p}.lora_A"), extras.get(f"{p}.lora_B")
        if (A is None) != (B is None):
            raise ReproError(f"extras of {p}: lora_A and lora_B must come together (found only "
                             f"{'lora_A' if A is not None else 'lora_B'})")
        if A is not None and (A.ndim != 2 or B.ndim != 2 or A.shape[0] != B.shape[1]):
            raise ReproError(f"extras of {p}: lora_A {tuple(A.shape)} and lora_B {tuple(B.shape)} do not chain")
        ranks[p] = 0 if A is None else int(A.shape[0])
    return ranks


def _module_path(model_or_adapter: Any, prefix: str) -> str:
    from reprise.llm.models.adapters import Adapter, adapter_for

    adapter = model_or_adapter if isinstance(model_or_adapter, Adapter) else adapter_for(model_or_adapter)
    return f"{adapter.blocks}.{prefix}"


def _lora_config(ranks: Mapping[str, int], alpha: float):
    """peft's LoraConfig for these module paths: the most common rank as ``r``, the rest in
    ``rank_pattern`` (the budget rules give q/k/v/o/mlp different ranks)."""
    from peft import LoraConfig

    counts = Counter(ranks.values())
    r = max(counts, key=lambda k: (counts[k], k))  # ties: the larger rank, for a fixed choice
    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
                      target_modules=sorted(ranks), rank_pattern={p: k for p, k in sorted(ranks.items()) if k != r},
                      inference_mode=True)


def write_lora_adapter(model_dir: str | os.PathLike, extras: Mapping[str, torch.Tensor], model: torch.nn.Module,
                       alpha: float = LORA_ALPHA) -> dict[str, Any] | None:
    """Write ``model_dir/lora/`` (adapter_config.json + adapter_model.safetensors, peft's format)
    from the ``lora_A``/``lora_B`` extras; returns the ``lowrank`` record for compression.json, or
    None when no layer has rank > 0 (nothing written).

    peft builds the adapter on a meta-device copy of ``model``'s architecture, which checks the
    target modules and shapes and gives the key names, without touching ``model``'s weights.
    """
    from peft import get_peft_model, get_peft_model_state_dict
    from safetensors.torch import save_file

    ranks = lowrank_ranks(extras)
    paths = {p: _module_path(model, p) for p, r in ranks.items() if r > 0}
    if not paths:
        return None
    config = _lora_config({paths[p]: ranks[p] for p in paths}, alpha)
    with torch.random.fork_rng(devices=[]), torch.device("meta"):  # module inits draw from the global RNG
        skeleton = type(model)(copy.deepcopy(model.config))
        peft_model = get_peft_model(skeleton, config)
    expected = get_peft_model_state_dict(peft_model)  # key -> meta tensor of the right shape
    tensors: dict[str, torch.Tensor] = {}
    for p, path in paths.items():
        scaling = alpha / ranks[p]
        for part, t in (("lora_A", extras[f"{p}.lora_A"]), ("lora_B", extras[f"{p}.lora_B"] / scaling)):
            key = f"{_PEFT_PREFIX}{path}.{part}.weight"
            if key not in expected or expected[key].shape != t.shape:
                have = tuple(expected[key].shape) if key in expected else "no such module"
                raise ReproError(f"extras {p}.{part} has shape {tuple(t.shape)}, but peft's LoRA for {path} "
                                 f"expects {have}: the extras do not belong to this model")
            tensors[key] = t.detach().to("cpu", torch.float32).contiguous()
    if set(expected) != set(tensors):  # a target that matched more modules than intended
        raise ReproError(f"peft targets {sorted(set(expected) - set(tensors))[:4]} that have no factors in the extras")
    out = Path(model_dir) / LORA_DIR
    saved = copy.deepcopy(peft_model.peft_config["default"])
    saved.target_modules = sorted(saved.target_modules)  # peft keeps a set: fix the order, same bytes every run
    # the adapter's base is S alone, which no directory holds (the dense model already contains BA):
    # name none, so that no loader pairs it with the wrong base
    saved.base_model_name_or_path = None
    saved.save_pretrained(str(out))
    save_file(tensors, str(out / _ADAPTER_WEIGHTS), metadata={"format": "pt"})  # as PeftModel.save_pretrained
    import peft

    return {"adapter": "lora", "dir": LORA_DIR, "alpha": alpha, "peft": peft.__version__,
            "sparse": "<block>.<layer>.sparse_values in compression.safetensors (S on its mask, row-major)",
            "ranks": ranks}


def _need(tensors: Mapping[str, torch.Tensor], key: str, where: Path) -> torch.Tensor:
    if key not in tensors:
        raise ReproError(f"{where} has no {key}, which the low-rank record in compression.json lists; the "
                         "checkpoint is incomplete or mixed: rerun its compress job")
    return tensors[key]


def load_sparse_lowrank(model_dir: str | os.PathLike, dtype: str = "float32"):
    """A ``peft.PeftModel`` of a sparse + low-rank checkpoint: every compressed linear of the base
    holds only S (from the mask and ``sparse_values``), the low-rank part is the LoRA adapter in
    ``model_dir/lora``. Its logits equal those of the dense directory up to round-off."""
    from peft import PeftModel
    from safetensors.torch import load_file

    from reprise.llm.driver import unpack_mask
    from reprise.llm.models import load_local
    from reprise.llm.models.adapters import adapter_for, get_submodule

    model_dir = Path(model_dir)
    info_file, extras_file = model_dir / "compression.json", model_dir / "compression.safetensors"
    if not info_file.is_file():
        raise ReproError(f"{info_file} is missing: {model_dir} is not a checkpoint written by reprise compress")
    low = read_json(info_file).get("lowrank")
    if not low:
        raise ReproError(f"{info_file} records no low-rank adapter ('lowrank'): the checkpoint is not from a sparse + "
                         "low-rank method with rank > 0 (hassle-free, oats); load it with "
                         "AutoModelForCausalLM.from_pretrained instead")
    lora_dir = model_dir / low.get("dir", LORA_DIR)
    for f in (lora_dir / _ADAPTER_CONFIG, lora_dir / _ADAPTER_WEIGHTS, extras_file):
        if not f.is_file():
            raise ReproError(f"{f} is missing: the sparse + low-rank checkpoint {model_dir} is incomplete; rerun its "
                             "compress job (the dense model there still loads with from_pretrained)")
    tensors = load_file(str(extras_file))
    ranks = {p: int(r) for p, r in low["ranks"].items()}
    if lowrank_ranks(tensors) != ranks:
        raise ReproError(f"{extras_file} and the ranks in {info_file} disagree; rerun the compress job")
    adapter_tensors = load_file(str(lora_dir / _ADAPTER_WEIGHTS))

    base, _ = load_local(model_dir, dtype=dtype)
    arch = adapter_for(base)
    expected_keys = set()
    for p, r in ranks.items():
        lin = get_submodule(base, _module_path(arch, p))
        mask = unpack_mask(_need(tensors, f"{p}.mask", extras_file), _need(tensors, f"{p}.mask_shape", extras_file))
        values = _need(tensors, f"{p}.sparse_values", extras_file)
        if tuple(mask.shape) != tuple(lin.weight.shape) or int(mask.sum()) != values.numel():
            raise ReproError(f"{extras_file}: {p}'s mask {tuple(mask.shape)} with {int(mask.sum())} kept entries and "
                             f"{values.numel()} sparse values do not fit the weight {tuple(lin.weight.shape)}")
        S = torch.zeros(mask.shape, dtype=torch.float32)
        S[mask] = values
        lin.weight.data.copy_(S.to(lin.weight.dtype))
        if r > 0:
            key = f"{_PEFT_PREFIX}{_module_path(arch, p)}.lora_A.weight"
            # the adapter must be the one these extras describe, not a stale or foreign one
            if key not in adapter_tensors or not torch.equal(adapter_tensors[key], tensors[f"{p}.lora_A"]):
                raise ReproError(f"{lora_dir / _ADAPTER_WEIGHTS} does not hold {p}'s lora_A from {extras_file}; "
                                 "the adapter and the checkpoint do not match: rerun the compress job")
            expected_keys |= {key, key.replace(".lora_A.", ".lora_B.")}
    if set(adapter_tensors) != expected_keys:
        raise ReproError(f"{lora_dir / _ADAPTER_WEIGHTS} holds {len(adapter_tensors)} tensors, the checkpoint's "
                         f"low-rank record needs {len(expected_keys)}; rerun the compress job")
    with torch.random.fork_rng(devices=[]):  # peft initialises the LoRA layers before loading them
        model = PeftModel.from_pretrained(base, str(lora_dir), is_trainable=False)
    for p, r in ranks.items():  # what peft built must be what was solved
        layer = get_submodule(model.base_model.model, _module_path(arch, p))
        got = int(layer.r.get("default", 0)) if hasattr(layer, "r") else 0
        if got != r:
            raise ReproError(f"{lora_dir / _ADAPTER_CONFIG} gives {p} rank {got}, the checkpoint has {r}; "
                             "rerun the compress job")
    return model.eval()
