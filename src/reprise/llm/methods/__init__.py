"""Layer-wise compression solvers: ``solve(name, W, G, **config) -> SolveResult``.

Pure tensor math (no model, file, RNG state or Snakemake object). To add a method: write a
module with a frozen ``MethodConfig`` subclass and a core function decorated with
``@register(name, Config=..., kind=..., needs_gram=...)``, and import the module below.
"""
from reprise.llm.methods.base import (
    MethodConfig,
    NoConfig,
    PruneConfig,
    QuantConfig,
    SolveResult,
    check_inputs,
    layer_objective,
    parse_nm,
)
from reprise.llm.methods.registry import REGISTRY, Method, get_method, register, solve

# built-in methods register themselves on import
from reprise.llm.methods import identity, rtn, gptq, magnitude, wanda, sparsegpt, quantease, quantease_outlier, awq  # noqa: E402,F401,I001
from reprise.llm.methods import dsnot, admm_grad  # noqa: E402,F401,I001
from reprise.llm.methods.admm_grad import AdmmGradConfig  # noqa: E402,I001
from reprise.llm.methods.dsnot import DsnotConfig  # noqa: E402,I001
from reprise.llm.methods import refit, alps  # noqa: E402,F401,I001
from reprise.llm.methods.alps import AlpsConfig, BacksolveConfig  # noqa: E402,I001
from reprise.llm.methods.awq import AwqConfig
from reprise.llm.methods.gptq import GptqConfig
from reprise.llm.methods.quantease import QuantEaseConfig
from reprise.llm.methods.quantease_outlier import QuantEaseOutlierConfig
from reprise.llm.methods.sparsegpt import SparseGptConfig
from reprise.llm.methods import osscar  # noqa: E402,F401,I001
from reprise.llm.methods.osscar import MpConfig, OsscarConfig, StructuredConfig  # noqa: E402,I001
from reprise.llm.methods.hassle_free import HassleFreeConfig, OatsConfig  # noqa: E402,I001

__all__ = [
    "AdmmGradConfig", "DsnotConfig",
    "AlpsConfig", "BacksolveConfig",
    "MpConfig", "OsscarConfig", "StructuredConfig",
    "HassleFreeConfig", "OatsConfig",
    "REGISTRY", "Method", "MethodConfig", "NoConfig", "QuantConfig", "PruneConfig", "AwqConfig", "GptqConfig",
    "QuantEaseConfig", "QuantEaseOutlierConfig",
    "SparseGptConfig", "SolveResult", "check_inputs", "get_method", "layer_objective", "parse_nm",
    "register", "solve",
]
