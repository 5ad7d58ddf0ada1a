from _common import start

pipeline = start(snakemake)  # noqa: F821
pipeline.prepare_dataset(snakemake.params.name, snakemake.params.registry, snakemake.output[0])  # noqa: F821
