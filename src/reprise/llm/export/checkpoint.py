"""Write a compressed model as a plain transformers directory plus compression metadata.

Layout of ``<out>/``: ``config.json`` + ``model.safetensors`` (dense weights with the compression
applied, so ``AutoModelForCausalLM.from_pretrained`` loads it as is), the tokenizer,
``compression.json`` (method, config, driver, per-layer summary) and ``compression.safetensors``
(bit-packed masks and quantization scales/zeros/g_idx keyed ``<block>.<layer>.<field>``). A
sparse-plus-low-rank solve adds S's values and the factors there, and ``lora/``, the low-rank part
as a peft LoRA adapter (``reprise.llm.export.lowrank``; compression.json's ``lowrank`` says so).
The directory appears only when complete (written under a temporary name, then renamed).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from reprise.io import ReproError, atomic_dir, read_json, write_json


def save_compressed(model: torch.nn.Module, tokenizer: Any, out_dir: str | os.PathLike, info: dict[str, Any],
                    extras: dict[str, torch.Tensor] | None = None) -> Path:
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        if extras:
            save_file({k: v.contiguous() for k, v in extras.items()}, str(tmp / "compression.safetensors"))
            if any(k.endswith(".lora_A") for k in extras):
                from reprise.llm.export.lowrank import write_lora_adapter

                # inside the temporary directory: no model dir without its adapter
                lowrank = write_lora_adapter(tmp, extras, model)
                if lowrank:
                    info = {**info, "lowrank": lowrank}
        write_json(tmp / "compression.json", info)
    return out_dir


def load_compressed(model_dir: str | os.PathLike, dtype: str = "float32"):
    """(model, tokenizer, compression info) from a directory written by ``save_compressed``."""
    from reprise.llm.models import load_local

    model_dir = Path(model_dir)
    model, tokenizer = load_local(model_dir, dtype=dtype)
    info_file = model_dir / "compression.json"
    return model, tokenizer, (read_json(info_file) if info_file.is_file() else {})


def load_masks(model_dir: str | os.PathLike, name: str = "mask") -> dict[str, torch.Tensor]:
    """Boolean masks by ``<block>.<layer>``: the keep-masks (``name="mask"``; empty for methods
    that keep every weight) or another packed mask such as ``"outlier_mask"``."""
    from reprise.llm.driver import unpack_mask

    f = Path(model_dir) / "compression.safetensors"
    if not f.is_file():
        return {}
    tensors = load_file(str(f))
    masks = {}
    for key, packed in tensors.items():
        if key.endswith(f".{name}"):
            prefix = key[: -len(f".{name}")]
            shape = tensors.get(f"{prefix}.{name}_shape")
            if shape is None:
                raise ReproError(f"{f}: {key} has no {prefix}.{name}_shape")
            masks[prefix] = unpack_mask(packed, shape)
    return masks
