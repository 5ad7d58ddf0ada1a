"""The one perplexity function (GPTQ protocol, llm-compression spec §1.8).

Windows are non-overlapping and given as a [n, L] token tensor (the data stage cuts them).
loss_w is the mean cross-entropy of the L-1 next-token predictions of window w; the GPTQ code
weights it by L (not L-1) and so do we, for parity: ppl = exp(Σ_w L·loss_w / (n·L)).
Evaluation runs block by block (the driver's primitives), so models larger than the device fit.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from reprise.io import ReproError
from reprise.llm.models.adapters import adapter_for
from reprise.llm.models.blockwise import capture_inputs, forward_all_blocks, head_logits, pick_device


@torch.no_grad()
def perplexity(model: nn.Module, windows: torch.Tensor, seqlen: int, batch_size: int = 1, device: str = "auto",
               chunk_windows: int = 32, progress: bool = False) -> dict[str, Any]:
    """Perplexity of ``model`` on ``windows`` [n, seqlen]; ``seqlen`` is required and checked."""
    if windows.ndim != 2 or windows.shape[1] != seqlen:
        raise ReproError(f"perplexity windows must be [n, {seqlen}], got {tuple(windows.shape)}: "
                         "cut the test stream with the same seqlen")
    if windows.shape[0] == 0:
        raise ReproError(f"no test windows of length {seqlen}: the test set is shorter than one window")
    dev = pick_device(device)
    adapter = adapter_for(model)
    nll_sum = 0.0
    chunks = windows.split(chunk_windows)
    for chunk in tqdm(chunks, desc="perplexity", disable=not progress):
        inputs = capture_inputs(model, adapter, chunk, batch_size, dev)
        hidden = forward_all_blocks(model, adapter, inputs, dev)
        for h, ids in zip(hidden, chunk.split(batch_size)):
            logits = head_logits(model, adapter, h, dev).float()
            ids = ids.to(dev)
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1),
                                   reduction="none").view(ids.shape[0], -1).mean(dim=1)
            nll_sum += float((loss.double() * seqlen).sum())
    n = windows.shape[0]
    ppl = math.exp(nll_sum / (n * seqlen))
    if not math.isfinite(ppl):
        ppl = float("inf")
    return {"ppl": ppl, "nll_sum": nll_sum, "n_windows": n, "seqlen": seqlen}
