# Tables: one named rule per manifest table (e.g. `snakemake baselines_quant`), writing CSV,
# Markdown and LaTeX under results/papers/<paper>/.

for _paper, _manifest in MANIFESTS.items():
    for _table in _manifest.tables:

        rule:
            name:
                f"{_paper}_{_table}"
            input:
                target_inputs(_paper, _table),
            output:
                report(f"results/papers/{_paper}/{_table}.csv", category=_paper, subcategory="tables"),
                f"results/papers/{_paper}/{_table}.md",
                f"results/papers/{_paper}/{_table}.tex",
            params:
                paper=_paper,
                target=_table,
                manifest=f"{config['registries']['manifests']}/{_paper}.yaml",
                scale=SCALE,
            localrule: True
            threads: 1
            resources:
                mem_mb=light_mem,
                runtime=light_runtime,
            log:
                f"logs/papers/{_paper}/{_table}.log",
            conda:
                "../../envs/papers.yaml"
            script:
                "../scripts/render_table.py"
