from pathlib import Path

from _common import start

sm = snakemake  # noqa: F821
pipeline = start(sm)
pipeline.compress(
    sm.input.model, sm.input.calib, sm.wildcards.method, sm.params.config,
    out_dir=Path(sm.output.provenance).parent, driver=sm.params.driver, dtype=sm.params.dtype,
    resume_dir=sm.params.resume_dir,
    context={"model": sm.wildcards.model, "setting": sm.wildcards.setting, "seed": int(sm.wildcards.seed),
             "scale": sm.params.scale},
)
