# Vision studies (manifest `vision_studies`, reprise.vision): one job per model runs every method at
# every channel sparsity (training the digits network first at smoke; ImageNet models need
# vision.imagenet_dir and torchvision's weight files), then one named target renders the table
# (e.g. `snakemake osscar_vision_channels`).
from reprise.papers.plan import vision_file, vision_models

VISION = config.get("vision") or {}


def vision_runtime(wc, attempt):
    return vision_runtime_min(wc.model, GPU > 0, THREADS, attempt)


rule vision_run:
    output:
        rows="runs/vision/{model}/{paper}.{study}_s{seed}.csv",
        layers="runs/vision/{model}/{paper}.{study}_s{seed}_layers.csv",
    wildcard_constraints:
        study=r"[A-Za-z0-9_-]+",
    params:
        spec=lambda wc: MANIFESTS[wc.paper].vision_studies[wc.study],
        imagenet_dir=VISION.get("imagenet_dir"),
        calib_n=VISION.get("calib_n"),
        eval_n=VISION.get("eval_n"),
    log:
        "logs/vision/{model}/{paper}.{study}_s{seed}.log",
    threads: config["threads"]
    resources:
        mem_mb=lambda wc, attempt: vision_mem_mb(wc.model, attempt),
        runtime=vision_runtime,
        gpu=GPU,
    conda:
        "../../envs/llm.yaml"
    script:
        "../scripts/vision_run.py"


for _paper, _manifest in MANIFESTS.items():
    for _study in _manifest.vision_studies:

        rule:
            name:
                f"{_paper}_{_study}"
            input:
                [str(vision_file("runs", m, _paper, _study, paper_seeds(_manifest, config)[0]))
                 for m in vision_models(_manifest, _study, config)],
            output:
                study_files(_paper, _study),
            params:
                paper=_paper,
                target=_study,
                manifest=f"{config['registries']['manifests']}/{_paper}.yaml",
            log:
                f"logs/papers/{_paper}/{_study}.log",
            threads: 1
            resources:
                mem_mb=light_mem,
                runtime=light_runtime,
            conda:
                "../../envs/papers.yaml"
            script:
                "../scripts/vision_table.py"
