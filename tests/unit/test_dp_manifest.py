"""config/papers/sparta.yaml against reprise.dp.experiments: the views and checks name real columns, smoke is one
job, and the full-scale job indices are exactly the launch grid without WRN-28-10 plus the ablation runs."""
from __future__ import annotations

from pathlib import Path

from reprise.dp.experiments import COLUMNS, _spec, run_list
from reprise.experiments import get_experiment, params
from reprise.papers import load_manifest
from reprise.papers.experiment_study import experiment_jobs, experiment_params, experiment_seeds

ROOT = Path(__file__).resolve().parents[2]
SMOKE = {"scale": "smoke", "seeds": [0], "papers": {"sparta": {}}}
FULL = {"scale": "full", "seeds": [0, 1, 2], "papers": {"sparta": {}}}


def test_manifest_views_and_checks_use_real_columns():
    m = load_manifest(ROOT / "config" / "papers" / "sparta.yaml")
    for eid, spec in m.experiments.items():
        assert callable(get_experiment(spec.kind))
        assert set([*spec.index, *spec.values, *spec.where]) <= set(COLUMNS), eid
    for c in m.checks:
        assert c.metric in COLUMNS and set(c.where) <= set(COLUMNS)
    assert len(experiment_jobs(m, SMOKE)) == 1  # one smoke job; the other targets render its rows


def test_full_scale_indices_are_the_launch_grid_without_wrn():
    m = load_manifest(ROOT / "config" / "papers" / "sparta.yaml")
    p = params("dp.sparta", experiment_params(m, "tab_main", FULL), _spec())
    runs = run_list(p)
    seeds = experiment_seeds(m, "tab_main", FULL)
    assert sorted(seeds) == [i for i, r in enumerate(runs) if r["model"] != "wrn_28_10_gn"]
    main = [runs[i] for i in seeds if runs[i]["study"] == "main"]
    assert len(main) == 6 * 3 * 3 * 2 * 4  # methods x seeds x epsilons x datasets x the four released models
    assert {r["method"] for r in main} == {"all_layers", "lp_gn", "dp_bitfit", "mp_weights", "sparta", "lora"}
    assert m.experiments["tab_main"].gpus_at("full") == 1
