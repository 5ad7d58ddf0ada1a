# Per paper: what its jobs cost (cost.csv, cost_jobs.csv, cost.png) and the reproduction report,
# every published cell beside the regenerated one, with a verdict and the cost summary.


rule paper_cost:
    input:
        lambda wc: cost_inputs(wc.paper),
    output:
        report("results/papers/{paper}/cost.csv", category="{paper}", subcategory="cost"),
        "results/papers/{paper}/cost_jobs.csv",
        report("results/papers/{paper}/cost.png", category="{paper}", subcategory="cost"),
    params:
        manifest=lambda wc: f"{config['registries']['manifests']}/{wc.paper}.yaml",
    log:
        "logs/papers/{paper}/cost.log",
    localrule: True
    threads: 1
    resources:
        mem_mb=light_mem,
        runtime=light_runtime,
    conda:
        "../../envs/papers.yaml"
    script:
        "../scripts/render_cost.py"


def _paper_inputs(wc):
    files = set()
    for target in targets(MANIFESTS[wc.paper]):
        files.update(target_inputs(wc.paper, target))
    for j in experiment_jobs(MANIFESTS[wc.paper], config):  # the checks read their rows
        files.add(str(j.rows_file("runs", wc.paper)))
    return sorted(files)


rule paper_report:
    input:
        runs=_paper_inputs,
        cost="results/papers/{paper}/cost.csv",
    output:
        report("results/papers/{paper}/report.md", category="{paper}", subcategory="report"),
    params:
        manifest=lambda wc: f"{config['registries']['manifests']}/{wc.paper}.yaml",
        scale=SCALE,
    log:
        "logs/papers/{paper}/report.log",
    localrule: True
    threads: 1
    resources:
        mem_mb=light_mem,
        runtime=light_runtime,
    conda:
        "../../envs/papers.yaml"
    script:
        "../scripts/render_report.py"
