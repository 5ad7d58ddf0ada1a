from _common import start

sm = snakemake  # noqa: F821
start(sm, torch=False)
from reprise.papers.render import render_paper_report  # noqa: E402

render_paper_report(sm.params.manifest, sm.config, "runs", sm.output[0], cost_csv=sm.input.cost)
