"""Declarative per-architecture tables: where the blocks, embeddings, final stage and linears live.

One table per family, in the style of GPTQModel's module tables. The driver and the perplexity
loop read nothing architecture-specific from anywhere else. Adding an architecture means adding
one ``Adapter`` entry here (see the README).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn

from reprise.io import ReproError


@dataclass(frozen=True)
class StructuredUnits:
    """Where structured pruning (OSSCAR, reprise.llm.export.shrink) finds a block's attention units
    and FFN neurons, and what the family's config can express."""

    q: str
    k: str
    v: str
    o: str  # attention consumer: its input columns are the heads
    ffn_producers: tuple[str, ...]  # linears whose output rows are the FFN neurons
    ffn_consumer: str  # FFN consumer: its input columns are the neurons
    ffn_config: str  # config attribute holding the FFN width
    heads_physical: bool  # can fewer attention units be expressed in the config?
    gqa: bool  # attention unit = one key-value group (else: one head)


@dataclass(frozen=True)
class Adapter:
    family: str
    model_types: tuple[str, ...]  # HF ``config.model_type`` values this table covers
    blocks: str  # dotted path of the ModuleList of transformer blocks
    pre_modules: tuple[str, ...]  # run before block 0 (moved to the device for input capture)
    post_modules: tuple[str, ...]  # final stage before the head, applied in this order
    head: str
    # Linears of one block in true-sequential order: each inner tuple is a group whose Grams come
    # from one forward pass after the previous groups were compressed.
    sequential_groups: tuple[tuple[str, ...], ...]
    # Linears that read the very same input tensor: one Gram serves them all (saves the XᵀX product).
    shared_inputs: tuple[tuple[str, ...], ...] = ()
    # The role of each sequential group, one entry per group: "attn" (attention projections) or
    # "mlp" (feed-forward). Methods may treat the roles differently (DSnoT's skip_layer).
    group_roles: tuple[str, ...] = ()
    # Structured pruning units (None: the family cannot be shrunk, e.g. fused query_key_value).
    structure: StructuredUnits | None = None

    def __post_init__(self) -> None:
        if self.group_roles and (len(self.group_roles) != len(self.sequential_groups)
                                 or any(r not in ("attn", "mlp") for r in self.group_roles)):
            raise ReproError(f"adapter {self.family!r}: group_roles {self.group_roles} must give one role, "
                             f"'attn' or 'mlp', per sequential group ({len(self.sequential_groups)} groups)")

    def role(self, name: str) -> str:
        """``"attn"`` or ``"mlp"``: the role of the sequential group holding linear ``name``."""
        if not self.group_roles:
            raise ReproError(f"adapter {self.family!r} declares no group_roles; add one role ('attn' or 'mlp') "
                             f"per sequential group in src/reprise/llm/models/adapters.py")
        for group, role in zip(self.sequential_groups, self.group_roles):
            if name in group:
                return role
        raise ReproError(f"adapter {self.family!r} has no linear {name!r}; known: {list(self.linear_names)}")

    def gram_source(self, name: str) -> str:
        """The linear whose input Gram ``name`` uses (itself unless it shares an input)."""
        for shared in self.shared_inputs:
            if name in shared:
                return shared[0]
        return name

    @property
    def linear_names(self) -> tuple[str, ...]:
        return tuple(n for g in self.sequential_groups for n in g)

    def groups(self, true_sequential: bool) -> list[list[str]]:
        """Linear groups for one block: the true-sequential groups, or all linears at once."""
        if true_sequential:
            return [list(g) for g in self.sequential_groups]
        return [list(self.linear_names)]


# BLOOM and Falcon: one fused query-key-value projection, then the output and the two MLP linears.
_FUSED_QKV_GROUPS = (
    ("self_attention.query_key_value",),
    ("self_attention.dense",),
    ("mlp.dense_h_to_4h",),
    ("mlp.dense_4h_to_h",),
)
# Every supported family: two attention groups (the input projections, the output projection),
# then two MLP groups (the up/gate projections, the down projection).
_ATTN_ATTN_MLP_MLP = ("attn", "attn", "mlp", "mlp")

ADAPTERS: dict[str, Adapter] = {
    a.family: a
    for a in (
        Adapter(
            family="opt",
            model_types=("opt",),
            blocks="model.decoder.layers",
            pre_modules=("model.decoder.embed_tokens", "model.decoder.embed_positions", "model.decoder.project_in"),
            post_modules=("model.decoder.final_layer_norm", "model.decoder.project_out"),
            head="lm_head",
            sequential_groups=(
                ("self_attn.k_proj", "self_attn.v_proj", "self_attn.q_proj"),
                ("self_attn.out_proj",),
                ("fc1",),
                ("fc2",),
            ),
            shared_inputs=(("self_attn.k_proj", "self_attn.v_proj", "self_attn.q_proj"),),
            group_roles=_ATTN_ATTN_MLP_MLP,
            # OPTAttention derives head_dim from hidden_size / num_attention_heads: heads stay masked
            structure=StructuredUnits(q="self_attn.q_proj", k="self_attn.k_proj", v="self_attn.v_proj",
                                      o="self_attn.out_proj", ffn_producers=("fc1",), ffn_consumer="fc2",
                                      ffn_config="ffn_dim", heads_physical=False, gqa=False),
        ),
        Adapter(
            family="llama",
            model_types=("llama", "mistral", "qwen2"),
            blocks="model.layers",
            pre_modules=("model.embed_tokens", "model.rotary_emb"),
            post_modules=("model.norm",),
            head="lm_head",
            sequential_groups=(
                ("self_attn.k_proj", "self_attn.v_proj", "self_attn.q_proj"),
                ("self_attn.o_proj",),
                ("mlp.up_proj", "mlp.gate_proj"),
                ("mlp.down_proj",),
            ),
            shared_inputs=(("self_attn.k_proj", "self_attn.v_proj", "self_attn.q_proj"), ("mlp.up_proj", "mlp.gate_proj")),
            group_roles=_ATTN_ATTN_MLP_MLP,
            structure=StructuredUnits(q="self_attn.q_proj", k="self_attn.k_proj", v="self_attn.v_proj",
                                      o="self_attn.o_proj", ffn_producers=("mlp.gate_proj", "mlp.up_proj"),
                                      ffn_consumer="mlp.down_proj", ffn_config="intermediate_size",
                                      heads_physical=True, gqa=True),
        ),
        Adapter(
            family="bloom",
            model_types=("bloom",),
            blocks="transformer.h",
            pre_modules=("transformer.word_embeddings", "transformer.word_embeddings_layernorm"),
            post_modules=("transformer.ln_f",),
            head="lm_head",
            sequential_groups=_FUSED_QKV_GROUPS,
            group_roles=_ATTN_ATTN_MLP_MLP,
        ),
        Adapter(
            family="falcon",
            model_types=("falcon",),
            blocks="transformer.h",
            pre_modules=("transformer.word_embeddings", "transformer.rotary_emb"),
            post_modules=("transformer.ln_f",),
            head="lm_head",
            sequential_groups=_FUSED_QKV_GROUPS,
            group_roles=_ATTN_ATTN_MLP_MLP,
        ),
    )
}


def adapter_for(model: nn.Module) -> Adapter:
    """The adapter whose ``model_types`` contain the model's ``config.model_type``."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    for adapter in ADAPTERS.values():
        if model_type in adapter.model_types:
            return adapter
    known = sorted(t for a in ADAPTERS.values() for t in a.model_types)
    raise ReproError(
        f"no adapter for model_type {model_type!r}; known: {known}. "
        "Add an Adapter entry in src/reprise/llm/models/adapters.py (see README: adding an architecture)."
    )


def get_submodule(root: nn.Module, path: str, optional: bool = False) -> nn.Module | None:
    """Resolve a dotted path; ``None`` for an optional module that this model lacks or sets to None."""
    module: nn.Module | None = root
    for part in path.split("."):
        module = getattr(module, part, None)
        if module is None:
            if optional:
                return None
            raise ReproError(f"module {path!r} not found in {type(root).__name__}; the adapter table does not fit this model")
    return module


def blocks_of(model: nn.Module, adapter: Adapter) -> nn.ModuleList:
    return get_submodule(model, adapter.blocks)  # type: ignore[return-value]


def linears_of(block: nn.Module, adapter: Adapter) -> dict[str, nn.Linear]:
    """The block's compressible linears by adapter name, in true-sequential order."""
    out = {}
    for name in adapter.linear_names:
        module = get_submodule(block, name)
        if not isinstance(module, nn.Linear):
            raise ReproError(f"{name} is a {type(module).__name__}, expected nn.Linear")
        out[name] = module
    return out
