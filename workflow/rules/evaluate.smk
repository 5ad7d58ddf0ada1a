# Evaluation of a run (or of the dense model): perplexity per test set, zero-shot per task.


rule perplexity:
    input:
        model=evaluated_model_dir,
        tokens=lambda wc: tokens_path(wc.model, test_spec(wc.testset)),
        calib=lambda wc: tokens_path(wc.model, run_calib_spec(wc)),  # to measure calibration/test overlap
    output:
        "runs/{model}/{method}/{setting}/s{seed}/eval/{testset}_ppl@{seqlen}.json",
    params:
        dtype=lambda wc: MODELS[wc.model].dtype,
        batch_size=EV.get("batch_size", 1),
        device=config["driver"].get("device", "auto"),
    log:
        "logs/eval/{model}/{method}/{setting}/s{seed}/{testset}_ppl@{seqlen}.log",
    benchmark:
        benchmark_path("{testset}_ppl@{seqlen}")
    threads: config["threads"]
    resources:
        mem_mb=eval_mem,
        runtime=eval_runtime,
        gpu=GPU,
    conda:
        "../../envs/llm.yaml"
    script:
        "../scripts/perplexity.py"


def _task_dir(wc):
    """A local task's YAML directory: the generated cloze task, or a task shipped with the package."""
    if wc.task == "enwiki-cloze":
        return ["data/tasks/enwiki-cloze"]
    return [str(PACKAGED_TASKS[wc.task])] if wc.task in PACKAGED_TASKS else []


rule zeroshot:
    input:
        model=evaluated_model_dir,
        task_dir=_task_dir,
    output:
        "runs/{model}/{method}/{setting}/s{seed}/eval/zeroshot-{task}.json",
    params:
        dtype=lambda wc: MODELS[wc.model].dtype,
        batch_size=EV.get("zeroshot_batch_size", 8),
        limit=EV.get("zeroshot_limit"),
        device=config["driver"].get("device", "auto"),
    log:
        "logs/eval/{model}/{method}/{setting}/s{seed}/zeroshot-{task}.log",
    benchmark:
        benchmark_path("zeroshot-{task}")
    threads: config["threads"]
    resources:
        mem_mb=eval_mem,
        runtime=zeroshot_runtime,
        gpu=GPU,
    conda:
        "../../envs/llm.yaml"
    script:
        "../scripts/zeroshot.py"


# Inference speed of a run's model against the dense model, timed alternately in one job
# (reprise.llm.eval.speed): speed-up, FLOP ratio and parameter count at batch x seqlen tokens.
rule speed:
    input:
        model=evaluated_model_dir,
        dense=lambda wc: model_dir(wc.model),
    output:
        "runs/{model}/{method}/{setting}/s{seed}/eval/speed@b{batch}x{seqlen}.json",
    wildcard_constraints:
        batch=r"\d+",
        seqlen=r"\d+",
    params:
        dtype=lambda wc: MODELS[wc.model].dtype,
        warmup=config["eval"].get("speed", {}).get("warmup", 2),
        repeats=config["eval"].get("speed", {}).get("repeats", 10),
        device=config["driver"].get("device", "auto"),
    log:
        "logs/eval/{model}/{method}/{setting}/s{seed}/speed@b{batch}x{seqlen}.log",
    benchmark:
        benchmark_path("speed@b{batch}x{seqlen}")
    threads: config["threads"]
    resources:
        mem_mb=speed_mem,
        runtime=speed_runtime,
        gpu=GPU,
    conda:
        "../../envs/llm.yaml"
    script:
        "../scripts/speed.py"
