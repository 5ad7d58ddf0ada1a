"""Planning: which cells each target needs at a scale, their metrics and method configs."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from reprise.io import ReproError
from reprise.papers import (DENSE, load_manifest, manifest_from_data, method_config, plan, required_metrics,
                            sparsity_setting, targets, unique_runs)

ROOT = Path(__file__).resolve().parents[2]
BASELINES = ROOT / "config" / "papers" / "baselines.yaml"
FULL_MODELS = ["opt-125m", "opt-350m", "opt-1.3b", "opt-2.7b", "opt-6.7b", "opt-13b", "llama-2-7b"]


def smoke_cfg(**paper):
    return {"scale": "smoke", "seeds": [0], "eval": {"seqlen": 256, "testsets": ["enwiki-gensim"], "zeroshot_tasks": []},
            "papers": {"baselines": {"models": ["smollm2-135m"], **paper}}}


def full_cfg():
    return {"scale": "full", "seeds": [0, 1, 2], "eval": {"seqlen": 2048, "testsets": ["wikitext2", "ptb", "c4"]},
            "papers": {"baselines": {"models": FULL_MODELS}}}


@pytest.fixture(scope="module")
def m():
    return load_manifest(BASELINES)


def expected_cells(m, cfg, grid):
    """The cells a reader of the manifest expects, built from its tables and figures."""
    out = set()
    for model in cfg["papers"]["baselines"]["models"]:
        for tid, table in m.tables.items():
            out |= {(tid, model, r.method, r.setting) for r in table.rows if not r.skip}
        for fid, fig in m.figures.items():
            out |= {(fid, model, meth, sparsity_setting(s)) for meth in fig.methods for s in grid}
            out.add((fid, model, DENSE, DENSE))
    return out


def test_smoke_plan_matches_manifest(m):
    cfg = smoke_cfg(sparsities=[0.5, 0.7])
    cells = plan(m, cfg)
    assert len(cells) == len(set(cells))
    assert {(c.target, c.model, c.method, c.setting) for c in cells} == expected_cells(m, cfg, [0.5, 0.7])
    assert {c.seed for c in cells} == {0} and {c.paper for c in cells} == {"baselines"}
    # the figure's 0.5 point and the table's 50% row are one run
    runs = unique_runs(cells)
    assert ("smollm2-135m", "wanda", "sp50", 0) in runs
    assert len(runs) == len({(c.model, c.method, c.setting, c.seed) for c in cells})
    for model, method, setting, _ in runs:
        method_config(m, method, setting)  # every run resolves to a solver config


def test_smoke_plan_without_thinning_uses_the_full_grid(m):
    cells = plan(m, smoke_cfg())
    grid = m.figures["ppl_vs_sparsity"].sparsities
    assert {(c.target, c.model, c.method, c.setting) for c in cells} == expected_cells(m, smoke_cfg(), grid)
    assert method_config(m, "sparsegpt", "sp80") == {"sparsity": 0.8}


def test_full_plan_has_all_models_and_seeds(m):
    cells = plan(m, full_cfg())
    assert {c.model for c in cells} == set(FULL_MODELS)
    assert len(cells) == len(set(cells))
    for c in cells:
        expected = {0} if c.method in m.seed_independent else {0, 1, 2}
        assert c.seed in expected
    seeds_of = {}
    for c in cells:
        seeds_of.setdefault((c.model, c.method, c.setting), set()).add(c.seed)
    assert seeds_of[("opt-13b", "gptq", "w3")] == {0, 1, 2}
    assert seeds_of[("opt-13b", DENSE, DENSE)] == {0}
    assert seeds_of[("opt-13b", "magnitude", "sp50")] == {0}


def test_plan_single_target(m):
    cells = plan(m, smoke_cfg(), target="quant")
    assert {c.target for c in cells} == {"quant"}
    assert len(cells) == len(m.tables["quant"].rows)


def test_off_grid_thinning_is_an_error(m):
    with pytest.raises(ReproError, match=r"papers\.baselines\.sparsities.*0\.55"):
        plan(m, smoke_cfg(sparsities=[0.55]))


def test_missing_paper_in_scale_config(m):
    cfg = smoke_cfg()
    del cfg["papers"]["baselines"]
    with pytest.raises(ReproError, match=r"papers\.baselines"):
        plan(m, cfg)


def test_required_metrics(m):
    assert required_metrics(m, "quant", full_cfg()) == ["wikitext2_ppl@2048", "ptb_ppl@2048", "c4_ppl@2048"]
    assert required_metrics(m, "ppl_vs_sparsity", full_cfg()) == ["wikitext2_ppl@2048"]
    assert required_metrics(m, "prune", smoke_cfg()) == ["enwiki-gensim_ppl@256"]
    with pytest.raises(ReproError, match="no table or figure"):
        required_metrics(m, "table9", full_cfg())


def test_required_metrics_with_zeroshot():
    data = yaml.safe_load(BASELINES.read_text())
    data["tables"]["quant"]["metrics"] = {"perplexity": True, "zeroshot": True}
    m = manifest_from_data(data, BASELINES)
    cfg = smoke_cfg()
    cfg["eval"]["zeroshot_tasks"] = ["enwiki-cloze", "piqa/acc_norm"]
    assert required_metrics(m, "quant", cfg) == ["enwiki-gensim_ppl@256", "enwiki-cloze/acc", "piqa/acc_norm"]
    cfg["eval"]["zeroshot_tasks"] = []
    assert required_metrics(m, "quant", cfg) == ["enwiki-gensim_ppl@256"]


def test_targets(m):
    assert targets(m) == [*m.tables, *m.figures]
    assert "ppl_vs_sparsity" in targets(m) and "quant" in targets(m)


def test_method_config_across_manifests(m, tmp_path):
    data = yaml.safe_load(BASELINES.read_text())
    same = manifest_from_data(copy.deepcopy(data), tmp_path / "other.yaml")
    assert method_config([m, same], "gptq", "w4") == m.config("gptq", "w4")
    data["settings"]["gptq"]["w4"]["act_order"] = True
    clash = manifest_from_data(data, tmp_path / "quantease.yaml")
    with pytest.raises(ReproError) as exc:
        method_config([m, clash], "gptq", "w4")
    assert "baselines.yaml" in str(exc.value) and "quantease.yaml" in str(exc.value)
    with pytest.raises(ReproError, match="settings.alps.sp70"):
        method_config([m], "alps", "sp70")


def test_skipped_rows_are_not_planned():
    data = yaml.safe_load(BASELINES.read_text())
    data["tables"]["quant"]["rows"][1]["skip"] = "not implemented yet"
    m = manifest_from_data(data, BASELINES)
    cells = plan(m, smoke_cfg(), target="quant")
    assert ("rtn", "w4") not in {(c.method, c.setting) for c in cells}
