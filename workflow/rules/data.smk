# Data stage: raw corpora (hub at a pinned revision, or local files), materialised models, and
# the offline zero-shot task generated from the held-out corpus. Dataset downloads run where
# snakemake runs (compute nodes of many clusters have no internet); a model is materialised in a
# job because a large one needs the memory of its weights.

import re

localrules:
    fetch_dataset,
    zeroshot_task,



rule fetch_dataset:
    output:
        directory("data/raw/{dataset_key}"),
    wildcard_constraints:
        # only the registry's datasets: other files under data/raw (PMLB, OSF, CIFAR) have fetch rules of their own
        dataset_key="|".join(re.escape(k) for k in DATASET_BY_KEY),
    params:
        name=lambda wc: DATASET_BY_KEY[wc.dataset_key],
        registry=config["registries"]["datasets"],
    log:
        "logs/data/fetch_{dataset_key}.log",
    threads: 1
    resources:
        mem_mb=light_mem,
        runtime=lambda wc, attempt: 60 * attempt,
    conda:
        "../../envs/llm.yaml"
    script:
        "../scripts/fetch_dataset.py"


rule prepare_model:
    input:
        corpus=lambda wc: raw_dir(CAL["dataset"]),  # to compare fast and slow tokenizers on real text
    output:
        directory("models/{model}"),
    params:
        registry=config["registries"]["models"],
        corpus_split=CAL["split"],
    log:
        "logs/models/{model}.log",
    resources:
        mem_mb=model_prep_mem,
        runtime=lambda wc, attempt: 30 * attempt + int(shape(wc.model).params / 1e9) * 10,
    threads: config["threads"]
    conda:
        "../../envs/llm.yaml"
    script:
        "../scripts/prepare_model.py"


rule zeroshot_task:
    input:
        raw=lambda wc: raw_dir("enwiki-gensim"),
    output:
        directory("data/tasks/enwiki-cloze"),
    log:
        "logs/data/enwiki-cloze.log",
    threads: 1
    resources:
        mem_mb=light_mem,
        runtime=light_runtime,
    conda:
        "../../envs/llm.yaml"
    script:
        "../scripts/make_cloze_task.py"
