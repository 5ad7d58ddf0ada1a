"""config/papers/msam.yaml: its one job experiment validates its params at every scale, every view and check
names columns sam.msam_grid really returns, and smoke stays at two jobs (the time budget)."""
from __future__ import annotations

from pathlib import Path

import pytest

from reprise.experiments import params as validate
from reprise.papers import load_manifest
from reprise.papers.experiment_study import experiment_jobs, experiment_params, experiment_seeds
from reprise.sam.msam import COLUMNS, NAME, SPEC, _check

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = load_manifest(ROOT / "config" / "papers" / "msam.yaml")
CFG = {s: {"scale": s, "seeds": [0, 1, 2], "papers": {"msam": {}}} for s in ("smoke", "full")}


@pytest.mark.parametrize("scale", ["smoke", "full"])
def test_params_validate_at_every_scale(scale):
    for eid, spec in MANIFEST.experiments.items():
        assert spec.kind == NAME
        P = validate(NAME, experiment_params(MANIFEST, eid, CFG[scale]), SPEC)
        _check(P)
        assert 1 in P["shards"] and 4 in P["shards"] and P["vanilla"]  # tab1's SGD / SAM / mSAM(m = 4)
        assert experiment_seeds(MANIFEST, eid, CFG[scale])
    if scale == "full":
        job = MANIFEST.experiments["tab1"]
        assert job.gpus_at("full") == 1 and job.gpus_at("smoke") == 0
        assert job.inputs_at("full") == ("data/raw/cifar/cifar-10-python.tar.gz",) and not job.inputs_at("smoke")
        assert P["data_dir"] == "data/raw/cifar" and P["device"] == "auto"


def test_views_and_checks_name_real_columns():
    for eid, spec in MANIFEST.experiments.items():
        plot = [v for k, v in spec.plot.items() if k in ("x", "y", "series", "facet")]
        for col in [*spec.index, *spec.values, *spec.where, *( [spec.final] if spec.final else []), *plot]:
            assert col in COLUMNS, (eid, col)
        assert {"num_shards", "shard_size"} <= set(spec.index), eid  # §4.2's convention warning
    for c in MANIFEST.checks:
        assert c.metric in COLUMNS and set(c.where) <= set(COLUMNS)
        assert tuple(c.scales) == ("full",)  # smoke: reported, never compared


def test_smoke_is_two_jobs():
    jobs = experiment_jobs(MANIFEST, CFG["smoke"])
    assert [(j.experiment, j.seed, j.part) for j in jobs] == [("tab1", 0, None), ("tab1", 1, None)]
