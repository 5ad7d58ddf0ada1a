# Efficient AI's public data: MovieLens-1M (https://files.grouplens.org/datasets/movielens/ml-1m.zip,
# reprise.effai.movielens.URL) for effai.sub_kd_movielens, full scale
# only and never part of `all` by itself (the experiment's `inputs: {full: [...]}` pulls the zip in).
# The md5 and sha256 of the download are written beside it; pin the sha256 under params once known and
# later downloads are checked against it.


rule fetch_movielens:
    output:
        archive="data/raw/movielens/ml-1m.zip",
        record="data/raw/movielens/ml-1m.json",
    params:
        sha256=None,  # pin after the first verified download
    log:
        "logs/data/fetch_movielens.log",
    localrule: True
    threads: 1
    resources:
        mem_mb=light_mem,
        runtime=lambda wc, attempt: 30 * attempt,
    conda:
        "../../envs/llm.yaml"
    script:
        "../scripts/fetch_movielens.py"
