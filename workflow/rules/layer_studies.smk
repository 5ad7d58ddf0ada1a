# Single-layer experiments (manifest `layer_studies`): the dense model's weight and input Gram of
# one linear, then one named target per study (e.g. `snakemake alps_table1_support`), solving the
# methods on that layer directly. Tables come as CSV, Markdown and LaTeX; admm_convergence as a figure.
from reprise.papers.plan import layer_file, paper_seeds, study_model


rule layer_gram:
    input:
        model=lambda wc: model_dir(wc.model),
        calib=lambda wc: tokens_path(wc.model, calib_spec(wc.seed)),
    output:
        layer="runs/{model}/layers/b{block}.{layer}_s{seed}.pt",
        provenance="runs/{model}/layers/b{block}.{layer}_s{seed}.json",
    wildcard_constraints:
        block=r"\d+",
        layer=r"[A-Za-z0-9_.]+",
    params:
        dtype=lambda wc: MODELS[wc.model].dtype,
        device=config["driver"].get("device", "auto"),
    log:
        "logs/layers/{model}/b{block}.{layer}_s{seed}.log",
    threads: config["threads"]
    resources:
        mem_mb=model_prep_mem,
        runtime=light_runtime,
        gpu=GPU,
    conda:
        "../../envs/llm.yaml"
    script:
        "../scripts/layer_gram.py"


def study_input(paper, study):
    spec = MANIFESTS[paper].layer_studies[study]
    seed = paper_seeds(MANIFESTS[paper], config)[0]
    return str(layer_file("runs", study_model(MANIFESTS[paper], study, config), spec.block, spec.layer, seed))


def study_mem(paper, study):
    def mem(wc, attempt):
        return layer_study_mem_mb(shape(study_model(MANIFESTS[paper], study, config)), attempt)
    return mem


def study_runtime(paper, study):
    def runtime(wc, attempt):
        spec = MANIFESTS[paper].layer_studies[study]
        return layer_study_runtime_min(shape(study_model(MANIFESTS[paper], study, config)), spec.kind,
                                       len(spec.methods) or 1, len(spec.sparsities) + len(spec.patterns),
                                       GPU > 0, THREADS, attempt)
    return runtime


for _paper, _manifest in MANIFESTS.items():
    for _study, _spec in _manifest.layer_studies.items():

        rule:
            name:
                f"{_paper}_{_study}"
            input:
                layer=study_input(_paper, _study),
            output:
                study_files(_paper, _study),
            params:
                paper=_paper,
                target=_study,
                manifest=f"{config['registries']['manifests']}/{_paper}.yaml",
                device=config["driver"].get("device", "auto"),
                scale=SCALE,
            log:
                f"logs/papers/{_paper}/{_study}.log",
            threads: config["threads"]
            resources:
                mem_mb=study_mem(_paper, _study),
                runtime=study_runtime(_paper, _study),
                gpu=GPU,
            conda:
                "../../envs/llm.yaml"
            script:
                "../scripts/layer_study.py"
