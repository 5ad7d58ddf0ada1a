from _common import start

sm = snakemake  # noqa: F821
pipeline = start(sm)
pipeline.evaluate_speed(sm.input.model, sm.input.dense, sm.output[0], batch_size=int(sm.wildcards.batch),
                        seqlen=int(sm.wildcards.seqlen), warmup=sm.params.warmup, repeats=sm.params.repeats,
                        dtype=sm.params.dtype, device=sm.params.device)
