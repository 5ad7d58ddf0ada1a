"""The `reprise` command: planning, targets and early errors (no heavy work)."""
from __future__ import annotations

import pytest

from conftest import REPO
from reprise.cli import main, plan_rows, plan_totals, _load_config


def test_plan_full_counts_jobs_and_costs(monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    rows = [r for r in plan_rows(_load_config("full")) if r["paper"] == "baselines"]
    by_model = {r["model"]: r for r in rows}
    assert {"opt-125m", "opt-13b", "llama-2-7b"} <= set(by_model)
    # cost grows with model size; every model runs the same grid
    assert by_model["opt-13b"]["gpu_hours_est"] > by_model["opt-1.3b"]["gpu_hours_est"] > by_model["opt-125m"]["gpu_hours_est"]
    assert len({r["compress_jobs"] for r in rows}) == 1 and rows[0]["compress_jobs"] > 0
    assert main(["plan", "--scale", "full"]) == 0
    assert "GPU-hours" in capsys.readouterr().out


def test_plan_subtotals_per_paper_and_counts_shared_runs_once(monkeypatch, tmp_path, capsys):
    """Two papers that need the same runs: each subtotal counts them, the total counts them once."""
    import shutil

    import yaml

    monkeypatch.chdir(REPO)
    shutil.copytree(REPO / "config", tmp_path / "config")
    man = tmp_path / "config" / "papers"
    (man / "twin.yaml").write_text((man / "baselines.yaml").read_text().replace("paper: baselines", "paper: twin"))
    cfg_file = tmp_path / "config" / "config.yaml"
    cfg = yaml.safe_load(cfg_file.read_text())
    cfg["registries"] = {k: str(tmp_path / v) for k, v in cfg["registries"].items()}
    cfg_file.write_text(yaml.safe_dump(cfg))
    full_file = tmp_path / "config" / "scales" / "full.yaml"
    full = yaml.safe_load(full_file.read_text())
    full["papers"]["twin"] = dict(full["papers"]["baselines"])
    full_file.write_text(yaml.safe_dump(full))
    papers, total = plan_totals(_load_config("full", str(cfg_file)))
    assert {"baselines", "twin"} <= set(papers) and papers["baselines"] == papers["twin"]
    # the twin adds nothing new: the total is that of the other papers alone
    _, without_twin = plan_totals({**_load_config("full", str(cfg_file)),
                                   "papers": {k: v for k, v in _load_config("full", str(cfg_file))["papers"].items()
                                              if k != "twin"}})
    assert total == without_twin and total["compress_jobs"] > 0
    assert total["compress_jobs"] < sum(p["compress_jobs"] for p in papers.values())
    assert main(["plan", "--scale", "full", "--config", str(cfg_file)]) == 0
    out = capsys.readouterr().out
    assert "paper baselines:" in out and "paper twin:" in out and "counted once" in out


def test_targets_lists_named_rules(monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    assert main(["targets"]) == 0
    out = capsys.readouterr().out
    for name in ("baselines_quant", "baselines_prune", "baselines_ppl_vs_sparsity", "quantease_readme",
                 "quantease_lambada_opt", "quantease_layer_error", "results/papers/quantease/cost.csv"):
        assert name in out


@pytest.mark.parametrize("argv, message", [
    (["compress", "--model", "smollm2-135m", "--method", "nope", "--out", "x"], "unknown method"),
    (["compress", "--model", "smollm2-135m", "--method", "gptq", "--bits", "9", "--out", "x"], "bits"),
    (["compress", "--model", "smollm2-135m", "--method", "wanda", "--nm", "4:2", "--out", "x"], "4:2"),
    (["compress", "--model", "no/such-dir/", "--method", "rtn", "--out", "x"], "unknown model"),
])
def test_compress_refuses_bad_input_before_loading(monkeypatch, tmp_path, capsys, argv, message):
    monkeypatch.chdir(REPO)
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (REPO / "x").exists()
