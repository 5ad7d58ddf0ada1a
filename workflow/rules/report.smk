# Reproduction report per paper: every published cell beside the regenerated one, with a verdict.


def _paper_inputs(wc):
    files = set()
    for target in targets(MANIFESTS[wc.paper]):
        files.update(target_inputs(wc.paper, target))
    return sorted(files)


rule paper_report:
    input:
        _paper_inputs,
    output:
        report("results/papers/{paper}/report.md", category="{paper}", subcategory="report"),
    params:
        manifest=lambda wc: f"{config['registries']['manifests']}/{wc.paper}.yaml",
        scale=SCALE,
    log:
        "logs/papers/{paper}/report.log",
    conda:
        "../../envs/papers.yaml"
    script:
        "../scripts/render_report.py"
