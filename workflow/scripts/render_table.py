from _common import start

sm = snakemake  # noqa: F821
start(sm, torch=False)
from reprise.papers.render import render_target  # noqa: E402

render_target(sm.params.manifest, sm.params.target, sm.config, "runs", sm.output[0].rsplit(".", 1)[0])
