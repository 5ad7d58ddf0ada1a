"""Atomic file output and small JSON helpers shared by every stage.

A job that dies must leave no output that looks finished, so every writer goes through
``atomic_path``: write to a temporary sibling, then rename over the target.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator


class ReproError(Exception):
    """A user-facing error: the message names the key or file at fault and the fix."""


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` on success.

    On any exception the temporary file (or directory) is removed and ``target`` is untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix or ".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600 files; results are shared
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def file_digest(path: str | os.PathLike, algorithm: str = "sha256", chunk: int = 1 << 20) -> str:
    """The hex digest of a file's bytes (``hashlib`` algorithm name), read in chunks."""
    import hashlib

    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def download(url: str, target: str | os.PathLike, *, expect: dict[str, str] | None = None,
             timeout: float | None = 120.0, what: str = "download", hint: str = "") -> dict[str, str]:
    """Stream ``url`` (http(s) or file) to ``target`` atomically and return the ``md5`` and ``sha256``
    of its bytes. ``expect`` maps algorithm -> digest to check before the file is kept. A failed
    download or a mismatch raises ReproError (``what``: the caller's name; ``hint``: the fix) and
    leaves nothing at ``target``. The one downloader of the dataset fetchers (PMLB, OSF, CIFAR)."""
    import hashlib
    import urllib.error
    import urllib.request

    digests = {"md5": hashlib.md5(), "sha256": hashlib.sha256()}
    with atomic_path(target, suffix=".part") as tmp:
        try:
            with urllib.request.urlopen(url, timeout=timeout or None) as resp, open(tmp, "wb") as out:  # noqa: S310
                for block in iter(lambda: resp.read(1 << 20), b""):
                    out.write(block)
                    for h in digests.values():
                        h.update(block)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise ReproError(f"{what}: could not download {url} ({exc}){'; ' + hint if hint else ''}") from None
        got = {name: h.hexdigest() for name, h in digests.items()}
        for algorithm, want in (expect or {}).items():
            if got[algorithm] != want.lower():
                raise ReproError(f"{what}: {algorithm} mismatch (checksum mismatch) for {url}: expected {want.lower()}, "
                                 f"got {got[algorithm]}; the download was not kept (check the pinned checksum or the "
                                 f"source)")
    return got


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Like ``atomic_path`` for a directory: fill a temporary directory, then rename it."""
    import shutil

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700 directories
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.asdict(obj)
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")


def _finite_or_none(obj: Any) -> Any:
    """JSON has no NaN/Inf; store them as null (strict parsers reject NaN)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_none(v) for v in obj]
    return obj


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as indented JSON atomically (non-finite floats become null)."""
    text = json.dumps(_finite_or_none(json.loads(json.dumps(data, default=_json_default))), indent=2, sort_keys=True)
    with atomic_path(path, suffix=".json") as tmp:
        tmp.write_text(text + "\n")


def load_yaml(text: str) -> Any:
    """Parse YAML safely, with libyaml's C parser when PyYAML has it (about ten times faster: the
    workflow parses every manifest and registry before it builds the DAG, in each snakemake call)."""
    import yaml

    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise ReproError(f"missing file {path}: run the rule that produces it first (snakemake {path})")
    return json.loads(path.read_text())
