"""Resource formulas: monotone in model size and sequence length, larger on every retry."""
from __future__ import annotations

import pytest

from conftest import REPO
from reprise.llm.models import load_model_registry
from reprise.resources import (Shape, compress_mem_mb, compress_runtime_min, eval_mem_mb, eval_runtime_min,
                               wants_gpu)

REG = load_model_registry(REPO / "config" / "models.yaml")
OPT = ["opt-125m", "opt-350m", "opt-1.3b", "opt-2.7b", "opt-6.7b", "opt-13b"]


@pytest.mark.parametrize("formula", [
    lambda s, a: compress_mem_mb(s, 128, 2048, "gptq", a),
    lambda s, a: compress_runtime_min(s, 128, 2048, "gptq", True, 1, a),
    lambda s, a: eval_mem_mb(s, 2048, 1, a),
    lambda s, a: eval_runtime_min(s, 256 * 2048, True, 1, a),
])
def test_monotone_in_model_size_and_retry(formula):
    shapes = [Shape.of(REG[k]) for k in OPT]
    values = [formula(s, 1) for s in shapes]
    assert values == sorted(values) and values[0] < values[-1]
    for s in shapes:
        assert formula(s, 1) < formula(s, 2) < formula(s, 3)


def test_monotone_in_sequence_length_and_calibration_size():
    s = Shape.of(REG["opt-1.3b"])
    assert compress_mem_mb(s, 128, 512) < compress_mem_mb(s, 128, 2048) < compress_mem_mb(s, 256, 2048)
    assert compress_runtime_min(s, 128, 512) < compress_runtime_min(s, 128, 2048)
    assert eval_mem_mb(s, 512) < eval_mem_mb(s, 2048)


def test_cubic_solvers_ask_for_more_than_rounding():
    s = Shape.of(REG["opt-13b"])
    assert compress_runtime_min(s, 128, 2048, "gptq") > compress_runtime_min(s, 128, 2048, "rtn")
    assert compress_mem_mb(s, 128, 2048, "gptq") > compress_mem_mb(s, 128, 2048, "rtn")


def test_memory_covers_the_weights():
    for key in OPT + ["llama-2-7b"]:
        s = Shape.of(REG[key])
        assert compress_mem_mb(s, 128, 2048) * 2**20 > s.weight_bytes


def test_tiny_models_fall_back_to_their_config():
    s = Shape.of(REG["tiny-llama"])
    assert (s.hidden, s.intermediate, s.layers) == (64, 128, 2)


def test_smoke_asks_for_cpu_only():
    assert not wants_gpu({"scale": "smoke", "driver": {"device": "auto"}})
    assert wants_gpu({"scale": "full", "driver": {"device": "auto"}})
    assert not wants_gpu({"scale": "full", "driver": {"device": "cpu"}})


def test_sweep_methods_cost_more_than_their_gptq_start_but_scale_with_sweeps_not_cubes():
    s = Shape.of(REG["opt-13b"])
    gptq = compress_runtime_min(s, 128, 2048, "gptq")
    qe = compress_runtime_min(s, 128, 2048, "quantease")
    assert gptq < qe < compress_runtime_min(s, 128, 2048, "alps")
    assert compress_mem_mb(s, 128, 2048, "quantease") == compress_mem_mb(s, 128, 2048, "gptq")


def test_long_solves_ask_at_most_the_partition_limit_and_the_plan_counts_their_config():
    """HASSLE-free with ALPS inside on Llama-3-8B is expected to run most of a day: its request is
    capped at the 48-hour partition limit (the solve resumes from its last block on the retry),
    while the plan's estimate keeps the full expectation, refined by the run's config."""
    from reprise.cli import _load_config, plan_jobs
    from reprise.resources import CLUSTER_MAX_RUNTIME_MIN, compress_expected_min

    s = Shape.of(REG["llama-3-8b-fp32"])
    cfg = {"sparse_solver": "alps"}
    expected = compress_expected_min(s, 128, 2048, "hassle-free", True, 1, cfg)
    assert 3 * expected + 10 > CLUSTER_MAX_RUNTIME_MIN  # uncapped, the request would exceed it
    assert compress_runtime_min(s, 128, 2048, "hassle-free", True, 1, 1, cfg) == CLUSTER_MAX_RUNTIME_MIN
    assert compress_runtime_min(s, 128, 2048, "hassle-free", True, 1, 1) < CLUSTER_MAX_RUNTIME_MIN
    full = _load_config("full", str(REPO / "config" / "config.yaml"))
    full["papers"] = {"hassle-free": full["papers"]["hassle-free"]}
    jobs = {j["job"]: j["minutes"] for j in plan_jobs(full) if j["kind"] == "compress"}
    alps_inside = [m for (model, method, setting, _seed, _k), m in jobs.items()
                   if model == "llama-3-8b-fp32" and setting.startswith("alps-")]
    plain = [m for (model, method, setting, _seed, _k), m in jobs.items()
             if model == "llama-3-8b-fp32" and method == "hassle-free" and not setting.startswith("alps-")]
    assert alps_inside and plain and min(alps_inside) > 10 * max(plain)
