"""Job resources computed from the work: model size, hidden/FFN widths, tokens, method, retry.

One set of formulas serves the Snakemake rules (``resources:``) and ``reprise plan``. They are
deliberately conservative upper estimates: a SLURM job that asks too little is killed, one that
asks a little too much only waits longer. Each retry multiplies memory and runtime, so a job
killed for memory or time comes back with more.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
GIB_MB = 1024
OVERHEAD_MB = 3 * GIB_MB  # interpreter, torch, transformers, tokenizer, allocator slack
# Sustained throughputs used for runtime estimates (FLOP/s): a conservative GPU figure (fp16/fp32
# mixed, A100/H100 class, far below peak) and one CPU core as measured on the development machine.
GPU_FLOPS = 20e12
CPU_CORE_FLOPS = 15e9
# Per-weight solve cost relative to a d^2 pass, per method family (cubic solvers dominate).
CUBIC_METHODS = {"gptq", "sparsegpt", "quantease", "quantease-outlier", "alps", "osscar", "ziplm", "hassle-free",
                 "admm-grad", "awq"}
# Methods whose cost is repeated passes over each layer rather than factorisations: QuantEase's
# sweeps cost one GEMM plus the in-sweep corrections, about 3·q·p² flops each (spec §2.8), at the
# paper's 30 sweeps; AWQ tries 20 scales and 20 clipping ratios, each one objective (2·q·p²).
SWEEPS = {"quantease": 30 * 3, "quantease-outlier": 30 * 4, "awq": 40 * 2}
# Iterative solvers with a factorisation per outer step (ADMM, alternating minimisation).
# HASSLE-free repeats its sparse step (one SparseGPT factorisation, or a whole ALPS solve) in each
# of its 80 outer iterations (spec §5.5); OATS one truncated SVD per iteration, 80 iterations.
ITERATIVE = {"alps": 30, "hassle-free": 80, "hassle-free-alps": 80 * 30, "oats": 80, "admm-grad": 5}
CUBIC_METHODS |= {"hassle-free-alps", "oats"}


def cost_key(method: str, config: Any = None) -> str:
    """The cost family of a run: HASSLE-free with ALPS inside costs an ALPS solve per outer step."""
    if method == "hassle-free" and (config or {}).get("sparse_solver") == "alps":
        return "hassle-free-alps"
    return method


def _iterations(method: str, config: Any = None) -> float:
    """Outer iterations relative to the defaults above (a smoke config with 4 instead of 80)."""
    base = ITERATIVE.get(method, 1)
    cfg = config or {}
    default = {"hassle-free": 80, "hassle-free-alps": 80, "oats": 80}.get(method)
    own = cfg.get("iters" if method == "oats" else "am_iters") if default else None
    return base * (own / default) if own else base


@dataclass(frozen=True)
class Shape:
    """What the formulas need to know about a model."""
    params: float
    hidden: int
    intermediate: int
    layers: int
    dtype: str = "float32"

    @property
    def weight_bytes(self) -> float:
        return self.params * BYTES.get(self.dtype, 4)

    @classmethod
    def of(cls, spec: Any) -> "Shape":
        """From a ``ModelSpec``; tiny models fall back to their config (hidden_size, ffn widths, layers)."""
        cfg = dict(getattr(spec, "config", {}) or {})
        hidden = spec.hidden or cfg.get("hidden_size") or 1024
        inter = spec.intermediate or cfg.get("intermediate_size") or cfg.get("ffn_dim") or 4 * hidden
        layers = spec.layers or cfg.get("num_hidden_layers") or cfg.get("n_layer") or 12
        params = spec.params or 12 * layers * hidden * hidden + 2 * 50_000 * hidden
        return cls(float(params), int(hidden), int(inter), int(layers), spec.dtype)


def _retry(attempt: int) -> float:
    return 1.0 + 0.5 * (max(int(attempt), 1) - 1)  # 1, 1.5, 2, ...


def compress_mem_mb(shape: Shape, n_seq: int, seqlen: int, method: str = "gptq", attempt: int = 1) -> int:
    """Host memory of a compress job: the model, two activation streams, the largest Gram and its factors."""
    activations = 2 * n_seq * seqlen * shape.hidden * BYTES.get(shape.dtype, 4)
    gram_copies = 4 if method in CUBIC_METHODS else 2  # G, factor, inverse, workspace
    grams = gram_copies * shape.intermediate ** 2 * 4
    total = shape.weight_bytes + activations + grams
    return int(math.ceil((total / 2**20 * 1.3 + OVERHEAD_MB) * _retry(attempt)))


def eval_mem_mb(shape: Shape, seqlen: int, batch: int = 1, attempt: int = 1, vocab: int = 50_000) -> int:
    """Host memory of an evaluation job: the model, one chunk of activations and fp32 logits."""
    chunk = 32 * seqlen * shape.hidden * BYTES.get(shape.dtype, 4)
    logits = batch * seqlen * vocab * 4
    total = shape.weight_bytes + chunk + logits
    return int(math.ceil((total / 2**20 * 1.3 + OVERHEAD_MB) * _retry(attempt)))


def _seconds(flops: float, gpu: bool, threads: int) -> float:
    return flops / (GPU_FLOPS if gpu else CPU_CORE_FLOPS * max(threads, 1))


def _load_min(shape: Shape) -> float:
    return 0.5 + shape.weight_bytes / 1e9 / 60  # read/write the weights at ~1 GB/s, plus start-up


def _request(expected_min: float, attempt: int) -> int:
    """What a job asks for: 3x the expected minutes plus 10 (queue-safe), grown on each retry."""
    return int(math.ceil((3 * expected_min + 10) * _retry(attempt)))


# A common per-job wall-time limit of cluster partitions (48 h): a first attempt that asks for more
# is refused or queued forever, so a longer full-scale experiment is split (manifest `split_by`).
CLUSTER_MAX_RUNTIME_MIN = 48 * 60


def experiment_runtime_min(expected_min: float, attempt: int = 1) -> int:
    """The -t of an experiment job, from its manifest's expected minutes per job."""
    return _request(expected_min, attempt)


def experiment_mem_mb(mem_mb: float, attempt: int = 1) -> int:
    """The --mem of an experiment job: its manifest's mem_mb, grown on each retry."""
    return int(math.ceil(mem_mb * _retry(attempt)))


def compress_expected_min(shape: Shape, n_seq: int, seqlen: int, method: str = "gptq", gpu: bool = True,
                          threads: int = 1, config: Any = None) -> float:
    """Expected minutes: two forward passes over the calibration tokens, the Grams, the per-layer solves."""
    tokens = n_seq * seqlen
    forward = 2 * 2 * shape.params * tokens
    grams = 2 * tokens * shape.layers * (3 * shape.hidden ** 2 + shape.intermediate ** 2)
    h, i = shape.hidden, shape.intermediate
    qp2 = 4 * h ** 3 + 2 * i * h ** 2 + h * i ** 2  # Σ q·p² over a block's linears (attention, FFN)
    key = cost_key(method, config)
    per_block = (i ** 3 if key in CUBIC_METHODS else i ** 2) * 7 * _iterations(key, config)
    per_block += SWEEPS.get(method, 0) * qp2  # on top of the factorisation of a GPTQ/RTN start
    solves = shape.layers * per_block
    return _seconds(forward + grams + solves, gpu, threads) / 60 + 2 * _load_min(shape)


def compress_runtime_min(shape: Shape, n_seq: int, seqlen: int, method: str = "gptq", gpu: bool = True,
                         threads: int = 1, attempt: int = 1, config: Any = None) -> int:
    """The runtime a compress job requests (minutes); ``config`` refines iterative methods. Capped at
    the partition limit: a solve killed there resumes from its last finished block on the retry
    (reprise.llm.driver.checkpoint), so a longer request would only stop it from being scheduled."""
    return min(_request(compress_expected_min(shape, n_seq, seqlen, method, gpu, threads, config), attempt),
               CLUSTER_MAX_RUNTIME_MIN)


def eval_expected_min(shape: Shape, n_tokens: int, gpu: bool = True, threads: int = 1) -> float:
    return _seconds(2 * shape.params * n_tokens, gpu, threads) / 60 + _load_min(shape)


def eval_runtime_min(shape: Shape, n_tokens: int, gpu: bool = True, threads: int = 1, attempt: int = 1) -> int:
    """The runtime an evaluation job requests (minutes)."""
    return _request(eval_expected_min(shape, n_tokens, gpu, threads), attempt)


def speed_mem_mb(shape: Shape, seqlen: int, batch: int = 1, attempt: int = 1) -> int:
    """A speed job holds two models (the run's and the dense one) and one batch's logits."""
    one = eval_mem_mb(shape, seqlen, batch, attempt)
    return int(one + math.ceil(shape.weight_bytes / 2**20 * 1.3 * _retry(attempt)))


def speed_runtime_min(shape: Shape, seqlen: int, batch: int, passes: int, gpu: bool = True, threads: int = 1,
                      attempt: int = 1) -> int:
    """``passes`` timed forwards of each of the two models (warm-up included), plus two loads."""
    return _request(2 * eval_expected_min(shape, passes * batch * seqlen, gpu, threads), attempt)


# Vision channel-pruning jobs (reprise.vision): expected minutes on a GPU / per CPU thread and host
# memory. digits-resnet trains and prunes in seconds; ImageNet models evaluate 50,000 images per
# pruned model (4 methods x 3 sparsities + dense) and solve up to 4608-wide conv Grams.
VISION_COST = {"digits-resnet": (1, 2, 3000), "resnet50": (180, 6000, 24000), "mobilenet_v2": (90, 2400, 16000)}


def vision_runtime_min(model: str, gpu: bool = True, threads: int = 1, attempt: int = 1) -> int:
    gpu_min, cpu_min, _ = VISION_COST.get(model, VISION_COST["resnet50"])
    return _request(gpu_min if gpu else cpu_min / max(threads, 1), attempt)


def vision_mem_mb(model: str, attempt: int = 1) -> int:
    return int(math.ceil(VISION_COST.get(model, VISION_COST["resnet50"])[2] * _retry(attempt)))


def layer_study_mem_mb(shape: Shape, attempt: int = 1) -> int:
    """A single-layer study: the layer's weight and Gram (at most the FFN width) and a few factors of them."""
    total = 10 * shape.intermediate ** 2 * 4
    return int(math.ceil((total / 2**20 * 1.3 + OVERHEAD_MB) * _retry(attempt)))


def layer_study_runtime_min(shape: Shape, kind: str, n_methods: int, n_settings: int, gpu: bool = True,
                            threads: int = 1, attempt: int = 1) -> int:
    """A single-layer study on a hidden x hidden linear (the papers' k_proj): per solve up to 300 ADMM
    iterations of two p²·m GEMMs, and for the refit studies one exact restricted solve per output row
    (m·p³/3)."""
    h = shape.hidden
    per_solve = 600 * h ** 3 + (h ** 4 / 3 if kind in ("support_refit", "refit_time") else 0)
    solves = max(n_methods, 1) * max(n_settings, 1) * (3 if kind == "refit_time" else 1)
    return _request(_seconds(solves * per_solve, gpu, threads) / 60, attempt)


ZEROSHOT_TOKENS = 1_000_000  # order of a zero-shot task's scored tokens (thousands of items x ~100 tokens)


def eval_tokens(eval_cfg: Mapping[str, Any]) -> int:
    """Tokens a perplexity job scores: the capped window count, else the papers' largest set
    (256 lab C4 windows), times the sequence length."""
    return int((eval_cfg.get("max_windows") or 256) * eval_cfg["seqlen"])


def wants_gpu(config: Mapping[str, Any]) -> bool:
    """Smoke runs on the CPU; other scales ask for a GPU unless the driver is pinned to the CPU."""
    return config.get("scale") != "smoke" and config.get("driver", {}).get("device", "auto") != "cpu"
