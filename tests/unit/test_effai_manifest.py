"""The effai manifest: one smoke job rendered three times, every target labelled a method replication,
and its public-model tables planning only runs the OSSCAR and QuantEase papers already plan at smoke."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from reprise.effai.experiments import COLUMNS
from reprise.experiments import get_experiment
from reprise.papers import load_manifest
from reprise.papers.experiment_study import experiment_jobs, experiment_params, experiment_seeds
from reprise.io import ReproError
from reprise.papers.plan import method_config, plan, run_blocks, run_metrics

ROOT = Path(__file__).resolve().parents[2]
PAPERS = ROOT / "config" / "papers"
SMOKE = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())  # the smoke scale, effai's entry included
FULL = {**SMOKE, "scale": "full"}


def _manifests():
    return {p: load_manifest(PAPERS / f"{p}.yaml") for p in ("effai", "osscar", "quantease")}


def test_one_smoke_job_renders_the_three_substitute_tables():
    m = _manifests()["effai"]
    jobs = experiment_jobs(m, SMOKE)
    assert jobs == [("sub_kd", "effai.sub_kd", 0, None)]
    for eid, spec in m.experiments.items():
        assert callable(get_experiment(spec.kind))
        assert experiment_seeds(m, eid, SMOKE) == [0]
        assert isinstance(experiment_params(m, eid, FULL), dict)
        assert set([*spec.index, *spec.values, *spec.where]) <= set(COLUMNS), eid
    assert {m.experiments[e].rows_from for e in ("sub_prune", "sub_quant")} == {"sub_kd"}


def test_every_target_is_labelled_a_method_replication():
    m = _manifests()["effai"]
    captions = [t.caption for t in m.tables.values()] + [e.caption for e in m.experiments.values()]
    assert captions and all("Method replication" in c and "not the paper's numbers" in c for c in captions)
    assert not m.checks and not m.claims  # nothing is compared with the paper


def test_public_tables_share_the_osscar_and_quantease_runs_at_smoke():
    ms = _manifests()
    mine = run_metrics(ms["effai"], SMOKE)
    theirs: dict = {}
    for p in ("osscar", "quantease"):
        for run, metrics in run_metrics(ms[p], SMOKE).items():
            theirs.setdefault(run, set()).update(metrics)
    assert mine and all(run in theirs and set(metrics) <= theirs[run] for run, metrics in mine.items())
    for method, setting in ms["effai"].settings:  # same name, same config: the run directory is shared
        method_config(list(ms.values()), method, setting)
    slices = run_blocks(ms.values(), SMOKE)  # one block slice per shared run (raises otherwise)
    # each public-model table has rows at smoke and takes its runs' slice: pruning every block, quantization
    # driver.blocks
    prune = {c.run for c in plan(ms["effai"], SMOKE, "pub_prune") if c.run[1] != "dense"}
    quant = {c.run for c in plan(ms["effai"], SMOKE, "pub_quant") if c.run[1] != "dense"}
    assert prune and quant and {slices[r] for r in prune} == {None} and {str(slices[r]) for r in quant} == {str(SMOKE["driver"]["blocks"])}
    # a table that took another slice than the runs' owners would be an error naming both
    clash = {**SMOKE, "papers": {**SMOKE["papers"], "effai": {**SMOKE["papers"]["effai"], "blocks": "all"}}}
    with pytest.raises(ReproError, match="effai_pub_quant .* quantease_"):
        run_blocks(ms.values(), clash)
