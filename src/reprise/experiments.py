"""Registry of the sparse-learning papers' experiments: one function per table or figure.

An experiment is a plain function ``fn(params: dict, seed: int) -> pandas.DataFrame`` registered
under ``"<package>.<name>"`` (``@experiment("graphs.tab1")``) in ``reprise.<package>.experiments``.
It validates ``params`` (with ``params()`` and the checkers at the end of this module:
a ReproError naming the key and the fix), uses only its own
``numpy.random.default_rng(seed)``-style generators, and returns tidy rows: one row per
(method, setting, replicate or point), one column per measured quantity. The workflow runs it as
one job per (paper, experiment, seed) with the params of the manifest's scale and writes the rows
as CSV; the papers package renders them (tables, line figures) and compares them with the
manifest's published and logged values.
"""
from __future__ import annotations

import importlib
import math
import numbers
from typing import Any, Callable, Mapping

from reprise.io import ReproError

ExperimentFn = Callable[[Mapping[str, Any], int], Any]
EXPERIMENTS: dict[str, ExperimentFn] = {}
#: packages whose ``experiments`` module registers experiments (imported on first lookup)
PACKAGES = ("graphs", "mtl", "nmf", "sam", "trees", "dp", "effai")


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


# --------------------------------------------------------------------------- params
# ``params(name, given, spec)`` merges an experiment's ``given`` params into the defaults of ``spec``
# (key -> (default, checker)) and checks every value. A checker is ``check(where, value)``: it
# returns the clean value or raises a ReproError that starts with ``where``, the value's full name
# (``"nmf.tab_synth: params['sigmas'][1]"``), so each message names the experiment, the key, the bad
# value and what to give instead.

Check = Callable[[str, Any], Any]


def reject_unknown(name: str, given: Mapping[str, Any], known) -> None:
    """Raise a ReproError naming ``given``'s keys that are not in ``known``."""
    if not isinstance(given, Mapping):
        raise ReproError(f"{name}: params must be a mapping, got {type(given).__name__}")
    unknown = sorted(set(given) - set(known), key=str)
    if unknown:
        raise ReproError(f"{name}: unknown params {', '.join(map(repr, unknown))}; "
                         f"known: {', '.join(sorted(map(str, known)))}")


def params(name: str, given: Mapping[str, Any], spec: Mapping[str, tuple[Any, Check]]) -> dict[str, Any]:
    """``spec``'s defaults overlaid with ``given``, each value checked; unknown keys are an error."""
    reject_unknown(name, given, spec)
    return {key: check(f"{name}: params[{key!r}]", given.get(key, default)) for key, (default, check) in spec.items()}


def check_seed(name: str, seed: Any) -> int:
    """``seed`` as an int, or a ReproError unless it is an integer ≥ 0."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ReproError(f"{name}: seed={seed!r} must be an integer ≥ 0")
    return int(seed)


def _bound(low, strict: bool, high) -> str:
    parts = ([f"{'>' if strict else '≥'} {low:g}"] if low is not None else []) + \
        ([f"≤ {high:g}"] if high is not None else [])
    return (" " + " and ".join(parts)) if parts else ""


def integer(low: int | None = None, high: int | None = None, whole_floats: bool = False) -> Check:
    """An int (numpy ints too, never a bool) in [low, high]; ``whole_floats`` also takes 3.0 as 3."""
    def check(where, v):
        whole = whole_floats and isinstance(v, float) and v.is_integer()
        if isinstance(v, bool) or not (isinstance(v, numbers.Integral) or whole) \
                or (low is not None and v < low) or (high is not None and v > high):
            span = f" in [{low}, {high}]" if low is not None and high is not None else _bound(low, False, high)
            raise ReproError(f"{where}={v!r} must be an integer{span}")
        return int(v)
    return check


def real(low: float | None = None, strict: bool = False, high: float | None = None) -> Check:
    """A finite number (numpy numbers too, never a bool) ≥ low (> low if ``strict``) and ≤ high, as a float."""
    def check(where, v):
        ok = not isinstance(v, bool) and isinstance(v, numbers.Real) and math.isfinite(v)
        if not ok or (low is not None and (v <= low if strict else v < low)) or (high is not None and v > high):
            raise ReproError(f"{where}={v!r} must be a finite number{_bound(low, strict, high)}")
        return float(v)
    return check


def list_of(item: Check, non_empty: bool = True, scalar: bool = False) -> Check:
    """A list (any non-string iterable) of values that pass ``item``; ``scalar`` also takes one number as [it]."""
    def check(where, v):
        if scalar and isinstance(v, numbers.Real) and not isinstance(v, bool):
            v = [v]
        if isinstance(v, (str, bytes)) or not hasattr(v, "__iter__"):
            raise ReproError(f"{where}={v!r} must be a{' non-empty' if non_empty else ''} list")
        v = list(v)
        if non_empty and not v:
            raise ReproError(f"{where} is empty; give at least one value")
        return [item(f"{where}[{i}]", x) for i, x in enumerate(v)]
    return check


def choice(*options: Any) -> Check:
    """One of ``options``."""
    def check(where, v):
        if v not in options:
            raise ReproError(f"{where}={v!r} is unknown; use one of {', '.join(map(repr, options))}")
        return v
    return check


def boolean(where: str, v: Any) -> bool:
    """true or false (a numpy bool too)."""
    import numpy as np

    if not isinstance(v, (bool, np.bool_)):
        raise ReproError(f"{where}={v!r} must be true or false")
    return bool(v)


def optional(item: Check) -> Check:
    """None, or a value that passes ``item``."""
    def check(where, v):
        return None if v is None else item(where, v)
    return check
