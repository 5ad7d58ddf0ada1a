"""Load a model and tokenizer from any spec, and materialise a local fp32 safetensors copy.

The workflow's ``prepare_model`` rule calls ``materialize`` once per model key; every later job
loads the local copy (fast, offline). Hub downloads go through ``from_pretrained`` at the pinned
revision and honour ``HF_HUB_OFFLINE``.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from reprise.io import ReproError, atomic_dir, write_json
from reprise.llm.models.registry import ModelSpec

log = logging.getLogger("reprise.models")

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# Prefer SDPA (spec §1.11: with a None mask only SDPA is causal). Architectures without an SDPA
# path (BLOOM) fall back to eager; that is safe because the driver captures the mask the model
# itself passes to block 0 instead of building one.
ATTN_IMPL = "sdpa"


def _with_attn(load):
    """Call ``load(attn_implementation)`` with SDPA, or eager where the architecture has no SDPA."""
    try:
        return load(ATTN_IMPL)
    except ValueError as exc:
        if "scaled_dot_product_attention" not in str(exc):
            raise
        return load("eager")


def _dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise ReproError(f"dtype {name!r} unknown; use one of {sorted(DTYPES)}")
    return DTYPES[name]


def _hub_error(spec: ModelSpec, exc: Exception) -> ReproError:
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    hint = (
        "HF_HUB_OFFLINE=1 is set and the model is not in the local cache: run once with network access, "
        "or point --model at a local directory / .gguf file"
        if offline
        else "check the hub id and revision, and network access"
    )
    return ReproError(f"model {spec.key!r} ({spec.id}@{spec.revision}) could not be loaded: {hint} ({type(exc).__name__}: {exc})")


def build_tiny(spec: ModelSpec, vocab_size: int | None = None) -> nn.Module:
    """A random-weight model from a config with a fixed seed; never touches the global RNG."""
    from transformers import AutoConfig, AutoModelForCausalLM

    if not spec.family:
        raise ReproError(f"tiny model {spec.key!r} needs `family` (opt, llama, bloom, falcon)")
    overrides = dict(spec.config)
    if vocab_size is not None:
        overrides.setdefault("vocab_size", vocab_size)
    config = AutoConfig.for_model(spec.family, **overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        model = _with_attn(lambda impl: AutoModelForCausalLM.from_config(config, attn_implementation=impl))
    return model.to(_dtype(spec.dtype)).eval()


def _strip_gguf(model: nn.Module) -> nn.Module:
    """A GGUF load is dequantized to dense weights but still flagged as quantized; unflag it so that
    ``save_pretrained`` writes plain safetensors (offline-assets spec §1)."""
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    for attr in ("is_quantized", "quantization_method"):
        if hasattr(model, attr):
            try:
                setattr(model, attr, False if attr == "is_quantized" else None)
            except AttributeError:
                pass
    return model


def load_tokenizer(spec: ModelSpec, registry: dict[str, ModelSpec] | None = None, use_fast: bool = True):
    from transformers import AutoTokenizer

    if spec.source == "tiny":
        if not spec.tokenizer or not registry or spec.tokenizer not in registry:
            raise ReproError(f"tiny model {spec.key!r}: `tokenizer` must name another model key")
        return load_tokenizer(registry[spec.tokenizer], registry, use_fast)
    if spec.source == "gguf":
        directory, name = spec.gguf_location()
        return AutoTokenizer.from_pretrained(directory, gguf_file=name, use_fast=use_fast)
    if spec.source == "local":
        return AutoTokenizer.from_pretrained(spec.path, use_fast=use_fast)
    try:
        return AutoTokenizer.from_pretrained(spec.id, revision=spec.revision, use_fast=use_fast)
    except OSError as exc:
        raise _hub_error(spec, exc) from exc


def load_model(spec: ModelSpec, registry: dict[str, ModelSpec] | None = None, dtype: str | None = None) -> nn.Module:
    """The model in eval mode on the CPU, SDPA attention; ``dtype`` overrides the spec's."""
    from transformers import AutoModelForCausalLM

    torch_dtype = _dtype(dtype or spec.dtype)
    if spec.source == "tiny":
        vocab = None
        if spec.tokenizer and registry and spec.tokenizer in registry:
            vocab = len(load_tokenizer(spec, registry))
        model = build_tiny(spec, vocab_size=vocab)
    elif spec.source == "gguf":
        directory, name = spec.gguf_location()
        model = _strip_gguf(_with_attn(
            lambda impl: AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, attn_implementation=impl)))
    elif spec.source == "local":
        model = _with_attn(lambda impl: AutoModelForCausalLM.from_pretrained(
            spec.path, dtype=torch_dtype, attn_implementation=impl))
    else:
        if not spec.pinned:
            log.warning("model %s: revision %r is not a pinned commit sha; results may drift", spec.key, spec.revision)
        try:
            model = _with_attn(lambda impl: AutoModelForCausalLM.from_pretrained(
                spec.id, revision=spec.revision, dtype=torch_dtype, attn_implementation=impl))
        except OSError as exc:
            raise _hub_error(spec, exc) from exc
    model = model.to(torch_dtype).eval()
    model.config.use_cache = False
    return model


def tokenizer_report(spec: ModelSpec, registry: dict[str, ModelSpec] | None, text: str) -> dict[str, Any]:
    """Which tokenizer class is used, and whether the slow one (if any) tokenizes ``text`` the same."""
    fast = load_tokenizer(spec, registry, use_fast=True)
    report: dict[str, Any] = {"class": type(fast).__name__, "is_fast": bool(getattr(fast, "is_fast", False))}
    try:
        slow = load_tokenizer(spec, registry, use_fast=False)
    except Exception as exc:  # many GGUF/fast-only tokenizers have no slow twin
        report["slow"] = f"unavailable ({type(exc).__name__})"
        return report
    report["slow_class"] = type(slow).__name__
    if getattr(slow, "is_fast", False):
        report["note"] = ("use_fast=False returned a fast tokenizer too: this model ships no slow tokenizer, "
                          "so the papers' use_fast=False cannot differ here")
    a, b = fast(text)["input_ids"], slow(text)["input_ids"]
    report["n_tokens_fast"], report["n_tokens_slow"] = len(a), len(b)
    report["identical"] = a == b
    if a != b:
        report["first_difference"] = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return report


def materialize(spec: ModelSpec, out_dir: str | os.PathLike, registry: dict[str, ModelSpec] | None = None) -> Path:
    """Write an fp32-or-spec-dtype safetensors copy + tokenizer + ``source.json`` atomically."""
    from reprise.provenance import sha256_file

    out_dir = Path(out_dir)
    model = load_model(spec, registry)
    tokenizer = load_tokenizer(spec, registry)
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        source: dict[str, Any] = {
            "key": spec.key, "source": spec.source, "id": spec.id, "revision": spec.revision,
            "pinned": spec.pinned, "family": spec.family, "dtype": spec.dtype, "note": spec.note,
            "n_params": sum(p.numel() for p in model.parameters()),
            "weights_sha256": {p.name: sha256_file(p) for p in sorted(tmp.glob("*.safetensors"))},
        }
        if spec.source == "gguf":
            directory, name = spec.gguf_location()
            source["gguf_file"] = name
            source["gguf_sha256"] = sha256_file(directory / name)
        write_json(tmp / "source.json", source)
    return out_dir


def load_local(model_dir: str | os.PathLike, dtype: str = "float32"):
    """Model + tokenizer from a materialised directory (the fast path of every workflow job).

    The tokenizer is None for a directory that holds none (a bare weights directory)."""
    from transformers import AutoTokenizer

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise ReproError(f"{model_dir} is not a model directory (no config.json); run `snakemake {model_dir}/source.json`")
    spec = ModelSpec(key=model_dir.name, source="local", path=str(model_dir), dtype=dtype)
    has_tokenizer = any((model_dir / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model"))
    return load_model(spec), (AutoTokenizer.from_pretrained(model_dir) if has_tokenizer else None)
