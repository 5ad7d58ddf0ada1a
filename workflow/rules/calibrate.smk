# Tokenize: calibration windows and perplexity test windows, per tokenizer and dataset key.


rule calibration_tokens:
    input:
        tokenizer=lambda wc: model_dir(wc.tok),
        raw=lambda wc: f"data/raw/{wc.dkey}",
    output:
        "data/tokens/{tok}/{dkey}/{split}.{protocol}_{n}x{seqlen}_s{seed}.pt",
    wildcard_constraints:
        split=r"[A-Za-z0-9-]+",
        protocol=r"[A-Za-z0-9-]+",
        n=r"\d+",
        seqlen=r"\d+",
    params:
        spec=lambda wc: {"dataset": DATASET_BY_KEY[wc.dkey], "role": "calibration", "split": wc.split,
                         "protocol": wc.protocol, "n": int(wc.n), "seqlen": int(wc.seqlen), "seed": int(wc.seed)},
    log:
        "logs/tokens/{tok}/{dkey}/{split}.{protocol}_{n}x{seqlen}_s{seed}.log",
    threads: 1
    resources:
        mem_mb=light_mem,
        runtime=light_runtime,
    conda:
        "../../envs/llm.yaml"
    script:
        "../scripts/tokenize.py"


rule test_tokens:
    input:
        tokenizer=lambda wc: model_dir(wc.tok),
        raw=lambda wc: f"data/raw/{wc.dkey}",
    output:
        "data/tokens/{tok}/{dkey}/{testset}_{n}x{seqlen}_s{seed}.pt",
    wildcard_constraints:
        n=r"\d+|all",
        seqlen=r"\d+",
    params:
        spec=lambda wc: {"test_set": wc.testset, "seqlen": int(wc.seqlen), "seed": int(wc.seed),
                         "max_windows": None if wc.n == "all" else int(wc.n)},
    log:
        "logs/tokens/{tok}/{dkey}/{testset}_{n}x{seqlen}_s{seed}.log",
    threads: 1
    resources:
        mem_mb=light_mem,
        runtime=light_runtime,
    conda:
        "../../envs/llm.yaml"
    script:
        "../scripts/tokenize.py"
