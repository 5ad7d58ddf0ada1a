from _common import start

sm = snakemake  # noqa: F821
pipeline = start(sm)
pipeline.evaluate_zeroshot(sm.input.model, sm.wildcards.task, sm.input.task_dir[0] if sm.input.task_dir else None,
                           sm.output[0], dtype=sm.params.dtype, batch_size=sm.params.batch_size,
                           limit=sm.params.limit, device=sm.params.device)
