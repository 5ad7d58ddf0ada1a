from _common import start

sm = snakemake  # noqa: F821
pipeline = start(sm)
pipeline.evaluate_perplexity(sm.input.model, sm.input.tokens, sm.wildcards.testset, int(sm.wildcards.seqlen),
                             sm.output[0], dtype=sm.params.dtype, batch_size=sm.params.batch_size,
                             device=sm.params.device, calib_path=sm.input.calib)
