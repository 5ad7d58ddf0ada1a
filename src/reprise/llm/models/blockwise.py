"""Run a causal LM one block at a time: capture block-0 inputs, run a block, finish with the head.

Shared by the sequential driver (calibration) and the perplexity loop (evaluation), so both see
exactly the same block calls. Capture is generic: a forward pre-hook on block 0 records the
hidden states and every keyword argument the model passes (mask, rotary embeddings, ALiBi, ...),
then aborts the forward, so no architecture needs hand-written call signatures.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from reprise.llm.models.adapters import Adapter, blocks_of, get_submodule


class _Captured(Exception):
    pass


def pick_device(preference: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else the CPU."""
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(preference)


def _to(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, tuple):
        return tuple(_to(o, device) for o in obj)
    if isinstance(obj, list):
        return [_to(o, device) for o in obj]
    if isinstance(obj, dict):
        return {k: _to(v, device) for k, v in obj.items()}
    return obj


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(a, b))
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a is b or a == b


@dataclass
class BlockInputs:
    """Hidden states entering a block, one tensor per batch, and the kwargs of each batch.

    Batches of equal shape share one kwargs object (masks can be large at long sequence lengths).
    """
    hidden: list[torch.Tensor]
    kwargs: list[dict[str, Any]]


def _move_modules(model: nn.Module, paths: tuple[str, ...], device: torch.device) -> None:
    for path in paths:
        module = get_submodule(model, path, optional=True)
        if module is not None:
            module.to(device)


@torch.no_grad()
def capture_inputs(model: nn.Module, adapter: Adapter, input_ids: torch.Tensor, batch_size: int,
                   device: torch.device, store_device: torch.device | str = "cpu") -> BlockInputs:
    """Hidden states and kwargs that ``model`` feeds to block 0 for each batch of ``input_ids`` [n, L]."""
    block0 = blocks_of(model, adapter)[0]
    _move_modules(model, adapter.pre_modules, device)
    hidden: list[torch.Tensor] = []
    kwargs_list: list[dict[str, Any]] = []
    shared: dict[tuple, dict[str, Any]] = {}

    def hook(module, args, kwargs):
        kwargs = dict(kwargs)
        hs = args[0] if args else kwargs.pop("hidden_states")
        kwargs["use_cache"] = False
        hidden.append(hs.detach().to(store_device))
        key = tuple(hs.shape)
        if key in shared and _same(shared[key], kwargs):
            kwargs_list.append(shared[key])
        else:
            shared[key] = kwargs
            kwargs_list.append(kwargs)
        raise _Captured

    handle = block0.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        for batch in input_ids.split(batch_size):
            try:
                model(input_ids=batch.to(device), use_cache=False)
            except _Captured:
                pass
    finally:
        handle.remove()
        if device.type != "cpu":
            _move_modules(model, adapter.pre_modules, torch.device("cpu"))
    return BlockInputs(hidden, kwargs_list)


@torch.no_grad()
def run_block(block: nn.Module, inputs: BlockInputs, device: torch.device,
              store_device: torch.device | str = "cpu", keep: bool = True) -> list[torch.Tensor]:
    """Outputs of ``block`` (already on ``device``) for every batch of ``inputs``.

    ``keep=False`` discards them (a pass that only feeds hooks, such as Gram accumulation).
    """
    outs = []
    for hs, kw in zip(inputs.hidden, inputs.kwargs):
        out = block(hs.to(device), **(kw if device.type == "cpu" else _to(kw, device)))
        if keep:
            out = out[0] if isinstance(out, (tuple, list)) else out
            outs.append(out.to(store_device))
    return outs


@torch.no_grad()
def head_logits(model: nn.Module, adapter: Adapter, hidden: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Final norm (and projection) plus the LM head on the last block's output."""
    x = hidden.to(device)
    for path in adapter.post_modules:
        module = get_submodule(model, path, optional=True)
        if module is not None:
            x = module.to(device)(x)
    return get_submodule(model, adapter.head).to(device)(x)


def forward_all_blocks(model: nn.Module, adapter: Adapter, inputs: BlockInputs, device: torch.device,
                       store_device: torch.device | str = "cpu") -> list[torch.Tensor]:
    """Propagate captured inputs through every block, moving one block at a time to ``device``."""
    hidden = inputs.hidden
    for block in blocks_of(model, adapter):
        block.to(device)
        hidden = run_block(block, BlockInputs(hidden, inputs.kwargs), device, store_device)
        if device.type != "cpu":
            block.to("cpu")
    return hidden
