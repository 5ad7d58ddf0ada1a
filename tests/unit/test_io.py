"""Atomic writes: nothing partial survives a failure, and finished files follow the umask."""
from __future__ import annotations

import os
import stat

import pytest

from reprise.io import ReproError, atomic_dir, atomic_path, load_yaml, read_json, write_json


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


def test_load_yaml_parses_every_config_as_the_safe_loader_does_and_stays_safe():
    import yaml

    from conftest import REPO

    files = sorted((REPO / "config").rglob("*.yaml"))
    assert len(files) > 10
    for path in files:  # the C parser, when present, gives the same data as the pure-Python one
        assert load_yaml(path.read_text()) == yaml.safe_load(path.read_text()), path
    with pytest.raises(yaml.YAMLError):  # no arbitrary objects from a config file
        load_yaml("x: !!python/object/apply:os.system ['true']")


def test_experiment_packages_are_found_without_importing_them():
    import subprocess
    import sys

    code = ("import sys; from reprise.workflow_checks import _has_experiments; "
            "assert _has_experiments('nmf') and _has_experiments('graphs') and not _has_experiments('no_such'); "
            "heavy = [m for m in ('sklearn', 'numba', 'torch') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"  # the DAG's config check imports none of them
