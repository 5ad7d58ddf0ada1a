"""Paper manifests: what a paper's tables and figures contain and what the paper published.

A manifest (``config/papers/<paper>.yaml``) is validated against
``config/papers/manifest.schema.yaml`` and then cross-checked (rows name declared settings,
published values name declared tables and rows, ...). Every problem is a ``ReproError`` that
names the file, the key path and the fix.
"""
from __future__ import annotations

import copy
import functools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

import yaml

from reprise.io import ReproError, load_yaml

FORMAT = 1
DENSE = "dense"
SCHEMA_PATH = Path(__file__).resolve().parents[3] / "config" / "papers" / "manifest.schema.yaml"


# --------------------------------------------------------------------------- dataclasses


@dataclass(frozen=True)
class Source:
    id: str
    citation: str
    transcribed: str
    reliability: str
    url: str | None = None
    version: str | None = None


@dataclass(frozen=True)
class Note:
    text: str
    scales: tuple[str, ...] = ()  # empty: every scale

    def applies(self, scale: str) -> bool:
        return not self.scales or scale in self.scales


@dataclass(frozen=True)
class Row:
    method: str
    setting: str
    label: str
    skip: str | None = None  # reason the row is not regenerated
    scales: tuple[str, ...] | None = None  # the scales that run this row (None: every scale)
    stands_in_for: str | None = None  # a paper setting of the same method this row replaces at its scales (claims)

    @property
    def key(self) -> str:
        return f"{self.method}/{self.setting}"


@dataclass(frozen=True)
class Table:
    id: str
    caption: str
    rows: tuple[Row, ...]
    perplexity: bool = True
    zeroshot: bool = False
    zeroshot_metric: str = "acc"
    runtime: bool = False
    models: tuple[str, ...] | None = None  # None: every model of the scale
    notes: tuple[Note, ...] = ()
    wall_time: bool = False  # the compress job's wall seconds, activation generation included
    speed: bool = False  # the speed job's speed-up, FLOP ratio and parameter count (eval.speed)
    tasks: tuple[str, ...] | None = None  # the paper's zero-shot tasks (None: the scale's eval.zeroshot_tasks)
    task_metrics: Mapping[str, str] = field(default_factory=dict)  # per paper task: its metric if not zeroshot_metric
    zeroshot_average: bool = False  # a column with the plain mean of the zero-shot columns


@dataclass(frozen=True)
class Figure:
    id: str
    kind: str
    caption: str
    methods: tuple[str, ...] = ()  # ppl_vs_sparsity: one line per method over `sparsities`
    sparsities: tuple[float, ...] = ()
    dense_reference: bool = True  # ppl_vs_sparsity: the dense model as a dashed line
    models: tuple[str, ...] | None = None
    notes: tuple[Note, ...] = ()
    series: tuple[Row, ...] = ()  # layer_error, zeroshot_vs_size: the runs plotted
    task: str | None = None  # zeroshot_vs_size: the lm-eval task
    zeroshot_metric: str = "acc"

    @property
    def rows(self) -> tuple[Row, ...]:
        """The plotted runs, as table rows (published points of a zero-shot figure name them)."""
        return self.series


LAYER_TABLE_KINDS = ("support_refit", "refit_time", "rho_schedule", "method_error")
LAYER_FIGURE_KINDS = ("admm_convergence",)


@dataclass(frozen=True)
class VisionStudy:
    """One-shot channel pruning of vision models (``vision_studies``): every method at every
    channel sparsity, one job per model; written as a table."""

    id: str
    caption: str
    models: tuple[str, ...]
    methods: tuple[str, ...]
    sparsities: tuple[float, ...]
    notes: tuple[Note, ...] = ()


EXPERIMENT_VIEWS = ("table", "line", "scatter", "image_grid", "heatmap")


@dataclass(frozen=True)
class Experiment:
    """A sparse-learning experiment (``experiments``): the registered function ``kind``
    (``reprise.experiments``) run once per seed with the params of the scale, written as a table
    (rows grouped by ``index``, ``values`` averaged over replicates and seeds) or a figure."""

    id: str
    kind: str
    caption: str
    params: Mapping[str, Mapping[str, Any]]  # scale -> the function's params
    view: str = "table"  # table | line | scatter | image_grid | heatmap
    index: tuple[str, ...] = ()  # table: the grouping columns
    values: tuple[str, ...] = ()  # table: the averaged columns
    plot: Mapping[str, Any] = field(default_factory=dict)  # figures: x, y, series, facet, logx, logy, ...
    runtime_min: Mapping[str, float] = field(default_factory=dict)  # scale -> expected minutes per job
    mem_mb: Mapping[str, int] = field(default_factory=dict)
    seeds: Mapping[str, tuple[int, ...]] | None = None  # scale ("*": any) -> seeds; None: the paper's seeds
    notes: tuple[Note, ...] = ()
    rows_from: str | None = None  # another experiment whose rows this one renders (no job of its own)
    where: Mapping[str, Any] = field(default_factory=dict)  # row filter: column -> value or list of values
    final: str | None = None  # keep only the rows at this column's largest value (e.g. the last iteration)
    gpu: Mapping[str, int] = field(default_factory=dict)  # scale -> GPUs per job (0 or 1; none: CPU)
    # scale -> files the job reads (fetched data); for a split experiment, optionally part -> files
    inputs: Mapping[str, tuple[str, ...] | Mapping[str, tuple[str, ...]]] = field(default_factory=dict)
    split_by: tuple[str, ...] = ()  # list params whose values each get a job of their own (per seed)

    @staticmethod
    def _at(mapping: Mapping[str, Any], scale: str, default: Any) -> Any:
        # mini falls back to full, as the params do (experiment_study.experiment_params)
        for key in (scale, "full") if scale == "mini" else (scale,):
            if key in mapping:
                return mapping[key]
        return default

    def gpus_at(self, scale: str) -> int:
        return int(self._at(self.gpu, scale, 0))

    def inputs_at(self, scale: str, part: str | None = None) -> tuple[str, ...]:
        """The files a job at this scale reads: for a split experiment whose inputs name files per
        part, that part's (``part=None``: every part's)."""
        files = self._at(self.inputs, scale, ())
        if not isinstance(files, Mapping):
            return tuple(files)
        if part is None:
            return tuple(dict.fromkeys(f for fs in files.values() for f in fs))
        if part not in files:
            raise ReproError(f"experiments.{self.id}.inputs.{scale} names no files for part {part!r} (it has "
                             f"{', '.join(files)}); add {part}: [files] or list the files for every part")
        return tuple(files[part])

    def runtime_at(self, scale: str) -> float:
        """Expected minutes per job (10 when the manifest gives none)."""
        return float(self._at(self.runtime_min, scale, 10))

    def mem_at(self, scale: str) -> int:
        return int(self._at(self.mem_mb, scale, 2000))

    @property
    def is_figure(self) -> bool:
        return self.view != "table"

    @property
    def job(self) -> str:
        """The experiment whose jobs produce the rows."""
        return self.rows_from or self.id


@dataclass(frozen=True)
class Check:
    """A logged or published value an experiment's rows are compared with (a verdict in report.md):
    ``metric`` averaged over the rows matching ``where``."""

    id: str
    text: str
    experiment: str
    where: Mapping[str, Any]
    metric: str
    value: float | None
    tolerance: Tolerance | None
    source: str
    scales: tuple[str, ...] = ()  # the scales whose params make the comparison meaningful (none: every scale)
    at_most: bool = False  # the value is an upper bound (pass when ours ≤ value + tolerance)
    at_least: bool = False  # the value is a lower bound (pass when ours ≥ value − tolerance)


@dataclass(frozen=True)
class LayerStudy:
    """A single-layer experiment (one linear's W and input Gram); a table, or a figure for
    ``admm_convergence``."""

    id: str
    kind: str
    caption: str
    models: tuple[str, ...]
    block: int
    layer: str
    methods: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    sparsities: tuple[float, ...] = ()
    patterns: tuple[str, ...] = ()
    support: str = "magnitude"
    fixed_rhos: tuple[float, ...] = ()
    iterations: tuple[int, ...] = ()
    configs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    error: str = "rel_err"
    notes: tuple[Note, ...] = ()

    @property
    def is_figure(self) -> bool:
        return self.kind in LAYER_FIGURE_KINDS

    def label(self, method: str) -> str:
        return self.labels.get(method, method)


@dataclass(frozen=True)
class Claim:
    """A relative claim recomputed from a regenerated table: ``(method − best baseline) / best``."""

    id: str
    text: str
    table: str
    method: str  # "method/setting"
    baselines: tuple[str, ...]
    metrics: tuple[str, ...]
    better: str  # lower | higher
    published: float
    source: str
    model: str | None = None
    gap: bool = False  # compare the gaps to the dense row (dense − x), not the values


@dataclass(frozen=True)
class Tolerance:
    rel: float | None = None
    abs: float | None = None
    note: str | None = None

    def bound(self, published: float) -> float:
        """Largest allowed |ours - published|."""
        return max(self.abs or 0.0, (self.rel or 0.0) * abs(published))

    def describe(self) -> str:
        parts = []
        if self.rel is not None:
            parts.append(f"±{self.rel * 100:g}% rel")
        if self.abs is not None:
            parts.append(f"±{self.abs:g} abs")
        return " or ".join(parts)


@dataclass(frozen=True)
class Published:
    table: str
    model: str
    method: str
    setting: str
    metric: str
    value: float | None  # None: the paper's value is unknown here
    source: str
    tolerance: Tolerance | None
    paper_version: str | None
    note: str | None = None


@dataclass(frozen=True)
class Manifest:
    path: Path
    paper: str
    title: str
    version: str
    description: str | None
    sources: Mapping[str, Source]
    protocol: Mapping[str, str]
    notes: tuple[Note, ...]
    seed_independent: frozenset[str]
    settings: Mapping[tuple[str, str], Mapping[str, Any]]
    tables: Mapping[str, Table]
    figures: Mapping[str, Figure]
    published: tuple[Published, ...] = field(default=())
    layer_studies: Mapping[str, LayerStudy] = field(default_factory=dict)
    vision_studies: Mapping[str, VisionStudy] = field(default_factory=dict)
    claims: tuple[Claim, ...] = ()
    experiments: Mapping[str, Experiment] = field(default_factory=dict)
    checks: tuple[Check, ...] = ()

    def config(self, method: str, setting: str) -> dict[str, Any]:
        """A fresh copy of the method config of (method, setting)."""
        try:
            return copy.deepcopy(dict(self.settings[(method, setting)]))
        except KeyError:
            raise ReproError(
                f"{self.path}: no setting {method}/{setting}; declare it under settings.{method}.{setting}"
            ) from None

    def __post_init__(self) -> None:
        index = {(p.table, p.model, p.method, p.setting, p.metric): p for p in self.published}
        object.__setattr__(self, "_published_index", MappingProxyType(index))

    def scored(self) -> dict[str, Table | Figure]:
        """Targets whose cells get verdicts: every table, and every zero-shot figure."""
        return _scored(self.tables, self.figures)

    def published_for(self, table: str, model: str, method: str, setting: str, metric: str) -> Published | None:
        return self._published_index.get((table, model, method, setting, metric))


def _scored(tables: Mapping[str, Table], figures: Mapping[str, Figure]) -> dict[str, Table | Figure]:
    return {**tables, **{fid: f for fid, f in figures.items() if f.kind == "zeroshot_vs_size"}}


def sparsity_setting(sparsity: float) -> str:
    """Name of the setting of a figure point at ``sparsity`` (0.5 -> ``sp50``)."""
    pct = sparsity * 100
    if abs(pct - round(pct)) > 1e-6:
        return f"sp{pct:g}".replace(".", "p")
    return f"sp{int(round(pct))}"


# --------------------------------------------------------------------------- loading


def _fail(path: Path, keypath: str, problem: str, fix: str) -> ReproError:
    where = f" at {keypath}" if keypath else ""
    return ReproError(f"{path}{where}: {problem}. Fix: {fix}")


def _format_path(parts) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


_BOUNDS = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _schema_error(path: Path, err) -> ReproError:
    keypath = _format_path(err.absolute_path)
    last = err.absolute_path[-1] if err.absolute_path else None
    kind, inst = err.validator, err.instance
    schema_hint = "see config/papers/manifest.schema.yaml for the expected form"
    if kind == "additionalProperties" and err.schema.get("properties"):
        extra = sorted(set(inst) - set(err.schema["properties"]))
        if extra:
            allowed = ", ".join(sorted(err.schema["properties"]))
            return _fail(path, _format_path([*err.absolute_path, extra[0]]), f"unknown key {extra[0]!r}",
                         f"remove it or fix its spelling; allowed keys here: {allowed}")
    if last == "group_size":
        return _fail(path, keypath, f"group_size {inst!r} is invalid", "use -1 (one grid per output row, i.e. per-channel) or a positive integer")
    if kind == "required":
        return _fail(path, keypath or "(top level)", err.message, "add the missing key")
    if kind == "type" and last == "nm" and isinstance(inst, int):
        return _fail(path, keypath, f"{inst!r} is not a string", 'quote N:M patterns in YAML, e.g. nm: "2:4" (unquoted 2:4 reads as 124)')
    if kind in ("type", "oneOf") and isinstance(inst, str) and re.fullmatch(r"[-+]?[0-9.]+[eE][0-9]+", inst):
        return _fail(path, keypath, f"{inst!r} was read as a string", f"write it as {inst.replace('e', 'e+').replace('E', 'E+')} "
                     "(PyYAML reads an exponent without a sign as text) or as a plain number")
    if kind == "type":
        return _fail(path, keypath, f"{_short(inst)} is not of type {err.validator_value}", f"give a value of type {err.validator_value} (numbers unquoted)")
    if kind in _BOUNDS:
        return _fail(path, keypath, f"{inst!r} is out of range", f"use a number {_BOUNDS[kind]} {err.validator_value}")
    if kind == "anyOf" and last == "tolerance" or (kind == "anyOf" and "tolerance" in err.absolute_path):
        return _fail(path, keypath, "a tolerance needs rel and/or abs", "write e.g. {rel: 0.02} or {abs: 0.02}")
    if kind == "oneOf" and isinstance(inst, dict) and {"values", "unknown_for"} & set(inst):
        return _fail(path, keypath, "a published group needs exactly one of values / unknown_for",
                     "keep values (known numbers) or unknown_for (models whose numbers are unknown), not both")
    if kind == "oneOf" and isinstance(inst, str):
        return _fail(path, keypath, f"{_short(inst)} is text", "write a number without quotes, null, or {value: ..., note: ...}")
    if kind == "oneOf":
        return _fail(path, keypath, f"{_short(inst)} is not a valid entry", schema_hint)
    if kind == "const" and list(err.absolute_path) == ["format"]:
        return _fail(path, keypath, f"unsupported manifest format {inst!r}", f"use format: {FORMAT}")
    if kind == "enum":
        return _fail(path, keypath, f"{_short(inst)} is not allowed", f"use one of {err.validator_value}")
    if kind == "pattern":
        return _fail(path, keypath, f"{inst!r} does not match {err.validator_value}", "rename it to match the pattern")
    if kind == "propertyNames":
        return _fail(path, keypath, err.message, "rename the key (lower-case letters, digits, '-', '_')")
    return _fail(path, keypath, err.message if len(err.message) < 200 else err.message[:197] + "...", schema_hint)


def _load_schema(schema_path: Path) -> dict:
    if not schema_path.is_file():
        raise ReproError(f"manifest schema {schema_path} not found; pass schema_path= or restore config/papers/manifest.schema.yaml")
    return _parsed_schema(schema_path.resolve(), schema_path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _parsed_schema(schema_path: Path, mtime_ns: int) -> dict:
    """The schema parsed once per file version: the workflow validates every paper's manifest
    against it in each snakemake call. Callers only read it (jsonschema does not modify it)."""
    return load_yaml(schema_path.read_text())


def validate_manifest_data(data: Any, path: Path, schema_path: Path | None = None) -> None:
    """Schema-validate parsed manifest data; raise on the first error (by key path)."""
    import jsonschema

    schema = _load_schema(Path(schema_path) if schema_path else SCHEMA_PATH)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(data), key=lambda e: (list(map(str, e.absolute_path)), e.validator))
    if errors:
        # the deepest error on the first failing path is the most specific one
        first = list(map(str, errors[0].absolute_path))
        same = [e for e in errors if list(map(str, e.absolute_path))[: len(first)] == first]
        best = jsonschema.exceptions.best_match(same)
        raise _schema_error(path, best)


def _notes(raw) -> tuple[Note, ...]:
    out = []
    for n in raw or ():
        out.append(Note(n) if isinstance(n, str) else Note(n["text"], tuple(n.get("scales", ()))))
    return tuple(out)


def _tolerance(raw) -> Tolerance | None:
    if raw is None:
        return None
    return Tolerance(rel=raw.get("rel"), abs=raw.get("abs"), note=raw.get("note"))


def _build_settings(path: Path, data: dict, figures: dict) -> dict[tuple[str, str], Mapping]:
    settings: dict[tuple[str, str], Mapping] = {}
    for method, per in (data.get("settings") or {}).items():
        for name, cfg in per.items():
            settings[(method, name)] = MappingProxyType(copy.deepcopy(cfg))
    dense = settings.setdefault((DENSE, DENSE), MappingProxyType({}))
    if dense:
        raise _fail(path, "settings.dense.dense", "the dense model takes no config", "make it an empty mapping {}")
    for fid, fig in figures.items():
        for method in fig.get("methods", ()):
            for s in fig.get("sparsities", ()):
                name = sparsity_setting(s)
                cfg = settings.get((method, name))
                if cfg is None:
                    settings[(method, name)] = MappingProxyType({"sparsity": s})
                elif not math.isclose(cfg.get("sparsity", -1.0), s):
                    raise _fail(path, f"settings.{method}.{name}",
                                f"figure {fid} plots it at sparsity {s}, but its config is {dict(cfg)}",
                                f"set sparsity: {s} there, or rename that setting")
    return settings


def _check_refs(path: Path, m: dict, settings, tables: dict) -> None:
    ids = set(m.get("tables", {})) & set(m.get("figures", {}))
    if ids:
        raise _fail(path, f"figures.{sorted(ids)[0]}", "a table and a figure share this id", "rename one of them")
    row_lists = [(f"tables.{tid}.rows", t["rows"]) for tid, t in m.get("tables", {}).items()]
    row_lists += [(f"figures.{fid}.series", f["series"]) for fid, f in (m.get("figures") or {}).items() if "series" in f]
    for where, rows in row_lists:
        seen = set()
        for i, r in enumerate(rows):
            if (r["method"], r["setting"]) not in settings:
                raise _fail(path, f"{where}[{i}].setting", f"unknown setting {r['method']}/{r['setting']}",
                            f"declare it under settings.{r['method']}.{r['setting']} or fix the row")
            if (r["method"], r["setting"]) in seen:
                raise _fail(path, f"{where}[{i}]", f"row {r['method']}/{r['setting']} appears twice", "remove the duplicate")
            seen.add((r["method"], r["setting"]))
    sources = m["sources"]
    for i, g in enumerate(m.get("published", [])):
        base = f"published[{i}]"
        if g["source"] not in sources:
            raise _fail(path, f"{base}.source", f"unknown source {g['source']!r}", f"add it under sources: or use one of {sorted(sources)}")
        if g["table"] not in tables:
            raise _fail(path, f"{base}.table", f"unknown table {g['table']!r}",
                        f"use one of {sorted(tables)} (a table, or a zeroshot_vs_size figure)")
        rows = {r.key for r in tables[g["table"]].rows}
        for model, vals in (g.get("values") or {}).items():
            for key, v in vals.items():
                if key not in rows:
                    raise _fail(path, f"{base}.values.{model}.{key}", f"table {g['table']} has no row (method/setting) {key!r}",
                                f"use one of {sorted(rows)} or add the row to tables.{g['table']}.rows")
                val = v.get("value") if isinstance(v, dict) else v
                has_tol = g.get("tolerance") or (isinstance(v, dict) and v.get("tolerance"))
                if val is not None and not has_tol:
                    raise _fail(path, f"{base}.tolerance", "a published value needs a tolerance",
                                "add tolerance: {rel: 0.02} (and/or abs:) to the group or the value")


def _layer_studies(path: Path, m: dict, taken: set[str]) -> dict[str, LayerStudy]:
    out = {}
    for sid, st in (m.get("layer_studies") or {}).items():
        where = f"layer_studies.{sid}"
        if sid in taken:
            raise _fail(path, where, "a table or figure has this id too", "rename the layer study")
        kind = st["kind"]
        needs = {"support_refit": ("methods", "sparsities"), "method_error": ("methods", "sparsities"),
                 "refit_time": ("sparsities",), "rho_schedule": ("fixed_rhos", "iterations", "sparsities"),
                 "admm_convergence": ("fixed_rhos", "sparsities")}[kind]
        for key in needs:
            if not st.get(key):
                raise _fail(path, f"{where}.{key}", f"a {kind} study needs {key}", f"add {key}: [...]")
        if kind in ("rho_schedule", "admm_convergence") and len(st["sparsities"]) != 1:
            raise _fail(path, f"{where}.sparsities", f"a {kind} study runs at one sparsity", "give exactly one")
        out[sid] = LayerStudy(
            id=sid, kind=kind, caption=st["caption"], models=tuple(st["models"]), block=st["layer"]["block"],
            layer=st["layer"]["name"], methods=tuple(st.get("methods", ())), labels=MappingProxyType(dict(st.get("labels") or {})),
            sparsities=tuple(float(x) for x in st.get("sparsities", ())), patterns=tuple(st.get("patterns", ())),
            support=st.get("support", "magnitude"), fixed_rhos=tuple(float(x) for x in st.get("fixed_rhos", ())),
            iterations=tuple(st.get("iterations", ())),
            configs=MappingProxyType({k: MappingProxyType(copy.deepcopy(v)) for k, v in (st.get("configs") or {}).items()}),
            error=st.get("error", "rel_err"), notes=_notes(st.get("notes")),
        )
    return out


def _vision_studies(path: Path, m: dict, taken: set[str]) -> dict[str, VisionStudy]:
    out = {}
    for sid, st in (m.get("vision_studies") or {}).items():
        if sid in taken:
            raise _fail(path, f"vision_studies.{sid}", "a table, figure or layer study has this id too",
                        "rename the vision study")
        out[sid] = VisionStudy(id=sid, caption=st["caption"], models=tuple(st["models"]), methods=tuple(st["methods"]),
                               sparsities=tuple(float(x) for x in st["sparsities"]), notes=_notes(st.get("notes")))
    return out


def _experiments(path: Path, m: dict, taken: set[str]) -> dict[str, Experiment]:
    out = {}
    for eid, e in (m.get("experiments") or {}).items():
        where = f"experiments.{eid}"
        if eid in taken:
            raise _fail(path, where, "a table, figure or study has this id too", "rename the experiment")
        view = e.get("view", "table")
        if view == "table" and not e.get("values"):
            raise _fail(path, f"{where}.values", "a table view needs the columns to average", "list them under values")
        if view != "table":
            need = {"line": ("x", "y"), "scatter": ("x", "y"), "image_grid": ("image", "pixel", "value", "shape"),
                    "heatmap": ("row", "col", "value")}[view]
            missing = [k for k in need if k not in (e.get("plot") or {})]
            if missing:
                raise _fail(path, f"{where}.plot", f"view {view} needs {', '.join(missing)}", "add them under plot")
        if "params" not in e and not e.get("rows_from"):
            raise _fail(path, f"{where}.params", "an experiment with a job of its own needs params per scale",
                        "add params: {smoke: {...}, full: {...}}")
        raw_params = e.get("params") or (m.get("experiments") or {}).get(e.get("rows_from"), {}).get("params") or {}
        out[eid] = Experiment(
            id=eid, kind=e["kind"], caption=e["caption"],
            params=MappingProxyType({k: MappingProxyType(dict(v)) for k, v in raw_params.items()}), view=view,
            index=tuple(e.get("index", ())), values=tuple(e.get("values", ())),
            plot=MappingProxyType(dict(e.get("plot") or {})),
            runtime_min=MappingProxyType(dict(e.get("runtime_min") or {})),
            mem_mb=MappingProxyType(dict(e.get("mem_mb") or {})),
            seeds=_experiment_seeds(e.get("seeds")), notes=_notes(e.get("notes")),
            rows_from=e.get("rows_from"), where=MappingProxyType(dict(e.get("where") or {})), final=e.get("final"),
            gpu=MappingProxyType({k: int(v) for k, v in (e.get("gpu") or {}).items()}),
            inputs=MappingProxyType({k: (MappingProxyType({p: tuple(f) for p, f in v.items()}) if isinstance(v, dict)
                                         else tuple(v)) for k, v in (e.get("inputs") or {}).items()}),
            split_by=(e["split_by"],) if isinstance(e.get("split_by"), str) else tuple(e.get("split_by") or ()))
        if e.get("rows_from") and (e.get("gpu") or e.get("inputs") or e.get("split_by")):
            raise _fail(path, where, "an experiment with rows_from has no job, so no gpu, inputs or split_by",
                        f"move them to experiments.{e['rows_from']}")
        per_part = [k for k, v in (e.get("inputs") or {}).items() if isinstance(v, dict)]
        if per_part and not e.get("split_by"):
            raise _fail(path, f"{where}.inputs.{per_part[0]}", "files per part need split_by",
                        "give split_by, or list the files")
    for eid, spec in out.items():
        src = out.get(spec.rows_from) if spec.rows_from else spec
        if src is None or src.rows_from:
            raise _fail(path, f"experiments.{eid}.rows_from", f"{spec.rows_from!r} is not an experiment with its own job",
                        f"use one of {sorted(k for k, v in out.items() if not v.rows_from)}")
        if spec.rows_from and (spec.kind != src.kind or dict(spec.params) != dict(src.params)):
            raise _fail(path, f"experiments.{eid}", f"renders {spec.rows_from}'s rows, so kind and params must match it",
                        f"copy kind and params from experiments.{spec.rows_from}")
    return out


def _experiment_seeds(raw) -> Mapping[str, tuple[int, ...]] | None:
    """An experiment's seeds: a list (every scale) or a mapping scale -> list."""
    if raw is None:
        return None
    if isinstance(raw, list):
        return MappingProxyType({"*": tuple(raw)})
    return MappingProxyType({k: tuple(v) for k, v in raw.items()})


def _entries(path: Path, m: dict, key: str, what: str, sources: Mapping[str, Source]):
    """(index, entry, where) of the list ``m[key]`` (claims, checks): ids unique, sources declared."""
    seen = set()
    for i, c in enumerate(m.get(key) or ()):
        where = f"{key}[{i}]"
        if c["id"] in seen:
            raise _fail(path, f"{where}.id", f"{what} id {c['id']!r} appears twice", f"give each {what} its own id")
        seen.add(c["id"])
        if c["source"] not in sources:
            raise _fail(path, f"{where}.source", f"unknown source {c['source']!r}", f"use one of {sorted(sources)}")
        yield i, c, where


def _checks(path: Path, m: dict, experiments: Mapping[str, Experiment], sources: Mapping[str, Source]) -> tuple[Check, ...]:
    out = []
    for i, c, where in _entries(path, m, "checks", "check", sources):
        if c["experiment"] not in experiments:
            raise _fail(path, f"{where}.experiment", f"unknown experiment {c['experiment']!r}",
                        f"use one of {sorted(experiments)}")
        out.append(Check(id=c["id"], text=c["text"], experiment=c["experiment"],
                         where=MappingProxyType(dict(c.get("where") or {})), metric=c["metric"],
                         value=None if c.get("value") is None else float(c["value"]),
                         tolerance=_tolerance(c.get("tolerance")), source=c["source"],
                         scales=tuple(c.get("scales", ())), at_most=bool(c.get("at_most", False)),
                         at_least=bool(c.get("at_least", False))))
        if c.get("at_most") and c.get("at_least"):
            raise _fail(path, where, "a check is either an upper bound (at_most) or a lower bound (at_least)",
                        "keep one of them")
    return tuple(out)


def _row(r: Mapping) -> Row:
    return Row(r["method"], r["setting"], r["label"], r.get("skip"), tuple(r["scales"]) if "scales" in r else None,
               r.get("stands_in_for"))


def _claims(path: Path, m: dict, tables: Mapping[str, Table], sources: Mapping[str, Source]) -> tuple[Claim, ...]:
    out = []
    for i, c, where in _entries(path, m, "claims", "claim", sources):
        if c["table"] not in tables:
            raise _fail(path, f"{where}.table", f"unknown table {c['table']!r}", f"use one of {sorted(tables)}")
        rows = {r.key for r in tables[c["table"]].rows if r.skip is None}
        for key in [c["method"], *c["baselines"]]:
            if key not in rows:
                raise _fail(path, where, f"table {c['table']} has no regenerated row {key!r}",
                            f"use one of {sorted(rows)}")
        if c.get("gap") and f"{DENSE}/{DENSE}" not in rows:
            raise _fail(path, f"{where}.gap", f"table {c['table']} has no regenerated dense row to measure gaps from",
                        "add a {method: dense, setting: dense} row or drop gap")
        out.append(Claim(id=c["id"], text=c["text"], table=c["table"], method=c["method"],
                         baselines=tuple(c["baselines"]), metrics=tuple(c["metrics"]), better=c["better"],
                         published=float(c["published"]), source=c["source"], model=c.get("model"),
                         gap=bool(c.get("gap", False))))
    return tuple(out)


def _expand_published(path: Path, m: dict, sources, tables) -> tuple[Published, ...]:
    out: dict[tuple, Published] = {}
    for i, g in enumerate(m.get("published", [])):
        tol = _tolerance(g.get("tolerance"))
        version = g.get("paper_version") or sources[g["source"]].version
        entries = []
        for model, vals in (g.get("values") or {}).items():
            for key, v in vals.items():
                method, setting = key.split("/", 1)
                if isinstance(v, dict):
                    entries.append((model, method, setting, v.get("value"), _tolerance(v.get("tolerance")) or tol, v.get("note") or g.get("note")))
                else:
                    entries.append((model, method, setting, v, tol, g.get("note")))
        for model in g.get("unknown_for") or ():
            for r in tables[g["table"]].rows:
                entries.append((model, r.method, r.setting, None, tol, g.get("note")))
        for model, method, setting, value, t, note in entries:
            k = (g["table"], model, method, setting, g["metric"])
            if k in out:
                raise _fail(path, f"published[{i}]", f"a second value for {model} {method}/{setting} {g['metric']} in table {g['table']}",
                            "keep one entry per (table, model, method, setting, metric)")
            out[k] = Published(g["table"], model, method, setting, g["metric"],
                               None if value is None else float(value), g["source"], t, version, note)
    return tuple(out.values())


def manifest_from_data(data: Any, path: str | Path = "<memory>", schema_path: str | Path | None = None) -> Manifest:
    """Validate and build a Manifest from already-parsed YAML data."""
    path = Path(path)
    validate_manifest_data(data, path, schema_path)
    m = data
    sources = {k: Source(id=k, **v) for k, v in m["sources"].items()}
    figures_raw = m.get("figures") or {}
    settings = _build_settings(path, m, figures_raw)
    tables = {
        tid: Table(
            id=tid, caption=t["caption"],
            rows=tuple(_row(r) for r in t["rows"]),
            perplexity=t["metrics"].get("perplexity", False), zeroshot=t["metrics"].get("zeroshot", False),
            zeroshot_metric=t["metrics"].get("zeroshot_metric", "acc"), runtime=t["metrics"].get("runtime", False),
            models=tuple(t["models"]) if "models" in t else None, notes=_notes(t.get("notes")),
            wall_time=t["metrics"].get("wall_time", False), speed=t["metrics"].get("speed", False), tasks=tuple(t["tasks"]) if "tasks" in t else None,
            task_metrics=MappingProxyType(dict(t["metrics"].get("task_metrics") or {})),
            zeroshot_average=t["metrics"].get("zeroshot_average", False),
        )
        for tid, t in (m.get("tables") or {}).items()
    }
    figures = {
        fid: Figure(
            id=fid, kind=f["kind"], caption=f["caption"], methods=tuple(f.get("methods", ())),
            sparsities=tuple(sorted(float(s) for s in f.get("sparsities", ()))),
            dense_reference=f.get("dense_reference", True),
            models=tuple(f["models"]) if "models" in f else None, notes=_notes(f.get("notes")),
            series=tuple(_row(r) for r in f.get("series", ())),
            task=f.get("task"), zeroshot_metric=f.get("zeroshot_metric", "acc"),
        )
        for fid, f in figures_raw.items()
    }
    # published values may name a table or a zero-shot figure (its points get verdicts too)
    scored = _scored(tables, figures)
    _check_refs(path, m, settings, scored)
    studies = _layer_studies(path, m, set(tables) | set(figures))
    vision = _vision_studies(path, m, set(tables) | set(figures) | set(studies))
    for tid, t in tables.items():
        unknown = sorted(set(t.task_metrics) - set(t.tasks or ()))
        if unknown:
            raise _fail(path, f"tables.{tid}.metrics.task_metrics", f"names {', '.join(unknown)}, not in the table's tasks",
                        f"use tasks of {list(t.tasks or ())}")
    claims = _claims(path, m, tables, sources)
    experiments = _experiments(path, m, set(tables) | set(figures) | set(studies) | set(vision))
    return Manifest(
        path=path, paper=m["paper"], title=m["title"], version=m["version"], description=m.get("description"),
        sources=MappingProxyType(sources), protocol=MappingProxyType(dict(m.get("protocol") or {})),
        notes=_notes(m.get("notes")), seed_independent=frozenset({DENSE, *m.get("seed_independent", ())}),
        settings=MappingProxyType(settings), tables=MappingProxyType(tables), figures=MappingProxyType(figures),
        published=_expand_published(path, m, sources, scored),
        layer_studies=MappingProxyType(studies), vision_studies=MappingProxyType(vision), claims=claims,
        experiments=MappingProxyType(experiments), checks=_checks(path, m, experiments, sources),
    )


def load_manifest(path: str | Path, schema_path: str | Path | None = None) -> Manifest:
    """Read, validate and build the manifest at ``path``."""
    path = Path(path)
    if not path.is_file():
        raise ReproError(f"manifest {path} not found; paper manifests live in config/papers/<paper>.yaml")
    try:
        data = load_yaml(path.read_text())
    except yaml.YAMLError as exc:
        raise ReproError(f"{path}: not valid YAML ({exc}). Fix the syntax at the position shown") from None
    if not isinstance(data, dict):
        raise ReproError(f"{path}: a manifest must be a mapping at the top level. Fix: see config/papers/baselines.yaml")
    m = manifest_from_data(data, path, schema_path)
    if m.paper != path.stem:
        raise _fail(path, "paper", f"paper id {m.paper!r} differs from the file name", f"set paper: {path.stem} or rename the file")
    return m
