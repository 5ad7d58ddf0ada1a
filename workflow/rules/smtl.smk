# sMTL's own rules: the real data of its Figs 5-8 (specs/other-papers.md §6.5), each OSF project
# downloaded as one zip at full scale only. The loaders (reprise.mtl.real) read the CSVs the official
# scripts read from it (sub_samp2500; breastCancer_data). The full-scale experiments fig5-fig8 list
# these zips as their `inputs`, so `all` at full runs the fetches first; nothing fetches at smoke
# (or run e.g. `snakemake smtl_fetch_fscv` on a connected machine). The sha256 of each download is
# written beside it; pin it under params.sha256 once known and later downloads are checked.
for _name, _fn in (("fscv", "fetch_fscv"), ("breast_cancer", "fetch_breast_cancer")):

    rule:
        name:
            f"smtl_fetch_{_name}"
        output:
            archive=f"data/raw/osf-smtl/{_name}.zip",
            record=f"data/raw/osf-smtl/{_name}.json",
        params:
            fetch=_fn,
            sha256=None,  # pin after the first verified download
        log:
            f"logs/data/smtl_fetch_{_name}.log",
        localrule: True
        threads: 1
        resources:
            mem_mb=light_mem,
            runtime=lambda wc, attempt: 60 * attempt,
        conda:
            "../../envs/llm.yaml"
        script:
            "../scripts/fetch_osf.py"
