from _common import start

pipeline = start(snakemake)  # noqa: F821
pipeline.prepare_tokens(snakemake.params.spec, snakemake.input.tokenizer, snakemake.input.raw,  # noqa: F821
                        snakemake.output[0])  # noqa: F821
