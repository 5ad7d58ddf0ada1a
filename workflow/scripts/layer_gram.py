from _common import start

sm = snakemake  # noqa: F821
pipeline = start(sm)
pipeline.extract_layer(sm.input.model, sm.input.calib, int(sm.wildcards.block), sm.wildcards.layer, sm.output.layer,
                       dtype=sm.params.dtype, device=sm.params.device)
