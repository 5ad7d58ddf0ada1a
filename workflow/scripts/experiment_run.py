from _common import pipeline

sm = snakemake  # noqa: F821
pipeline.setup(threads=None, log_file=sm.log[0])  # run_job sets the thread count before numpy/torch load
from reprise.experiments import run_job  # noqa: E402

run_job(sm.params.kind, sm.params.params, int(sm.wildcards.seed), sm.output.rows, sm.output.provenance,
        threads=sm.threads)
