# Skinny Trees' real data (specs/other-papers.md §1.6): PMLB datasets downloaded at full scale only,
# `snakemake skinny_fetch_<name>` on a connected machine (the full-scale tab2/fig5 jobs list these
# files as manifest `inputs`, so `snakemake all` at full scale pulls them in; never at smoke). The
# sha256 of each download is written beside it; pin it under params.sha256 once known and later
# downloads are checked.
for _name in ("churn", "satimage", "texture"):

    rule:
        name:
            f"skinny_fetch_{_name}"
        output:
            data=f"data/raw/pmlb/{_name}/{_name}.tsv.gz",
            metadata=f"data/raw/pmlb/{_name}/metadata.yaml",
            record=f"data/raw/pmlb/{_name}/fetch.json",
        params:
            name=_name,
            sha256=None,  # pin after the first verified download
        log:
            f"logs/data/skinny_fetch_{_name}.log",
        localrule: True
        threads: 1
        resources:
            mem_mb=light_mem,
            runtime=lambda wc, attempt: 30 * attempt,
        conda:
            "../../envs/llm.yaml"
        script:
            "../scripts/fetch_skinny.py"
