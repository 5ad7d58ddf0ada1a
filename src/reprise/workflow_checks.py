"""Semantic checks of the workflow config, run at workflow start before any job.

The JSON schema (config/schema.yaml) catches unknown keys and wrong types; this catches
references that only the registries can resolve: model keys, datasets, test sets, methods.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from reprise.io import ReproError


def check_config(config: Mapping[str, Any], models: Mapping, datasets: Mapping, manifests: Mapping) -> None:
    from reprise.llm.data import TEST_SETS
    from reprise.llm.methods import REGISTRY
    from reprise.papers import DENSE

    problems = []
    cal = config["calibration"]
    if cal["dataset"] not in datasets:
        problems.append(f"calibration.dataset {cal['dataset']!r} is not in {config['registries']['datasets']} "
                        f"(known: {sorted(datasets)})")
    for ts in config["eval"]["testsets"]:
        if ts not in TEST_SETS:
            problems.append(f"eval.testsets: {ts!r} is not a known test set (known: {sorted(TEST_SETS)})")
        elif TEST_SETS[ts]["dataset"] not in datasets:
            problems.append(f"eval.testsets: {ts!r} needs dataset {TEST_SETS[ts]['dataset']!r}, missing from the registry")
    for paper, pcfg in config["papers"].items():
        if paper not in manifests:
            problems.append(f"papers.{paper}: no manifest config/papers/{paper}.yaml")
        own_cal = pcfg.get("calibration") or {}
        if "dataset" in own_cal and own_cal["dataset"] not in datasets:
            problems.append(f"papers.{paper}.calibration.dataset {own_cal['dataset']!r} is not in "
                            f"{config['registries']['datasets']} (known: {sorted(datasets)})")
        for ts in pcfg.get("testsets") or []:
            if ts not in TEST_SETS:
                problems.append(f"papers.{paper}.testsets: {ts!r} is not a known test set (known: {sorted(TEST_SETS)})")
            elif TEST_SETS[ts]["dataset"] not in datasets:
                problems.append(f"papers.{paper}.testsets: {ts!r} needs dataset {TEST_SETS[ts]['dataset']!r}, "
                                "missing from the registry")
        manifest = manifests.get(paper)
        if manifest is not None and (manifest.tables or manifest.figures) and not pcfg.get("models"):
            problems.append(f"papers.{paper}.models: the paper has tables or figures of model runs; list the model keys")
        for m in pcfg.get("models") or []:
            if m not in models:
                problems.append(f"papers.{paper}.models: {m!r} is not in {config['registries']['models']} "
                                f"(known: {sorted(models)})")
    for paper, manifest in manifests.items():
        rows = [r for t in [*manifest.tables.values(), *manifest.figures.values()] for r in t.rows]
        # a baseline shown only with its published numbers (a skipped row) needs no implementation
        shown_only = {r.method for r in rows if r.skip} - {r.method for r in rows if not r.skip}
        for (method, _setting) in manifest.settings:
            if method != DENSE and method not in REGISTRY and method not in shown_only:
                problems.append(f"config/papers/{paper}.yaml: method {method!r} is not registered "
                                f"(known: {sorted(REGISTRY)})")
        for sid, study in manifest.layer_studies.items():
            needed = set(study.methods) | {"alps"} if study.kind in ("rho_schedule", "admm_convergence") else set(study.methods)
            needed |= {study.support, "backsolve"} if study.kind == "refit_time" else set()
            for method in sorted(needed - set(REGISTRY)):
                problems.append(f"config/papers/{paper}.yaml: layer_studies.{sid} uses method {method!r}, which is not "
                                f"registered (known: {sorted(REGISTRY)})")
        for eid, spec in manifest.experiments.items():
            package = spec.kind.split(".", 1)[0]
            if not _has_experiments(package):
                problems.append(f"config/papers/{paper}.yaml: experiments.{eid} runs {spec.kind!r}, but "
                                f"reprise.{package}.experiments does not exist")
    if problems:
        raise ReproError("configuration errors:\n  - " + "\n  - ".join(problems))


def _has_experiments(package: str) -> bool:
    """Whether ``reprise.<package>.experiments`` exists, found on disk: ``find_spec`` of a submodule
    imports its package, and the packages pull in sklearn or numba, seconds per snakemake call."""
    import reprise

    return any((Path(loc) / package / "experiments.py").is_file() or (Path(loc) / package / "experiments").is_dir()
               for loc in reprise.__path__)
