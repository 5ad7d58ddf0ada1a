# One job per model x method x setting x seed: a SLURM cluster runs them in parallel and a failed
# one reruns alone. provenance.json is written last; the resume state lives outside the outputs
# (runs/.resume/...) so that Snakemake's cleanup of a failed job does not erase it.


def _checkpoint(path):
    return path if config["keep_checkpoints"] else temp(path)


rule compress:
    input:
        model=lambda wc: model_dir(wc.model),
        calib=lambda wc: tokens_path(wc.model, run_calib_spec(wc)),
    output:
        checkpoint=_checkpoint(directory("runs/{model}/{method}/{setting}/s{seed}/model")),
        log="runs/{model}/{method}/{setting}/s{seed}/solve_log.csv",
        provenance="runs/{model}/{method}/{setting}/s{seed}/provenance.json",
    wildcard_constraints:
        method=r"(?!dense$)[A-Za-z0-9_-]+",
    params:
        config=lambda wc: run_config(wc.method, wc.setting),
        driver=run_driver,
        dtype=lambda wc: MODELS[wc.model].dtype,
        resume_dir="runs/.resume/{model}/{method}/{setting}/s{seed}",
        scale=SCALE,
    log:
        "logs/compress/{model}/{method}/{setting}/s{seed}.log",
    benchmark:
        benchmark_path("compress")
    threads: config["threads"]
    resources:
        mem_mb=compress_mem,
        runtime=compress_runtime,
        gpu=GPU,
    conda:
        "../../envs/llm.yaml"
    script:
        "../scripts/compress.py"
