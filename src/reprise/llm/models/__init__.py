"""Model loading and per-architecture adapters."""
from reprise.llm.models.blockwise import BlockInputs, capture_inputs, forward_all_blocks, head_logits, pick_device, run_block
from reprise.llm.models.adapters import ADAPTERS, Adapter, adapter_for, blocks_of, get_submodule, linears_of
from reprise.llm.models.loading import (
    build_tiny, load_local, load_model, load_tokenizer, materialize, tokenizer_report,
)
from reprise.llm.models.registry import ModelSpec, load_model_registry, resolve_spec

__all__ = [
    "ADAPTERS", "Adapter", "BlockInputs", "capture_inputs", "forward_all_blocks", "head_logits", "pick_device", "run_block", "ModelSpec", "adapter_for", "blocks_of", "build_tiny", "get_submodule", "linears_of",
    "load_local", "load_model", "load_model_registry", "load_tokenizer", "materialize", "resolve_spec",
    "tokenizer_report",
]
