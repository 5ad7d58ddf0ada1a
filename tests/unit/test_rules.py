"""Every rule of the workflow declares what a cluster scheduler needs: threads, memory and runtime
(the job rules from reprise.resources, growing with ``attempt``), and a conda environment that exists."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import REPO

RULES = REPO / "workflow" / "rules"


def _rule_blocks() -> dict[str, str]:
    """{rule name: its text} for every rule in workflow/rules/*.smk (named rules and f-string ones)."""
    out = {}
    for smk in sorted(RULES.glob("*.smk")):
        text = smk.read_text()
        starts = [m for m in re.finditer(r"^(\s*)rule\s*(\w*)\s*:", text, re.M)]
        for i, m in enumerate(starts):
            end = starts[i + 1].start() if i + 1 < len(starts) else len(text)
            body = text[m.end():end]
            # a named rule, an f-string name, or a name from an expression (a loop over a table)
            named = re.search(r"name:\s*\n\s*(?:f?\"([^\"]+)\"|([\w.]+))", body)
            name = m.group(2) or named.group(1) or named.group(2)
            out[f"{smk.name}:{name}"] = body
    return out


BLOCKS = _rule_blocks()


def test_rules_found():
    names = {k.split(":")[1] for k in BLOCKS}
    assert {"compress", "perplexity", "zeroshot", "paper_cost", "paper_report", "fetch_dataset"} <= names


@pytest.mark.parametrize("rule", sorted(BLOCKS))
def test_rule_declares_resources_and_env(rule):
    body = BLOCKS[rule]
    assert re.search(r"^\s*threads:", body, re.M), f"{rule}: no threads"
    assert re.search(r"^\s*mem_mb=", body, re.M), f"{rule}: no mem_mb resource"
    assert re.search(r"^\s*runtime=", body, re.M), f"{rule}: no runtime resource"
    env = re.search(r"conda:\s*\n\s*\"([^\"]+)\"", body)
    assert env, f"{rule}: no conda environment"
    assert (RULES / env.group(1)).resolve().is_file(), f"{rule}: conda env {env.group(1)} does not exist"


@pytest.mark.parametrize("rule", ["compress.smk:compress", "evaluate.smk:perplexity", "evaluate.smk:zeroshot"])
def test_job_rules_size_from_the_work_and_are_benchmarked(rule):
    body = BLOCKS[rule]
    mem = re.search(r"mem_mb=(\w+)", body).group(1)
    runtime = re.search(r"runtime=(\w+)", body).group(1)
    common = (RULES / "common.smk").read_text()
    for fn in (mem, runtime):  # functions of (wildcards, attempt) calling reprise.resources
        assert re.search(rf"def {fn}\(wc, attempt\):", common), fn
    assert re.search(r"gpu=GPU", body) and re.search(r"^\s*benchmark:", body, re.M)
