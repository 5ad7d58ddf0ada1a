"""Layer studies end to end on a synthetic layer file: the registered solvers, the raw quantities
each row is derived from, and the properties the paper's tables rest on."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from reprise.io import ReproError
from reprise.llm.experiments import load_layer, run_layer_study
from reprise.papers import load_manifest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def studies():
    return load_manifest(ROOT / "config" / "papers" / "alps.yaml").layer_studies


@pytest.fixture(scope="module")
def layer(tmp_path_factory):
    g = torch.Generator().manual_seed(0)
    p, m, n = 32, 16, 400
    mix = torch.eye(p) + 0.5 * torch.randn(p, p, generator=g) / p ** 0.5
    X = (torch.randn(n, p, generator=g) @ mix + 0.3) * torch.exp(0.4 * torch.randn(p, generator=g))
    rec = {"W": torch.randn(m, p, generator=g), "G": X.T @ X / n, "x_mean": X.mean(0), "n_tokens": n,
           "block": 0, "layer": "self_attn.k_proj", "role": "attn"}
    path = tmp_path_factory.mktemp("layers") / "b0.self_attn.k_proj_s0.pt"
    torch.save(rec, path)
    return path


def _table(rows):
    return {(r["row"], r["column"]): r for r in rows}


def test_support_refit_errors_come_from_the_objective_and_never_exceed_the_method_own(studies, layer):
    out = run_layer_study(studies["table1_support"], layer, device="cpu")
    rows = out["rows"]
    assert {r["row"] for r in rows} == {"MP", "Wanda", "DSnoT", "SparseGPT", "ALPS"}
    for r in rows:
        assert math.isclose(r["value"], math.sqrt(r["objective"] / r["ref_energy"]), rel_tol=1e-9)
        # the exact least-squares weights on a support are at least as good as the method's own weights
        assert r["objective"] <= r["own_objective"] * (1 + 1e-6) + 1e-12
    t = _table(rows)  # the error grows with sparsity for every support
    assert all(t[(lab, "0.4")]["value"] <= t[(lab, "0.9")]["value"] for lab in ("MP", "Wanda", "ALPS"))


def test_refit_time_pcg_sits_between_no_refit_and_the_exact_backsolve(studies, layer):
    t = _table(run_layer_study(studies["table1_refit"], layer, device="cpu")["rows"])
    for col in ("0.4", "0.6", "0.8"):
        none, pcg, exact = (t[(lab, col)]["objective"] for lab in ("no refit", "PCG refit", "exact backsolve"))
        assert exact <= pcg * (1 + 1e-6) and pcg <= none * (1 + 1e-6)


def test_rho_schedule_and_convergence_traces(studies, layer):
    rows = run_layer_study(studies["table5_rho"], layer, device="cpu")["rows"]
    iters = {r["row"]: r["value"] for r in rows if r["column"] == "iterations"}
    assert set(iters) == {"ALPS (adaptive ρ)", "ADMM, fixed ρ = 0.3", "ADMM, fixed ρ = 3"}
    assert all(1 <= v <= 300 for v in iters.values())
    shown = [r for r in rows if r["column"].startswith("iter ")]
    assert all(r["value"] is None or 0 <= r["value"] <= 200 for r in shown)  # percent of the kept weights
    traces = run_layer_study(studies["admm_convergence"], layer, device="cpu")["traces"]
    assert [label for label, _ in traces] == list(iters)
    for _label, trace in traces:
        assert [r[0] for r in trace] == list(range(1, len(trace) + 1))


def test_a_layer_file_for_another_layer_is_refused(studies, layer, tmp_path):
    rec = torch.load(layer, weights_only=True)
    rec["layer"] = "mlp.down_proj"
    other = tmp_path / "other.pt"
    torch.save(rec, other)
    with pytest.raises(ReproError, match="needs block 0 self_attn.k_proj"):
        run_layer_study(studies["table1_support"], other, device="cpu")
    with pytest.raises(ReproError, match="layer_gram rule"):
        load_layer(tmp_path / "missing.pt")
