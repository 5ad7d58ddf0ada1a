"""The sparse-learning papers' manifests (graphl0, smtl, saa, samstat): every experiment resolves
to a registered function, their views name columns the functions really return, and the smoke
scale runs them with one job per experiment and seed."""
from __future__ import annotations

from pathlib import Path

import pytest

from reprise.experiments import get_experiment
from reprise.papers import load_manifest
from reprise.papers.experiment_study import experiment_jobs, experiment_params, runs_at, experiment_seeds

ROOT = Path(__file__).resolve().parents[2]
PAPERS = ("graphl0", "smtl", "saa", "samstat", "skinny", "msam", "sparta")
SMOKE = {"scale": "smoke", "seeds": [0], "papers": {p: {} for p in PAPERS}}
FULL = {"scale": "full", "seeds": [0, 1, 2], "papers": {p: {} for p in PAPERS}}


@pytest.mark.parametrize("paper", PAPERS)
def test_experiments_resolve_and_have_params_at_every_scale(paper):
    m = load_manifest(ROOT / "config" / "papers" / f"{paper}.yaml")
    assert m.experiments and not m.tables  # experiment papers: no model runs
    for eid, spec in m.experiments.items():
        assert callable(get_experiment(spec.kind)), eid
        assert runs_at(m, eid, FULL), eid  # every experiment runs at full; smoke may leave real data out
        for cfg in (SMOKE, FULL):
            if not runs_at(m, eid, cfg):
                continue
            assert isinstance(experiment_params(m, eid, cfg), dict)
            assert experiment_seeds(m, eid, cfg)
        for col in [*spec.index, *spec.values, *spec.where]:
            assert isinstance(col, str) and col
    jobs = experiment_jobs(m, SMOKE)
    assert len(jobs) == len({j.stem for j in jobs})  # one job per (experiment, seed, part)
    assert all(not m.experiments[j.experiment].rows_from for j in jobs)


def test_checks_name_their_experiment_and_source():
    m = load_manifest(ROOT / "config" / "papers" / "graphl0.yaml")
    check = next(c for c in m.checks if c.id == "heuristic-p20")
    assert check.at_most and check.value == 1.0 and check.source == "graphl0-code"
    assert 20 in experiment_params(m, check.experiment, SMOKE)["p"]  # the smoke grid has the checked point


def test_samstat_cifar_figure_runs_at_full_only_on_a_gpu_with_the_fetched_archive(tmp_path):
    from reprise.experiments import get_experiment
    from reprise.io import ReproError

    m = load_manifest(ROOT / "config" / "papers" / "samstat.yaml")
    spec = m.experiments["fig5_cifar"]
    assert not runs_at(m, "fig5_cifar", SMOKE) and runs_at(m, "fig5_cifar", FULL)
    assert spec.gpus_at("full") == 1 and spec.inputs_at("full") == ("data/raw/cifar/cifar-10-python.tar.gz",)
    params = {**experiment_params(m, "fig5_cifar", FULL), "data_dir": str(tmp_path)}
    assert params["shards"] == [1]  # SGD against SAM only (one micro-batch)
    with pytest.raises(ReproError, match="snakemake fetch_cifar10"):
        get_experiment(spec.kind)(params, 0)
