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
