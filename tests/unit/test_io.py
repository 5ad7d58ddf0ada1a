"""Atomic writes: nothing partial survives a failure, and finished files follow the umask."""
from __future__ import annotations

import os
import stat

import pytest

from reprise.io import ReproError, atomic_dir, atomic_path, read_json, write_json


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "out.txt") as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError):
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "f").write_text("x")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_finished_outputs_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {"x": 1.0, "bad": float("nan")})
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "f").write_text("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755
    assert read_json(tmp_path / "a.json") == {"x": 1.0, "bad": None}  # strict JSON: no NaN


def test_missing_file_names_the_rule_to_run(tmp_path):
    with pytest.raises(ReproError, match="snakemake"):
        read_json(tmp_path / "nope.json")


def test_download_streams_checks_and_leaves_nothing_on_failure(tmp_path):
    import hashlib

    from reprise.io import download, file_digest

    src = tmp_path / "src.bin"
    blob = bytes(range(256)) * 5000  # more than one 1 MiB block
    src.write_bytes(blob)
    want = {"md5": hashlib.md5(blob).hexdigest(), "sha256": hashlib.sha256(blob).hexdigest()}
    target = tmp_path / "out" / "data.bin"
    with pytest.raises(ReproError, match="sha256 mismatch.*not kept"):
        download(src.as_uri(), target, expect={"sha256": "0" * 64}, what="fetch_x")
    assert not target.exists() and not list(target.parent.iterdir())
    assert download(src.as_uri(), target, expect={"md5": want["md5"].upper()}) == want
    assert target.read_bytes() == blob and file_digest(target, "md5") == want["md5"]
    with pytest.raises(ReproError, match=r"fetch_x: could not download .*; run snakemake fetch_x"):
        download((tmp_path / "gone").as_uri(), tmp_path / "other.bin", what="fetch_x", hint="run snakemake fetch_x")
    assert not (tmp_path / "other.bin").exists()
