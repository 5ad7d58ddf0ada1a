"""Inference speed of a (shrunk) model against its dense original, measured in one process.

The two models are timed alternately, repeat by repeat, so that a background load or a CPU clock
change hits both alike; the speed-up is the ratio of the medians. FLOPs count every matmul of a
full forward (no KV cache): ``2 · params · tokens`` over the parameters used in a matmul (the head
included; embedding tables that are only looked up left out) plus the attention scores and
values, ``4 · L² · d_attn`` per block and sequence, where ``d_attn`` is the number of query heads
times ``head_dim`` present in the model. It agrees with torch's FlopCounterMode within 2% on tiny
models (biases and norms count as matmul parameters; negligible at scale).
"""
from __future__ import annotations

import statistics
import time
from typing import Any

import torch
import torch.nn as nn

from reprise.io import ReproError
from reprise.llm.export.shrink import parameter_count


def attention_width(model: nn.Module) -> int:
    c = model.config
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    return int(c.num_attention_heads) * int(head_dim)


def matmul_parameters(model: nn.Module) -> int:
    """Parameters that take part in a matmul per token: all of them except embedding tables that are
    only looked up (token and position embeddings not shared with the output head)."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    head_weight = getattr(head, "weight", None)
    lookup = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding) and m.weight is not head_weight}
    params = {id(p): p for p in model.parameters()}
    return sum(p.numel() for k, p in params.items() if k not in lookup)


def forward_flops(model: nn.Module, batch: int, seqlen: int) -> int:
    """Multiply-accumulates × 2 of one forward of ``batch`` × ``seqlen`` tokens (the head included)."""
    c = model.config
    tokens = batch * seqlen
    return (2 * matmul_parameters(model) * tokens
            + int(c.num_hidden_layers) * batch * 4 * seqlen * seqlen * attention_width(model))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def _once(model: nn.Module, ids: torch.Tensor) -> float:
    _sync(ids.device)
    t0 = time.perf_counter()
    model(input_ids=ids, use_cache=False)
    _sync(ids.device)
    return time.perf_counter() - t0


def measure_speed(model: nn.Module, dense: nn.Module, batch: int, seqlen: int, warmup: int = 2,
                  repeats: int = 10, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Latency, throughput, FLOP and parameter ratios of ``model`` against ``dense``.

    Both run on ``device`` with the same random token ids (seed 0); returns the medians in ms, the
    speed-up (dense / model), the FLOP ratio (dense / model), the parameter counts and what was
    measured (batch, sequence length, threads, device)."""
    if batch < 1 or seqlen < 1 or repeats < 1 or warmup < 0:
        raise ReproError(f"eval.speed: batch_size={batch}, seqlen={seqlen}, repeats={repeats}, warmup={warmup}; "
                         "use positive batch, seqlen and repeats and a non-negative warmup")
    device = torch.device(device)
    vocab = min(int(model.config.vocab_size), int(dense.config.vocab_size))
    ids = torch.randint(0, vocab, (batch, seqlen), generator=torch.Generator().manual_seed(0)).to(device)
    for m in (model, dense):
        m.eval().to(device)
    for _ in range(warmup):
        _once(dense, ids)
        _once(model, ids)
    t_dense, t_model = [], []
    for i in range(repeats):  # alternate which goes first, so neither always follows the other
        if i % 2:
            t_model.append(_once(model, ids))
            t_dense.append(_once(dense, ids))
        else:
            t_dense.append(_once(dense, ids))
            t_model.append(_once(model, ids))
    dense_s, model_s = statistics.median(t_dense), statistics.median(t_model)
    tokens = batch * seqlen
    return {
        "speedup": dense_s / model_s,
        "flop_ratio": forward_flops(dense, batch, seqlen) / forward_flops(model, batch, seqlen),
        "params": parameter_count(model),
        "dense_params": parameter_count(dense),
        "latency_ms": 1e3 * model_s,
        "dense_latency_ms": 1e3 * dense_s,
        "tokens_per_s": tokens / model_s,
        "dense_tokens_per_s": tokens / dense_s,
        "batch_size": batch, "seqlen": seqlen, "warmup": warmup, "repeats": repeats,
        "threads": torch.get_num_threads(), "device": str(device),
    }
