"""Registry of the sparse-learning papers' experiments: one function per table or figure.

An experiment is a plain function ``fn(params: dict, seed: int) -> pandas.DataFrame`` registered
under ``"<package>.<name>"`` (``@experiment("graphs.tab1")``) in ``reprise.<package>.experiments``.
It validates ``params`` (a ReproError naming the key and the fix), uses only its own
``numpy.random.default_rng(seed)``-style generators, and returns tidy rows: one row per
(method, setting, replicate or point), one column per measured quantity. The workflow runs it as
one job per (paper, experiment, seed) with the params of the manifest's scale and writes the rows
as CSV; the papers package renders them (tables, line figures) and compares them with the
manifest's published and logged values.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping

from reprise.io import ReproError

ExperimentFn = Callable[[Mapping[str, Any], int], Any]
EXPERIMENTS: dict[str, ExperimentFn] = {}
#: packages whose ``experiments`` module registers experiments (imported on first lookup)
PACKAGES = ("graphs", "mtl", "nmf", "sam")


def experiment(name: str) -> Callable[[ExperimentFn], ExperimentFn]:
    """Register ``fn`` as experiment ``name`` (``<package>.<id>``)."""
    if "." not in name or name.split(".", 1)[0] not in PACKAGES:
        raise ReproError(f"experiment name {name!r} must be <package>.<id> with package in {', '.join(PACKAGES)}")

    def register(fn: ExperimentFn) -> ExperimentFn:
        if name in EXPERIMENTS and EXPERIMENTS[name] is not fn:
            raise ReproError(f"experiment {name!r} is registered twice")
        EXPERIMENTS[name] = fn
        return fn

    return register


def get_experiment(name: str) -> ExperimentFn:
    """The registered function of ``name``, importing its package's experiments module."""
    package = name.split(".", 1)[0]
    if package not in PACKAGES:
        raise ReproError(f"experiment {name!r}: unknown package {package!r}; known: {', '.join(PACKAGES)}")
    if name not in EXPERIMENTS:
        try:
            importlib.import_module(f"reprise.{package}.experiments")
        except ModuleNotFoundError as exc:
            if exc.name == f"reprise.{package}.experiments" or exc.name == f"reprise.{package}":
                raise ReproError(f"experiment {name!r}: reprise.{package}.experiments does not exist yet") from None
            raise
    if name not in EXPERIMENTS:
        known = sorted(k for k in EXPERIMENTS if k.startswith(f"{package}."))
        raise ReproError(f"experiment {name!r} is not registered; {package} has {', '.join(known) or 'none'}")
    return EXPERIMENTS[name]


def run_experiment(name: str, params: Mapping[str, Any], seed: int):
    """Run experiment ``name`` and check that it returned a non-empty DataFrame."""
    import pandas as pd

    frame = get_experiment(name)(dict(params), int(seed))
    if not isinstance(frame, pd.DataFrame) or frame.empty:
        raise ReproError(f"experiment {name!r} returned {type(frame).__name__}, not a non-empty DataFrame")
    return frame


def run_job(name: str, params: Mapping[str, Any], seed: int, out_csv, provenance_json, threads: int = 1) -> None:
    """One workflow job: run experiment ``name`` and write its rows (CSV) and provenance (JSON),
    each atomically, the CSV last (its presence marks the job finished)."""
    import os
    import time
    from pathlib import Path

    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = str(int(threads))  # before numpy/torch/numba load their thread pools
    from reprise.io import atomic_path, write_json
    from reprise.provenance import provenance

    t0 = time.perf_counter()
    frame = run_experiment(name, params, seed)
    seconds = time.perf_counter() - t0
    write_json(Path(provenance_json), provenance(stage="experiment", experiment=name, params=dict(params),
                                                  seed=int(seed), rows=len(frame), seconds=round(seconds, 3),
                                                  threads=int(threads)))
    with atomic_path(Path(out_csv), suffix=".csv") as tmp:
        frame.to_csv(tmp, index=False)
