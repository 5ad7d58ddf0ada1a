"""Fetch a registered dataset into ``data/raw/<dataset-key>/`` and read it back.

The raw directory holds one ``<split>.jsonl`` per split (one ``{"text": ...}`` per document or
line, source order kept) and ``manifest.json`` (source, revision, sha256 and document count of
each file). It is written atomically: a failed fetch leaves nothing behind.
"""
from __future__ import annotations

import contextlib
import gzip
import json
import os
from pathlib import Path
from typing import Any, Iterator, Mapping

from reprise.io import ReproError, atomic_dir, read_json, write_json

from .registry import DatasetEntry, dataset_key, get_entry
from .wiki import holdout_split, read_wiki_articles

from reprise.provenance import sha256_file  # noqa: E402  (one implementation, re-exported)

MANIFEST = "manifest.json"
_TRUE = {"1", "ON", "YES", "TRUE"}


def hub_offline() -> bool:
    """Whether the environment asks for offline mode (read now, not at import time)."""
    return any(os.environ.get(v, "").upper() in _TRUE
               for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"))


@contextlib.contextmanager
def _offline_mode(offline: bool) -> Iterator[None]:
    """huggingface_hub and datasets read the offline flags at import; honour a later setting."""
    if not offline:
        yield
        return
    import datasets.config as dcfg
    import huggingface_hub.constants as hcst

    saved = (hcst.HF_HUB_OFFLINE, dcfg.HF_HUB_OFFLINE, dcfg.HF_DATASETS_OFFLINE)
    hcst.HF_HUB_OFFLINE = dcfg.HF_HUB_OFFLINE = dcfg.HF_DATASETS_OFFLINE = True
    try:
        yield
    finally:
        hcst.HF_HUB_OFFLINE, dcfg.HF_HUB_OFFLINE, dcfg.HF_DATASETS_OFFLINE = saved


def _local_hint(entry: DatasetEntry) -> str:
    splits = ", ".join(f"{s}: /path/to/{s}.jsonl" for s in entry.splits)
    return (f"download it on a machine with hub access and declare it as a local source in the "
            f"dataset registry, e.g. `{entry.name}-local: {{kind: local-file, format: jsonl, "
            f"field: {entry.text_field}, files: {{{splits}}}}}`")


def _load_hub(entry: DatasetEntry) -> dict[str, list[str]]:
    import datasets

    opts = entry.options
    where = f"{opts['path']}@{opts['revision']}"
    offline = hub_offline()
    out = {}
    with _offline_mode(offline):
        for split in entry.splits:
            try:
                ds = datasets.load_dataset(opts["path"], opts.get("config"), revision=str(opts["revision"]),
                                           data_files=opts.get("data_files"), split=split)
            except Exception as exc:  # noqa: BLE001 - every hub failure becomes one clear message
                why = ("offline mode is on (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE) and the data is not in "
                       "the local datasets cache" if offline else "the hub could not serve it")
                raise ReproError(f"dataset {entry.name!r}: cannot load {where} split {split!r}: {why} "
                                 f"[{type(exc).__name__}: {exc}]; {_local_hint(entry)}") from exc
            if entry.text_field not in ds.column_names:
                raise ReproError(f"dataset {entry.name!r}: split {split!r} of {where} has no column "
                                 f"{entry.text_field!r} (columns: {', '.join(ds.column_names)})")
            out[split] = ["" if t is None else str(t) for t in ds[entry.text_field]]
    return out


def _read_local(path: Path, fmt: str, text_field: str, name: str) -> list[str]:
    if not path.is_file():
        raise ReproError(f"dataset {name!r}: file {path} not found")
    if fmt == "parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        if text_field not in table.column_names:
            raise ReproError(f"dataset {name!r}: {path} has no column {text_field!r}")
        return ["" if t is None else str(t) for t in table.column(text_field).to_pylist()]
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        lines = fh.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the file is not an extra document
    if fmt == "text":
        return lines
    docs = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            docs.append(str(json.loads(line)[text_field]))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ReproError(f"dataset {name!r}: {path} line {i} is not a JSON object with "
                             f"field {text_field!r}") from exc
    return docs


def _guess_format(path: Path) -> str:
    suffixes = "".join(path.suffixes)
    if ".json" in suffixes:
        return "jsonl"
    return "parquet" if path.suffix == ".parquet" else "text"


def _local_sources(entry: DatasetEntry) -> dict[str, Path]:
    files = entry.get("files") or {"all": entry.get("file")}
    return {split: entry.resolve(p) for split, p in files.items()}


def _load_local(entry: DatasetEntry, sources: Mapping[str, Path]) -> dict[str, list[str]]:
    if entry.kind == "wiki-xml":
        docs = [text for _, text in read_wiki_articles(sources["all"])]
        return holdout_split(docs, entry.get("holdout_every", 10))
    loaded = {s: _read_local(p, entry.get("format") or _guess_format(p), entry.text_field, entry.name)
              for s, p in sources.items()}
    if "all" in loaded and not entry.get("files"):
        return holdout_split(loaded["all"], entry.get("holdout_every"))
    return loaded


def _check_pins(entry: DatasetEntry, kind: str, actual: Mapping[str, str]) -> None:
    pinned = entry.get(kind) or {}
    for split, want in pinned.items():
        got = actual.get(split)
        if got is not None and got != want:
            raise ReproError(f"dataset {entry.name!r}: {kind} of {split!r} is {got}, but the registry "
                             f"pins {want}; the source changed (update the pin only after checking it)")


def fetch_raw(name: str, registry: Mapping[str, DatasetEntry], out_dir: str | os.PathLike) -> dict[str, Any]:
    """Write ``out_dir/<split>.jsonl`` and ``out_dir/manifest.json`` atomically; return the manifest."""
    entry = get_entry(name, registry)
    with atomic_dir(out_dir) as tmp:
        source: dict[str, Any] = {"kind": entry.kind}
        if entry.kind == "hub":
            source.update({k: entry.get(k) for k in ("path", "config", "data_files") if entry.get(k)})
            docs = _load_hub(entry)
        else:
            files = _local_sources(entry)
            hashes = {s: sha256_file(p) for s, p in files.items() if p.is_file()}
            _check_pins(entry, "source_sha256", hashes)
            source.update({"files": {s: str(p) for s, p in files.items()}, "sha256": hashes})
            if entry.get("package"):
                from importlib.metadata import PackageNotFoundError, version

                with contextlib.suppress(PackageNotFoundError):
                    source["package"] = f"{entry.get('package')}=={version(entry.get('package'))}"
            if entry.get("holdout_every"):
                source["holdout_every"] = entry.get("holdout_every")
            docs = _load_local(entry, files)
        splits = {}
        for split, texts in docs.items():
            path = tmp / f"{split}.jsonl"
            with open(path, "w", encoding="utf-8") as fh:
                for text in texts:
                    fh.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
            splits[split] = {"file": path.name, "sha256": sha256_file(path), "n_docs": len(texts),
                             "n_chars": sum(map(len, texts))}
        _check_pins(entry, "sha256", {s: v["sha256"] for s, v in splits.items()})
        manifest = {
            "dataset": name, "key": dataset_key(name, registry), "source": source,
            "revision": entry.get("revision") if entry.kind == "hub" else None,
            "pinned": entry.is_pinned, "revision_note": entry.get("revision_note"),
            "substitute_for": entry.get("substitute_for"), "splits": splits,
        }
        write_json(tmp / MANIFEST, manifest)
    return manifest


def read_manifest(raw_dir: str | os.PathLike) -> dict[str, Any]:
    return read_json(Path(raw_dir) / MANIFEST)


def read_split(raw_dir: str | os.PathLike, split: str, verify: bool = True) -> tuple[list[str], str]:
    """Documents of one split, in source order, and the sha256 of their file (checked)."""
    raw_dir = Path(raw_dir)
    manifest = read_manifest(raw_dir)
    if split not in manifest["splits"]:
        raise ReproError(f"{raw_dir}: no split {split!r} (have {', '.join(manifest['splits'])})")
    info = manifest["splits"][split]
    path = raw_dir / info["file"]
    digest = sha256_file(path)
    if verify and digest != info["sha256"]:
        raise ReproError(f"{path}: sha256 {digest} differs from {MANIFEST} ({info['sha256']}); "
                         "the file was modified: delete the directory and fetch again")
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line)["text"] for line in fh], digest
