# Skinny Trees' real data (specs/other-papers.md §1.6): the 14 sets of reprise.trees.datasets.DATASETS
# (PMLB, OpenML, NIPS-2003 from the UCI archive, ASU scikit-feature), downloaded at full scale only by
# `snakemake skinny_fetch_<name>` on a connected machine (the full-scale tab2/fig5 jobs list these
# files as manifest `inputs`, so `snakemake all` at full scale pulls them in; never at smoke). One table
# gives the rules' outputs and the loaders' inputs. The URLs and their [U] assumptions are in the
# module docstring of reprise.trees.datasets. The sha256 of each download is written to fetch.json
# beside it; pin them under params.sha256 ({file name: digest}) once known and later downloads are checked.
from reprise.trees.datasets import DATA_ROOT, DATASETS as SKINNY_DATASETS

SKINNY_PINS = {}  # dataset -> {file name: sha256}, filled after the first verified downloads

for _src in SKINNY_DATASETS.values():

    rule:
        name:
            _src.rule
        output:
            files=[f"{DATA_ROOT}/{_f}" for _f in _src.files],
            record=f"{DATA_ROOT}/{_src.record}",
        params:
            name=_src.name,
            root=DATA_ROOT,
            sha256=SKINNY_PINS.get(_src.name, {}),
        log:
            f"logs/data/{_src.rule}.log",
        localrule: True
        threads: 1
        resources:
            mem_mb=light_mem,
            runtime=lambda wc, attempt: 60 * attempt,
        conda:
            "../../envs/llm.yaml"
        script:
            "../scripts/fetch_skinny.py"
