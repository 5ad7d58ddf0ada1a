"""The conda environments of the rules must pin what the hashed lock pins."""
from __future__ import annotations

import re

import yaml

from conftest import REPO


def _lock() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements" / "lock.txt").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+)==([^\s\\]+)", line)
        if m:
            pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    return pins


def test_papers_env_pins_equal_the_lock():
    lock = _lock()
    env = yaml.safe_load((REPO / "envs" / "papers.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    for req in pip:
        name, version = req.split("==")
        assert lock[name.lower()] == version, name


def test_llm_env_installs_the_lock_itself():
    env = yaml.safe_load((REPO / "envs" / "llm.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "-r ../requirements/lock.txt" in pip and "--require-hashes" in pip
    assert (REPO / "envs" / "../requirements/lock.txt").resolve().is_file()


def test_lock_holds_the_design_pins():
    lock = _lock()
    for name, version in {"torch": "2.13.0", "transformers": "5.23.0", "datasets": "5.2.0", "lm-eval": "0.4.13",
                          "accelerate": "1.15.0", "gguf": "0.19.0", "snakemake": "9.27.1",
                          "snakemake-executor-plugin-slurm": "2.8.0",
                          "snakemake-executor-plugin-slurm-jobstep": "0.6.1"}.items():
        assert lock[name].split("+")[0] == version, name
